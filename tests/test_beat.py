"""Exactly one beat: two real beat processes share a lock in Redis; one schedules, one idles."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from django.conf import settings

from arena.beat import FileBeatLock
from tests.conftest import ROOT, _purge, broker_is_redis, require

TTL_S = 3


def start_beat(tmp_path: Path, name: str, key: str) -> tuple[subprocess.Popen[bytes], Path]:
    log = tmp_path / f"{name}.log"
    env = {
        **os.environ,
        "ARENA_BEAT_LOCK_KEY": key,
        "ARENA_BEAT_LOCK_TTL_S": str(TTL_S),
        "ARENA_SWEEP_S": "1",
        "PYTHONUNBUFFERED": "1",
    }
    celery = Path(sys.executable).parent / "celery"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                str(celery),
                "-A",
                "arena",
                "beat",
                "--loglevel",
                "INFO",
                "--schedule",
                str(tmp_path / f"{name}-schedule"),
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
    return process, log


def sends(log: Path) -> int:
    return log.read_text(errors="replace").count("Sending due task sweep-generations")


def wait_for(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def test_a_second_beat_stands_by_and_takes_over_when_the_first_dies(tmp_path: Path) -> None:
    require(bool(settings.REDIS_URL), "the beat lock lives in Redis (REDIS_URL)")
    require(broker_is_redis(), "beat sends to the Redis broker")
    key = f"arena:test-beat-lock:{uuid.uuid4().hex[:8]}"
    first, first_log = start_beat(tmp_path, "first", key)
    try:
        wait_for(
            lambda: sends(first_log) >= 1, 60, f"first beat never sent:\n{first_log.read_text()}"
        )
        second, second_log = start_beat(tmp_path, "second", key)
        try:
            wait_for(lambda: "stands by" in second_log.read_text(), 60, second_log.read_text())
            before = sends(first_log)
            time.sleep(4)
            assert sends(first_log) >= before + 2, "the holder keeps scheduling"
            assert sends(second_log) == 0, "the second beat schedules nothing while the first runs"

            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
            wait_for(lambda: sends(second_log) >= 1, TTL_S + 10, second_log.read_text())
            assert "beat lock taken" in second_log.read_text()
        finally:
            second.terminate()
            second.wait(timeout=20)
    finally:
        if first.poll() is None:
            first.terminate()
            first.wait(timeout=20)
        _purge("default")


def test_without_redis_a_file_lock_lets_one_beat_in(tmp_path: Path) -> None:
    path = tmp_path / "beat.lock"
    first, second = FileBeatLock(path), FileBeatLock(path)
    assert first.hold() and first.hold()
    assert not second.hold()
    first.release()
    assert second.hold()
    second.release()
