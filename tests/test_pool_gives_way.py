"""Pool images never delay a live job, with a real worker on Redis: a live job starts before any
further pool job, a running pool job gives way at its next step, and a pool job the worker took
before a live job's message arrived gives way before it starts. Every pool image is still made,
once, and giving way costs no attempt and is no failure."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from django.db import transaction

from generation import jobs as generation_jobs
from generation.models import Generation

from .conftest import broker_is_redis, require, running_worker

pytestmark = pytest.mark.worker

# Several seconds on the tiny CPU model: a live job queued meanwhile would wait that long.
SLOW_STEPS = 300
JOBS_TIMEOUT_S = 180


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def pool_jobs(model: Any, count: int, steps: int) -> list[Generation]:
    with transaction.atomic():
        jobs = [
            generation_jobs.create_generation(
                model=model,
                prompt=f"a pool lighthouse {i}",
                seed=100 + i,
                steps=steps,
                use_cache=False,
                purpose=Generation.Purpose.POOL,
            )
            for i in range(count)
        ]
        for job in jobs:
            generation_jobs.enqueue(job)
    return jobs


def live_job(model: Any, *, send: bool = True) -> Generation:
    with transaction.atomic():
        job = generation_jobs.create_generation(model=model, prompt="a live cat", seed=1)
        if send:
            generation_jobs.enqueue(job)
    return job


def all_done(jobs: list[Generation]) -> bool:
    statuses = Generation.objects.filter(pk__in=[j.pk for j in jobs]).values_list("status")
    return {s for (s,) in statuses} == {Generation.Status.DONE}


def assert_made_once_at_no_cost(jobs: list[Generation]) -> None:
    for job in jobs:
        job.refresh_from_db()
        assert job.status == Generation.Status.DONE and job.image, job.pk
        assert job.attempts == 1 and job.failure_kind == "", (job.pk, job.attempts)
    assert len({j.image.name for j in jobs}) == len(jobs), "one image per pool job"


def test_a_live_job_starts_before_any_further_pool_job_and_a_running_one_gives_way(
    models: list[Any], test_queue: str, tmp_path: Path, transactional_db: None
) -> None:
    require(broker_is_redis(), "priorities are a Redis feature here")
    model = models[0]
    env = {"ARENA_WARM_MODELS": model.key}
    # One process: the live job can only run where a pool image was being made.
    with running_worker(test_queue, tmp_path / "worker.log", concurrency=1, env=env) as worker:
        pool = pool_jobs(model, 3, SLOW_STEPS)

        def one_is_running() -> bool:
            return Generation.objects.filter(
                pk__in=[j.pk for j in pool], status=Generation.Status.RUNNING, steps_done__gte=2
            ).exists()

        wait_for(one_is_running, 60, f"a pool job to run:\n{worker.log()}")
        running = Generation.objects.get(pk__in=[j.pk for j in pool], status="running")
        live = live_job(model)
        wait_for(lambda: all_done([live]), 60, f"the live job:\n{worker.log()}")
        wait_for(lambda: all_done(pool), JOBS_TIMEOUT_S, f"the pool jobs:\n{worker.log()}")
    live.refresh_from_db()
    assert live.started_at is not None
    for job in pool:
        job.refresh_from_db()
        assert job.started_at is not None and job.started_at > live.started_at, (
            "no pool job started while the live job waited, and the running one started again "
            "only after it"
        )
    # It waited for one step of the pool image, not for the image (several seconds).
    running.refresh_from_db()
    assert running.started_at is not None and running.finished_at is not None
    assert live.started_at - live.queued_at < (running.finished_at - running.started_at) / 2
    assert_made_once_at_no_cost(pool)


def test_a_pool_job_taken_before_a_live_jobs_message_arrived_gives_way_before_it_starts(
    models: list[Any], test_queue: str, tmp_path: Path, transactional_db: None
) -> None:
    """The live job is committed, its message not sent yet (its transaction still finishing):
    the worker takes the pool message, and puts it back rather than start it."""
    require(broker_is_redis(), "priorities are a Redis feature here")
    model = models[0]
    env = {"ARENA_WARM_MODELS": model.key}
    with running_worker(test_queue, tmp_path / "worker.log", concurrency=1, env=env) as worker:
        live = live_job(model, send=False)
        (pool,) = pool_jobs(model, 1, 20)

        def sent_again() -> bool:
            pool.refresh_from_db()
            return pool.queued_at > live.queued_at

        # Within the window a pool job gives way to a job sent before it started (the test
        # fails if the worker takes longer than that to take the message).
        wait_for(sent_again, 1.0, f"the pool job to go back to the queue:\n{worker.log()}")
        # The worker takes the pool message again and again, and never starts it.
        seen = set()
        until = time.monotonic() + 0.4
        while time.monotonic() < until:
            pool.refresh_from_db()
            seen.add((pool.status, pool.started_at))
            time.sleep(0.005)
        assert seen == {(Generation.Status.QUEUED, None)}, seen
        with transaction.atomic():
            generation_jobs.enqueue(live)
        wait_for(lambda: all_done([live, pool]), 60, f"both jobs:\n{worker.log()}")
    live.refresh_from_db()
    pool.refresh_from_db()
    assert live.started_at is not None and pool.started_at is not None
    assert pool.started_at > live.started_at
    assert_made_once_at_no_cost([pool])
