"""The sweeper recovers jobs whose message or worker was lost; the database guards attempts."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from arena import services as arena_services
from arena.models import Battle
from generation import services
from generation.models import Generation

pytestmark = pytest.mark.django_db


@pytest.fixture
def job(models: list[Any]) -> Generation:
    return services.create_generation(model=models[0], prompt="a fox", seed=1)


def later(job: Generation, seconds: float) -> Any:
    return timezone.now() + timedelta(seconds=job.model.timeout_s + seconds)


def test_a_queued_job_whose_message_was_lost_is_sent_again_after_its_deadline(
    job: Generation, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    settings.ARENA_CLAIM_GRACE_S = 30
    assert services.sweep(now=later(job, 29)).requeued == []
    with django_capture_on_commit_callbacks(execute=False) as sent:
        result = services.sweep(now=later(job, 31))
    job.refresh_from_db()
    assert result.requeued == [job.pk] and len(sent) == 1
    assert job.status == Generation.Status.QUEUED and job.attempts == 1


def test_a_running_job_whose_worker_died_is_queued_again(
    job: Generation, django_capture_on_commit_callbacks: Any
) -> None:
    assert services.claim(generation_id=job.pk) is not None
    Generation.objects.filter(pk=job.pk).update(steps_done=3)
    with django_capture_on_commit_callbacks(execute=False) as sent:
        result = services.sweep(now=later(job, 3600))
    job.refresh_from_db()
    assert result.requeued == [job.pk] and len(sent) == 1
    assert (job.status, job.steps_done, job.attempts) == (Generation.Status.QUEUED, 0, 1)


def test_a_running_job_within_its_deadline_is_left_alone(job: Generation) -> None:
    assert services.claim(generation_id=job.pk) is not None
    assert services.sweep(now=later(job, 0)) == services.SweepResult(requeued=[], failed=[])
    job.refresh_from_db()
    assert job.status == Generation.Status.RUNNING


def test_a_job_out_of_attempts_is_failed_and_its_battle_voided(
    models: list[Any], settings: Any
) -> None:
    settings.ARENA_MAX_ATTEMPTS = 2
    battle = arena_services.create_battle(prompt_text="a fox", owner="me")
    Generation.objects.filter(pk=battle.generation_left_id).update(attempts=2)
    result = services.sweep(now=timezone.now() + timedelta(hours=2))
    assert battle.generation_left_id in result.failed
    battle.refresh_from_db()
    assert battle.status == Battle.Status.VOID


def test_a_delivery_beyond_the_last_attempt_is_refused_by_the_claim(
    job: Generation, settings: Any
) -> None:
    settings.ARENA_MAX_ATTEMPTS = 1
    Generation.objects.filter(pk=job.pk).update(attempts=1)
    assert services.claim(generation_id=job.pk) is None
    job.refresh_from_db()
    assert job.status == Generation.Status.FAILED and job.error == "out of attempts"


def test_a_task_delivered_twice_runs_once(job: Generation) -> None:
    assert services.claim(generation_id=job.pk) is not None
    assert services.claim(generation_id=job.pk) is None
    job.refresh_from_db()
    assert job.attempts == 1


def test_progress_is_written_at_most_about_four_times_a_second(
    models: list[Any], tiny_models_dir: Any
) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    job = services.create_generation(model=models[0], prompt="a fox", seed=1, steps=120)
    started = timezone.now()
    with CaptureQueriesContext(connection) as queries:
        services.run(generation_id=job.pk)
    seconds = (timezone.now() - started).total_seconds()
    # Progress writes only: the claim and the finish also set steps_done, with the status.
    writes = [
        q
        for q in queries.captured_queries
        if '"steps_done" =' in q["sql"] and '"status" =' not in q["sql"].split("WHERE")[0]
    ]
    job.refresh_from_db()
    assert job.status == Generation.Status.DONE and job.steps_done == 120
    # The first step, then at most one write per quarter second, then the last step.
    assert len(writes) <= seconds / services.PROGRESS_INTERVAL_S + 2, (len(writes), seconds)
    assert 2 <= len(writes) < 120 / 4, "far fewer writes than steps, but some"
    assert job.scheduler and job.model_version == models[0].version
