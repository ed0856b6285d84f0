"""The embedded broker: many writers and readers in separate processes share one folder."""

from __future__ import annotations

import json
import multiprocessing
import os
import queue
from pathlib import Path
from typing import Any

import pytest
from kombu import Connection

WRITERS = 4
READERS = 3
MESSAGES_PER_WRITER = 250


def _connection(root: Path) -> Connection:
    return Connection(
        "filesystem://",
        transport="arena.broker:Transport",
        transport_options={
            "data_folder_in": str(root / "queue"),
            "data_folder_out": str(root / "queue"),
            "claim_folder": str(root / "claimed"),
            "control_folder": str(root / "control"),
            "polling_interval": 0.01,
        },
    )


def _write(root: str, writer: int, start: Any) -> None:
    start.wait()
    with _connection(Path(root)) as conn:
        jobs = conn.SimpleQueue("jobs")
        for i in range(MESSAGES_PER_WRITER):
            # Big enough that a write is not one syscall's worth of luck.
            jobs.put({"id": f"{writer}-{i}", "pad": "x" * 20_000})
        jobs.close()


def _read(root: str, reader: int, start: Any, done: Any) -> None:
    start.wait()
    seen: list[str] = []
    errors: list[str] = []
    with _connection(Path(root)) as conn:
        jobs = conn.SimpleQueue("jobs")
        while True:
            try:
                message = jobs.get(block=True, timeout=0.5)
            except queue.Empty:
                if done.is_set():
                    break
                continue
            except Exception as error:  # a torn message is what this test hunts
                errors.append(repr(error))
                continue
            seen.append(message.payload["id"])
            message.ack()
        jobs.close()
    Path(root, f"reader-{reader}.json").write_text(json.dumps({"seen": seen, "errors": errors}))


def test_concurrent_writers_and_readers_deliver_every_message_exactly_once(
    tmp_path: Path,
) -> None:
    context = multiprocessing.get_context("spawn")
    start, done = context.Event(), context.Event()
    writers = [
        context.Process(target=_write, args=(str(tmp_path), w, start)) for w in range(WRITERS)
    ]
    readers = [
        context.Process(target=_read, args=(str(tmp_path), r, start, done)) for r in range(READERS)
    ]
    for process in writers + readers:
        process.start()
    start.set()
    for process in writers:
        process.join(timeout=120)
        assert process.exitcode == 0
    done.set()
    for process in readers:
        process.join(timeout=120)
        assert process.exitcode == 0
    results = [json.loads(Path(tmp_path, f"reader-{r}.json").read_text()) for r in range(READERS)]
    seen = [item for result in results for item in result["seen"]]
    assert [error for result in results for error in result["errors"]] == []
    expected = {f"{w}-{i}" for w in range(WRITERS) for i in range(MESSAGES_PER_WRITER)}
    assert len(seen) == len(expected), "a message was lost or delivered twice"
    assert set(seen) == expected
    assert os.listdir(tmp_path / "queue") == []
    assert os.listdir(tmp_path / "claimed") == []


def test_a_message_still_being_written_is_invisible_to_readers(tmp_path: Path) -> None:
    with _connection(tmp_path) as conn:
        jobs = conn.SimpleQueue("jobs")
        # What a writer has on disk before its rename: a hidden temporary file, here empty.
        (tmp_path / "queue").mkdir(exist_ok=True)
        (tmp_path / "queue" / ".0000000001_x.jobs.msg.abc.tmp").write_bytes(b"")
        with pytest.raises(queue.Empty):
            jobs.get(block=False)
        jobs.put({"id": "whole"})
        assert jobs.get(block=False).payload == {"id": "whole"}
        jobs.close()


def _bind(root: str, index: int, start: Any) -> None:
    start.wait()
    with _connection(Path(root)) as conn:
        channel: Any = conn.default_channel
        channel.exchange_declare("shared", type="direct")
        channel.queue_declare(f"q{index}")
        channel.queue_bind(f"q{index}", "shared", routing_key=f"q{index}")


def test_queues_bound_at_once_by_many_processes_all_stay_bound(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    processes = [context.Process(target=_bind, args=(str(tmp_path), i, start)) for i in range(8)]
    for process in processes:
        process.start()
    start.set()
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    table = json.loads((tmp_path / "control" / "shared.exchange").read_text())
    assert sorted(row[2] for row in table) == [f"q{i}" for i in range(8)]
