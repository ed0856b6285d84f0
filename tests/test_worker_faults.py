"""Real worker processes under faults: a whole worker killed mid-job, one pool child killed (the
busy one, and the one blocked reading the task queue) on Redis and on the embedded file-system
broker, models that cannot warm up, and broker priorities."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import transaction
from django.test import Client
from django.utils import timezone
from kombu import Connection

from generation import jobs as generation_jobs
from generation import sweeper
from generation.models import Generation, ImageModel, WorkerHeartbeat
from generation.tasks import generate

from .conftest import Worker, broker_is_redis, require, running_worker

pytestmark = pytest.mark.worker

# Long enough on the tiny CPU model to be caught in the middle.
SLOW_STEPS = 600
# A pool child imports torch and loads its model: far above Celery's default 4 s on this CPU.
REPLACEMENT_TIMEOUT_S = 150


def wait_for(predicate: Any, timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


def image_files() -> set[str]:
    folder = Path(settings.MEDIA_ROOT) / "images"
    return {p.name for p in folder.iterdir()} if folder.exists() else set()


def test_a_job_whose_worker_is_killed_is_finished_once_by_another_worker(
    models: list[Any], worker: Worker, test_queue: str, tmp_path: Path
) -> None:
    model = models[0]
    with transaction.atomic():
        job = generation_jobs.create_generation(
            model=model, prompt="a fox", seed=3, steps=SLOW_STEPS
        )
        generation_jobs.enqueue(job)
    before = image_files()

    def running() -> bool:
        job.refresh_from_db()
        return job.status == Generation.Status.RUNNING and job.steps_done > 0

    wait_for(running, 60, "the job to start")
    worker.kill()  # kill -9 of the worker and its pool, mid-job
    job.refresh_from_db()
    assert job.status == Generation.Status.RUNNING and job.steps_done < SLOW_STEPS
    assert image_files() == before

    second = Worker(test_queue, tmp_path / "second-worker.log")
    second.start()
    try:
        # Time moves past the job's deadline: the sweeper sees a dead worker's job.
        grace = settings.ARENA_CLAIM_GRACE_S
        result = sweeper.sweep(now=timezone.now() + timedelta(seconds=model.timeout_s + grace + 1))
        assert result.requeued == [job.pk]

        def done() -> bool:
            job.refresh_from_db()
            return job.status == Generation.Status.DONE

        wait_for(done, 90, f"the second worker to finish the job:\n{second.log()}")
        assert job.attempts == 2 and job.steps_done == SLOW_STEPS
        assert image_files() - before == {Path(str(job.image.name)).name}

        # The broker hands back the first message later (Redis: after its visibility timeout).
        again = generate.apply_async(args=(job.pk,), queue=test_queue)
        wait_for(lambda: f"{again.id}] succeeded" in second.log(), 30, "the late delivery")
        job.refresh_from_db()
        assert (job.status, job.attempts) == (Generation.Status.DONE, 2)
        assert image_files() - before == {Path(str(job.image.name)).name}, "exactly one image"
    finally:
        second.stop()


def reservations_of(job_pk: int) -> set[bytes]:
    """The delivery tags of the Redis reservations (kombu's unacked table) of one job."""
    with Connection(settings.CELERY_BROKER_URL) as connection:
        channel: Any = connection.default_channel
        held = channel.client.hgetall(channel.unacked_key)
    return {
        tag
        for tag, entry in held.items()
        if sweeper._generation_id(json.dumps(json.loads(entry)[0]).encode()) == job_pk
    }


def _kill_mid_job(
    models: list[Any], worker: Worker, seed: int
) -> tuple[Generation, set[bytes], set[str]]:
    """Start a slow job, wait until the worker runs it and holds its message, then kill the whole
    worker: returns the job, the dead worker's reservation tags and the image files before."""
    with transaction.atomic():
        job = generation_jobs.create_generation(
            model=models[0], prompt="a fox", seed=seed, steps=SLOW_STEPS
        )
        generation_jobs.enqueue(job)
        # Earlier tests' jobs of the same number may still sit there (the visibility timeout).
        earlier = reservations_of(job.pk)
    before = image_files()

    def running() -> bool:
        job.refresh_from_db()
        return job.status == Generation.Status.RUNNING and job.steps_done > 0

    wait_for(running, 60, "the job to start")
    assert worker.process is not None
    # The parent imported torch before it forked: no child imports it on its own.
    assert "libtorch" in Path(f"/proc/{worker.process.pid}/maps").read_text()
    dead_tags = reservations_of(job.pk) - earlier
    assert dead_tags, "the worker holds the job's message"
    worker.kill()
    return job, dead_tags, before


def _given_back_once(
    job: Generation, again: Worker, dead_tags: set[bytes], before: set[str], settings: Any
) -> None:
    """The sweeper, on the real clock, gives the dead worker's reservation back at once (not
    after the job's time limit plus the grace, nor the broker's visibility timeout), the
    replacement makes the job, and nothing else was made or stays reserved."""
    slow_path_s = job.model.timeout_s + settings.ARENA_CLAIM_GRACE_S
    swept_at = time.monotonic()
    wait_for(lambda: job.pk in sweeper.sweep().requeued, 10, "the sweeper", interval=0.5)
    assert time.monotonic() - swept_at < slow_path_s

    def done() -> bool:
        job.refresh_from_db()
        return job.status == Generation.Status.DONE

    wait_for(done, 90, f"the replacement to finish the job:\n{again.log()}")
    assert job.attempts == 2 and job.steps_done == SLOW_STEPS
    assert image_files() - before == {Path(str(job.image.name)).name}
    # Given back once: the reservation left the table and no other message was made.
    assert not dead_tags & reservations_of(job.pk)
    assert sweeper.sweep().requeued == []


def test_a_restarted_worker_gets_back_what_its_killed_incarnation_held_within_seconds(
    models: list[Any], worker: Worker, test_queue: str, tmp_path: Path, settings: Any
) -> None:
    """The whole worker killed mid-job and started again under its node name: the job's
    reserved message comes back at once and the job is made once."""
    require(broker_is_redis(), "reservations are Redis's (kombu's unacked table)")
    job, dead_tags, before = _kill_mid_job(models, worker, seed=4)
    assert sweeper.sweep().requeued == [], "nothing is given back while the node is away"

    again = Worker(test_queue, tmp_path / "again.log", hostname=worker.hostname)
    again.start()
    try:
        _given_back_once(job, again, dead_tags, before, settings)
    finally:
        again.stop()


def test_a_replacement_under_a_new_name_gets_back_what_a_dead_node_held_within_seconds(
    models: list[Any], worker: Worker, test_queue: str, tmp_path: Path, settings: Any
) -> None:
    """The whole worker killed mid-job and replaced by a node of another name (a new host, a
    rescheduled container): once the dead node's heartbeat is stale and the replacement serves
    the queue, the sweeper gives the reserved message back once, on the real clock, and the job
    is made once."""
    require(broker_is_redis(), "reservations are Redis's (kombu's unacked table)")
    # The sweeper's clock for a stale heartbeat (3 intervals); the replacement beats as often.
    settings.ARENA_WORKER_HEARTBEAT_S = 1
    job, dead_tags, before = _kill_mid_job(models, worker, seed=5)
    assert sweeper.sweep().requeued == [], "nothing is given back while no worker serves"

    again = Worker(test_queue, tmp_path / "new-name.log", env={"ARENA_WORKER_HEARTBEAT_S": "1"})
    assert again.hostname != worker.hostname
    again.start()
    try:
        dead = WorkerHeartbeat.objects.get(node__startswith=worker.hostname.split("@")[0])
        assert dead.started_at is not None
        _given_back_once(job, again, dead_tags, before, settings)
    finally:
        again.stop()


# --- One pool child killed ---------------------------------------------------------------------


def wchan(pid: int) -> str:
    """Where in the kernel ``pid`` waits: ``anon_pipe_read`` (or ``pipe_read``) while a pool
    child waits for its next job on the pool's pipe; 0 while it runs."""
    try:
        return Path(f"/proc/{pid}/wchan").read_text()
    except OSError:
        return ""


def ready_pids(worker: Worker) -> list[int]:
    """The pids in the worker's ready file: present only while every child is alive and warm."""
    try:
        return [int(p) for p in worker.log_path.with_suffix(".ready").read_text().split()]
    except OSError:
        return []


def filesystem_broker(folder: Path) -> dict[str, str]:
    """Environment for a worker on the embedded broker under ``folder``."""
    return {"CELERY_BROKER_URL": "filesystem://", "ARENA_VAR_DIR": str(folder)}


def send(job: Generation, queue: str, broker_folder: Path | None) -> None:
    """Queue ``job`` on Redis (this process's broker) or on the embedded broker in a folder."""
    if broker_folder is None:
        with transaction.atomic():
            generation_jobs.enqueue(job)
        return
    box = str(broker_folder / "broker" / "queue")
    options = {"data_folder_in": box, "data_folder_out": box, "store_processed": False}
    control = str(broker_folder / "broker" / "control")
    with Connection("filesystem://", transport_options={**options, "control_folder": control}) as c:
        generate.apply_async(args=(job.pk,), queue=queue, connection=c)  # type: ignore[call-arg]


@pytest.mark.parametrize("broker", ["redis", "filesystem"])
@pytest.mark.parametrize("victim", ["busy", "reading the task queue"])
def test_a_killed_pool_child_is_replaced_by_one_that_loads_its_model_and_serves(
    models: list[Any],
    test_queue: str,
    tmp_path: Path,
    transactional_db: None,
    broker: str,
    victim: str,
) -> None:
    """One child (concurrency 1), so every job after the kill is the replacement's. Before: on
    Redis the replacement was killed after 4 s, forever; on the embedded broker a child killed
    while reading the pool's pipe held its lock for good."""
    require(broker_is_redis(), "the Redis broker is configured")
    model = models[0]
    broker_folder = tmp_path / "var" if broker == "filesystem" else None
    # The children load the model themselves: a replacement that inherits it from the parent
    # is warm within one readiness look, and the not-ready window below would not show.
    env = {
        "ARENA_WARM_MODELS": model.key,
        "ARENA_WORKER_PRELOAD_MODELS": "0",
        "ARENA_WORKER_PRELOAD": "0",
    }
    if broker_folder is not None:
        (broker_folder / "broker" / "queue").mkdir(parents=True)
        env.update(filesystem_broker(broker_folder))
    started = Worker(test_queue, tmp_path / "worker.log", concurrency=1, env=env)
    started.start()
    try:
        (child,) = started.child_pids()
        assert ready_pids(started) == [child]
        wait_for(lambda: Client().get("/readyz").status_code == 200, 20, "readiness")
        if victim == "busy":
            slow = generation_jobs.create_generation(
                model=model, prompt="slow", seed=1, steps=SLOW_STEPS
            )
            send(slow, test_queue, broker_folder)

            def running() -> bool:
                slow.refresh_from_db()
                return slow.status == Generation.Status.RUNNING and slow.steps_done > 0

            wait_for(running, 60, f"the slow job to start:\n{started.log()}")
        else:
            wait_for(lambda: "pipe_read" in wchan(child), 30, "the child to wait on the pipe")
        os.kill(child, signal.SIGKILL)

        # Not ready from the moment the child is gone until its replacement is warm.
        wait_for(lambda: not ready_pids(started), 5, "the ready file to go")
        assert WorkerHeartbeat.objects.get().ready is False
        unready = Client().get("/readyz")
        assert unready.status_code == 503 and "workers" in unready.json()["failing"]

        jobs = [
            generation_jobs.create_generation(
                model=model, prompt=f"after {i}", seed=i, use_cache=False
            )
            for i in range(3)
        ]
        for job in jobs:
            send(job, test_queue, broker_folder)

        def all_done() -> bool:
            statuses = Generation.objects.filter(pk__in=[j.pk for j in jobs])
            return set(statuses.values_list("status", flat=True)) == {Generation.Status.DONE}

        wait_for(all_done, REPLACEMENT_TIMEOUT_S, f"the replacement to serve:\n{started.log()}")
        (replacement,) = started.child_pids()
        assert replacement != child
        wait_for(lambda: ready_pids(started) == [replacement], 10, "the ready file to return")
        assert Client().get("/readyz").status_code == 200
        assert "exited with 'signal 9 (SIGKILL)'" in started.log()
    finally:
        started.stop()


# --- Warm-up failures stop the worker loudly ---------------------------------------------------


def start_failing(worker: Worker) -> str:
    with pytest.raises(RuntimeError, match="worker exited early"):
        worker.start()
    assert worker.process is not None and worker.process.returncode == os.EX_CONFIG
    assert not worker.log_path.with_suffix(".ready").exists()
    return worker.log()


def test_an_unknown_key_in_ARENA_WARM_MODELS_stops_the_worker_at_start(  # noqa: N802
    models: list[Any], test_queue: str, tmp_path: Path, transactional_db: None
) -> None:
    env = {"ARENA_WARM_MODELS": f"{models[0].key},no-such-model"}
    worker = Worker(test_queue, tmp_path / "worker.log", concurrency=1, env=env)
    try:
        log = start_failing(worker)
    finally:
        worker.stop()
    assert "unknown model keys: no-such-model" in log and "CRITICAL" in log


def test_a_model_that_fails_to_warm_up_stops_the_worker(
    models: list[Any], test_queue: str, tmp_path: Path, transactional_db: None
) -> None:
    ImageModel.objects.filter(pk=models[0].pk).update(source=str(tmp_path / "missing"))
    env = {"ARENA_WARM_MODELS": models[0].key}
    worker = Worker(test_queue, tmp_path / "worker.log", concurrency=1, env=env)
    try:
        log = start_failing(worker)
    finally:
        worker.stop()
    assert f"model {models[0].key}@{models[0].version} failed to warm up" in log
    assert not WorkerHeartbeat.objects.filter(ready=True).exists()


# --- Priorities ------------------------------------------------------------------------------


def test_battle_jobs_run_before_chat_jobs_and_chat_jobs_before_pool_jobs_on_redis(
    models: list[Any], test_queue: str, tmp_path: Path, transactional_db: None
) -> None:
    require(broker_is_redis(), "priorities are a Redis feature here")
    model = models[0]
    order = ["pool", "pool", "chat", "pool", "battle", "chat", "battle"]
    with transaction.atomic():
        jobs = [
            generation_jobs.create_generation(
                model=model, prompt=f"job {i}", seed=i, use_cache=False, purpose=purpose
            )
            for i, purpose in enumerate(order)
        ]
        for job in jobs:
            generation_jobs.enqueue(job)
    env = {"ARENA_WARM_MODELS": model.key}
    with running_worker(test_queue, tmp_path / "worker.log", concurrency=1, env=env) as started:

        def all_done() -> bool:
            statuses = Generation.objects.filter(pk__in=[j.pk for j in jobs])
            return set(statuses.values_list("status", flat=True)) == {Generation.Status.DONE}

        wait_for(all_done, 120, f"the jobs:\n{started.log()}")
    ran = Generation.objects.filter(pk__in=[j.pk for j in jobs]).order_by("started_at")
    assert list(ran.values_list("purpose", flat=True)) == [
        "battle",
        "battle",
        "chat",
        "chat",
        "pool",
        "pool",
        "pool",
    ]


# --- A database blip -------------------------------------------------------------------------


class DatabaseRelay:
    """A TCP relay to PostgreSQL that can drop every connection and refuse new ones: a restart,
    as the worker sees it, without touching the shared server."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.open = threading.Event()
        self.open.set()
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.open.is_set():
                client.close()  # refused while "restarting"
                continue
            server = socket.create_connection(self.target)
            with self.lock:
                self.sockets += [client, server]
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self.open.clear()
        with self.lock:
            for end in self.sockets:
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)
            self.sockets.clear()

    def resume(self) -> None:
        self.open.set()

    def close(self) -> None:
        self.cut()
        self.listener.close()


def test_jobs_hit_by_a_database_blip_are_retried_within_seconds_not_left_to_the_sweeper(
    models: list[Any], test_queue: str, tmp_path: Path, transactional_db: None
) -> None:
    from django.db import connection

    from .conftest import database_url

    require(connection.vendor == "postgresql", "PostgreSQL is configured")
    params = connection.settings_dict
    relay = DatabaseRelay(params["HOST"] or "127.0.0.1", int(params["PORT"] or 5432))
    url = database_url().replace(f":{params['PORT']}/", f":{relay.port}/")
    model = models[0]
    env = {"ARENA_WARM_MODELS": model.key, "DATABASE_URL": url}
    try:
        with running_worker(test_queue, tmp_path / "w.log", concurrency=1, env=env) as started:
            with transaction.atomic():
                slow = generation_jobs.create_generation(
                    model=model, prompt="slow", seed=1, steps=120
                )
                generation_jobs.enqueue(slow)

            def running() -> bool:
                slow.refresh_from_db()
                return slow.status == Generation.Status.RUNNING and slow.steps_done > 0

            wait_for(running, 60, f"the slow job to start:\n{started.log()}")
            relay.cut()  # mid-job: progress writes and the finish meet a dead connection
            with transaction.atomic():
                queued = [
                    generation_jobs.create_generation(model=model, prompt=f"q {i}", seed=i)
                    for i in range(2)
                ]
                for job in queued:
                    generation_jobs.enqueue(job)
            time.sleep(4)
            relay.resume()
            back = time.monotonic()
            jobs = [slow, *queued]

            def all_done() -> bool:
                statuses = Generation.objects.filter(pk__in=[j.pk for j in jobs])
                return set(statuses.values_list("status", flat=True)) == {Generation.Status.DONE}

            # The sweeper could act only after the model's time limit plus the grace.
            sweeper_reach = model.timeout_s + settings.ARENA_CLAIM_GRACE_S
            wait_for(all_done, sweeper_reach, f"the retries:\n{started.log()}")
            took = time.monotonic() - back
            assert "Retry in" in started.log()
        attempts = Generation.objects.filter(pk__in=[j.pk for j in jobs]).values_list(
            "attempts", flat=True
        )
        assert list(attempts) == [1, 1, 1], "a blip costs no attempt"
        assert took < sweeper_reach
    finally:
        relay.close()
