"""A throwaway arena for the benchmarks: scratch database and media, tiny models, a worker."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def scratch_arena(*, broker_url: str, warm: str, database_url: str | None = None) -> dict[str, str]:
    """Point Django at a fresh SQLite file (or ``database_url``, a scratch database) and media
    folder, migrate, and register the tiny models; returns the environment a worker needs."""
    scratch = Path(tempfile.mkdtemp(prefix="arena-bench-"))
    env = {
        # Benchmarks time the server: the first-battle proof of work (a browser's job) and
        # attention checks are off unless the caller's environment turns them on.
        "ARENA_CHALLENGE_MAX_NUMBER": "0",
        "ARENA_GOLD_RATE": "0",
        **os.environ,
        "DATABASE_URL": database_url or f"sqlite:///{scratch / 'bench.sqlite3'}",
        "ARENA_VAR_DIR": str(scratch),
        "ARENA_MODELS_DIR": str(ROOT / "var" / "models"),
        "MEDIA_ROOT": str(scratch / "media"),
        "CELERY_BROKER_URL": broker_url,
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "ARENA_WARM_MODELS": warm,
        "ARENA_READY_FILE": str(scratch / "ready"),
    }
    os.environ.update(env)
    os.environ["DJANGO_SETTINGS_MODULE"] = "arena.settings"
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("build_tiny_models", verbosity=0)
    call_command("sync_models", verbosity=0)
    return env


def start_worker(*, env: dict[str, str], queue: str, concurrency: int) -> subprocess.Popen[bytes]:
    """A real Celery worker on ``queue``, returned once every pool process has warmed up."""
    worker = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "celery"),
            "-A",
            "arena",
            "worker",
            "--pool",
            "prefork",
            "--concurrency",
            str(concurrency),
            "--queues",
            queue,
            "--without-mingle",
            "--without-gossip",
            "--loglevel",
            "WARNING",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    ready = Path(env["ARENA_READY_FILE"])
    deadline = time.monotonic() + 120
    while not (ready.exists() and len(ready.read_text().split()) >= concurrency):
        if time.monotonic() > deadline or worker.poll() is not None:
            worker.kill()
            raise SystemExit("the worker did not start")
        time.sleep(0.1)
    return worker


def stop_worker(worker: subprocess.Popen[bytes]) -> None:
    worker.terminate()
    try:
        worker.wait(timeout=15)
    except subprocess.TimeoutExpired:
        worker.kill()
