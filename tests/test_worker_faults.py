"""A worker killed with -9 in the middle of a job: another worker finishes it, exactly once."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from generation import services
from generation.models import Generation
from generation.tasks import generate

from .conftest import Worker

pytestmark = pytest.mark.worker

# Long enough on the tiny CPU model to be caught in the middle.
SLOW_STEPS = 600


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def image_files() -> set[str]:
    folder = Path(settings.MEDIA_ROOT) / "images"
    return {p.name for p in folder.iterdir()} if folder.exists() else set()


def test_a_job_whose_worker_is_killed_is_finished_once_by_another_worker(
    models: list[Any], worker: Worker, test_queue: str, tmp_path: Path
) -> None:
    model = models[0]
    with transaction.atomic():
        job = services.create_generation(model=model, prompt="a fox", seed=3, steps=SLOW_STEPS)
        services.enqueue(job)
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
        result = services.sweep(now=timezone.now() + timedelta(seconds=model.timeout_s + grace + 1))
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
