"""The sweeper recovers jobs whose message or worker was lost, never duplicates a message still
waiting, and fails jobs out of attempts without blaming the model."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import pytest
from django.db import transaction
from django.utils import timezone

from arena import services as arena_services
from arena.models import Battle
from generation import jobs as generation_jobs
from generation import runner, sweeper
from generation.models import Generation, ImageModel

from ..conftest import _purge

pytestmark = pytest.mark.django_db


@pytest.fixture
def job(models: list[Any]) -> Generation:
    return generation_jobs.create_generation(model=models[0], prompt="a fox", seed=1)


def later(job: Generation, seconds: float) -> Any:
    return timezone.now() + timedelta(seconds=job.model.timeout_s + seconds)


def test_a_queued_job_whose_message_was_lost_is_sent_again(
    job: Generation, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    settings.ARENA_LOST_MESSAGE_S = 10
    soon = timezone.now() + timedelta(seconds=9)
    assert sweeper.sweep(now=soon, waiting=set()).requeued == []
    with django_capture_on_commit_callbacks(execute=False) as sent:
        result = sweeper.sweep(now=soon + timedelta(seconds=2), waiting=set())
    job.refresh_from_db()
    assert result.requeued == [job.pk] and len(sent) == 1
    assert job.status == Generation.Status.QUEUED and job.attempts == 1


def test_a_queued_job_whose_message_still_waits_is_never_sent_again(
    job: Generation, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=False) as sent:
        result = sweeper.sweep(now=later(job, 7200), waiting={job.pk})
    job.refresh_from_db()
    assert result == sweeper.SweepResult(requeued=[], failed=[]) and sent == []
    assert job.status == Generation.Status.QUEUED and job.attempts == 0


def test_queued_jobs_are_left_alone_while_the_broker_cannot_be_read(
    job: Generation, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sweeper, "messages_in_broker", lambda **_: None)
    assert sweeper.sweep(now=later(job, 7200)).requeued == []


def test_the_sweeper_reads_the_real_broker_and_adds_no_message_for_a_backlog(
    models: list[Any], test_queue: str, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """Six queued jobs stay six messages however often the sweeper runs (it was 6 -> 24)."""
    settings.ARENA_LOST_MESSAGE_S = 1
    try:
        with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
            jobs = [
                generation_jobs.create_generation(model=models[0], prompt=f"a fox {i}", seed=i)
                for i in range(6)
            ]
            for queued in jobs:
                generation_jobs.enqueue(queued)
        ids = {queued.pk for queued in jobs}
        found = sweeper.messages_in_broker(queues={test_queue}, max_age_s=60)
        assert found is not None and ids <= found
        for _ in range(3):
            with django_capture_on_commit_callbacks(execute=True):
                result = sweeper.sweep(now=timezone.now() + timedelta(hours=1))
            assert result.requeued == []
        found = sweeper.messages_in_broker(queues={test_queue}, max_age_s=60)
        assert found is not None and ids <= found
        assert _messages_on(test_queue) == 6
        _purge(test_queue)  # now the messages are really lost: each is sent once more
        with django_capture_on_commit_callbacks(execute=True):
            result = sweeper.sweep(now=timezone.now() + timedelta(seconds=2))
        assert sorted(result.requeued) == sorted(ids)
        assert _messages_on(test_queue) == 6
    finally:
        _purge(test_queue)


def _messages_on(queue: str) -> int:
    """Messages waiting on ``queue``, counted in the broker itself."""
    from celery import current_app

    with current_app.connection_for_read() as connection:
        channel: Any = connection.default_channel
        if hasattr(channel, "data_folder_in"):  # the embedded file-system broker
            return len([n for n in os.listdir(channel.data_folder_in) if f".{queue}.msg" in n])
        return sum(
            channel.client.llen(channel._q_for_pri(queue, step)) for step in channel.priority_steps
        )


def test_a_running_job_whose_worker_died_is_queued_again(
    job: Generation, django_capture_on_commit_callbacks: Any
) -> None:
    assert generation_jobs.claim(generation_id=job.pk) is not None
    Generation.objects.filter(pk=job.pk).update(steps_done=3)
    with django_capture_on_commit_callbacks(execute=False) as sent:
        result = sweeper.sweep(now=later(job, 3600), waiting=set())
    job.refresh_from_db()
    assert result.requeued == [job.pk] and len(sent) == 1
    assert (job.status, job.steps_done, job.attempts) == (Generation.Status.QUEUED, 0, 1)


def test_a_running_job_within_its_deadline_is_left_alone(job: Generation) -> None:
    assert generation_jobs.claim(generation_id=job.pk) is not None
    assert sweeper.sweep(now=later(job, 0), waiting=set()) == sweeper.SweepResult(
        requeued=[], failed=[]
    )
    job.refresh_from_db()
    assert job.status == Generation.Status.RUNNING


def test_a_job_out_of_attempts_is_failed_and_its_battle_voided(
    models: list[Any], settings: Any
) -> None:
    settings.ARENA_MAX_ATTEMPTS = 2
    battle = arena_services.create_battle(prompt_text="a fox", owner="me")
    Generation.objects.filter(pk=battle.generation_left_id).update(attempts=2)
    result = sweeper.sweep(now=timezone.now() + timedelta(hours=2), waiting=set())
    assert battle.generation_left_id in result.failed
    battle.refresh_from_db()
    assert battle.status == Battle.Status.VOID
    left = Generation.objects.get(pk=battle.generation_left_id)
    assert left.failure_kind == Generation.FailureKind.ATTEMPTS


def test_jobs_out_of_attempts_never_disable_their_model_in_the_sweeper_or_the_claim(
    models: list[Any], settings: Any
) -> None:
    settings.ARENA_MAX_ATTEMPTS = 1
    settings.ARENA_DISABLE_AFTER_FAILURES = 3
    model = models[0]
    jobs = [
        generation_jobs.create_generation(model=model, prompt=f"a fox {i}", seed=i)
        for i in range(6)
    ]
    Generation.objects.filter(pk__in=[j.pk for j in jobs]).update(attempts=1)
    for refused in jobs[:3]:  # a late delivery: the claim's guard
        assert generation_jobs.claim(generation_id=refused.pk) is None
    result = sweeper.sweep(now=later(jobs[0], 3600), waiting=set())  # the sweeper's guard
    assert sorted(result.failed) == sorted(j.pk for j in jobs[3:])
    kinds = set(
        Generation.objects.filter(pk__in=[j.pk for j in jobs]).values_list(
            "failure_kind", flat=True
        )
    )
    assert kinds == {Generation.FailureKind.ATTEMPTS}
    model.refresh_from_db()
    assert model.enabled


@pytest.mark.parametrize(
    ("kind", "disabled"),
    [
        (Generation.FailureKind.MODEL_ERROR, True),
        (Generation.FailureKind.TIMEOUT, True),
        (Generation.FailureKind.ENQUEUE, False),
        (Generation.FailureKind.DEADLINE, False),
        (Generation.FailureKind.ATTEMPTS, False),
        (Generation.FailureKind.RECORDING, False),
    ],
)
def test_only_the_models_own_failures_disable_it(
    models: list[Any], settings: Any, kind: Generation.FailureKind, disabled: bool
) -> None:
    settings.ARENA_DISABLE_AFTER_FAILURES = 3
    model = models[0]
    for i in range(3):
        failing = generation_jobs.create_generation(model=model, prompt=f"a fox {i}", seed=i)
        generation_jobs.fail(generation_id=failing.pk, error="whatever the text says", kind=kind)
    model.refresh_from_db()
    assert model.enabled is not disabled


def test_failures_that_are_not_the_models_do_not_hide_its_own_in_a_row(
    models: list[Any], settings: Any
) -> None:
    settings.ARENA_DISABLE_AFTER_FAILURES = 2
    model = models[0]
    kinds = [
        Generation.FailureKind.MODEL_ERROR,
        Generation.FailureKind.ENQUEUE,
        Generation.FailureKind.MODEL_ERROR,
    ]
    for i, kind in enumerate(kinds):
        failing = generation_jobs.create_generation(model=model, prompt=f"a fox {i}", seed=i)
        generation_jobs.fail(generation_id=failing.pk, error="x", kind=kind)
    assert not ImageModel.objects.get(pk=model.pk).enabled


def test_a_delivery_beyond_the_last_attempt_is_refused_by_the_claim(
    job: Generation, settings: Any
) -> None:
    settings.ARENA_MAX_ATTEMPTS = 1
    Generation.objects.filter(pk=job.pk).update(attempts=1)
    assert generation_jobs.claim(generation_id=job.pk) is None
    job.refresh_from_db()
    assert job.status == Generation.Status.FAILED and job.error == "out of attempts"
    assert job.failure_kind == Generation.FailureKind.ATTEMPTS


def test_a_task_delivered_twice_runs_once(job: Generation) -> None:
    assert generation_jobs.claim(generation_id=job.pk, task_id="first") is not None
    assert generation_jobs.claim(generation_id=job.pk, task_id="second") is None
    assert generation_jobs.claim(generation_id=job.pk) is None
    job.refresh_from_db()
    assert job.attempts == 1


def test_the_delivery_that_claimed_a_job_takes_it_back_after_a_blip_at_no_attempt(
    job: Generation,
) -> None:
    assert generation_jobs.claim(generation_id=job.pk, task_id="task-1") is not None
    Generation.objects.filter(pk=job.pk).update(steps_done=2)
    again = generation_jobs.claim(generation_id=job.pk, task_id="task-1")
    assert again is not None and again.steps_done == 0 and again.attempts == 1


def test_the_sweeper_voids_battles_past_their_deadline(models: list[Any], settings: Any) -> None:
    battle = arena_services.create_battle(prompt_text="a fox", owner="me")
    deadline = timedelta(seconds=settings.ARENA_BATTLE_DEADLINE_S)
    sweeper.sweep(now=timezone.now() + deadline - timedelta(seconds=5), waiting=set())
    battle.refresh_from_db()
    assert battle.status == Battle.Status.GENERATING
    sweeper.sweep(now=timezone.now() + deadline + timedelta(seconds=1), waiting=set())
    battle.refresh_from_db()
    assert battle.status == Battle.Status.VOID
    kinds = Generation.objects.filter(
        pk__in=[battle.generation_left_id, battle.generation_right_id]
    ).values_list("failure_kind", flat=True)
    assert set(kinds) == {Generation.FailureKind.DEADLINE}


def test_polling_an_overdue_battle_writes_nothing(models: list[Any]) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    battle = arena_services.create_battle(prompt_text="a fox", owner="me")
    Battle.objects.filter(pk=battle.pk).update(created_at=timezone.now() - timedelta(days=1))
    battle.refresh_from_db()
    with CaptureQueriesContext(connection) as queries:
        state = arena_services.battle_state(battle)
    assert state.status == "generating"
    writes = [q["sql"] for q in queries.captured_queries if not q["sql"].startswith("SELECT")]
    assert writes == []


def test_progress_is_written_at_most_about_four_times_a_second(
    models: list[Any], tiny_models_dir: Any
) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    job = generation_jobs.create_generation(model=models[0], prompt="a fox", seed=1, steps=120)
    started = timezone.now()
    with CaptureQueriesContext(connection) as queries:
        runner.run(generation_id=job.pk)
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
    assert len(writes) <= seconds / runner.PROGRESS_INTERVAL_S + 2, (len(writes), seconds)
    # (On a quiet machine about 120 / 4 or fewer; the time bound above holds under any load.)
    assert 2 <= len(writes) < 120, "fewer writes than steps, but some"
    assert job.scheduler and job.model_version == models[0].version


def _pool_job(model: Any, steps: int) -> Generation:
    return generation_jobs.create_generation(
        model=model, prompt="a fox", seed=7, steps=steps, purpose=Generation.Purpose.POOL
    )


def test_a_pool_job_gives_way_to_a_live_job_waiting_on_its_queue_at_no_attempt(
    models: list[Any], tiny_models_dir: Any
) -> None:
    pool_job = _pool_job(models[0], steps=40)
    live = generation_jobs.create_generation(model=models[1], prompt="a cat", seed=1)  # same queue
    assert live.status == Generation.Status.QUEUED and live.model.queue == models[0].queue
    runner.run(generation_id=pool_job.pk)
    pool_job.refresh_from_db()
    assert pool_job.status == Generation.Status.QUEUED
    assert pool_job.attempts == 0 and pool_job.steps_done == 0 and not pool_job.image
    # Once nothing live waits, the same pool job runs to the end.
    Generation.objects.filter(pk=live.pk).update(status=Generation.Status.DONE)
    runner.run(generation_id=pool_job.pk)
    pool_job.refresh_from_db()
    assert pool_job.status == Generation.Status.DONE and pool_job.steps_done == 40


def test_live_jobs_never_give_way(models: list[Any], tiny_models_dir: Any) -> None:
    job = generation_jobs.create_generation(model=models[0], prompt="a fox", seed=7, steps=20)
    generation_jobs.create_generation(model=models[1], prompt="a cat", seed=1)  # waits on the queue
    runner.run(generation_id=job.pk)
    job.refresh_from_db()
    assert job.status == Generation.Status.DONE


def test_a_pool_job_does_not_give_way_to_jobs_on_other_queues(
    models: list[Any], tiny_models_dir: Any
) -> None:
    pool_job = _pool_job(models[0], steps=20)
    other = generation_jobs.create_generation(model=models[1], prompt="a cat", seed=1)
    ImageModel.objects.filter(pk=models[1].pk).update(queue="elsewhere")
    assert other.status == Generation.Status.QUEUED
    runner.run(generation_id=pool_job.pk)
    pool_job.refresh_from_db()
    assert pool_job.status == Generation.Status.DONE


def test_a_running_pool_job_gives_way_at_its_next_step_to_a_live_job_sent_meanwhile(
    models: list[Any],
    tiny_models_dir: Any,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    pool_job = _pool_job(models[0], steps=200)  # far more than one look (50 ms) takes
    make_image = runner._make_image
    live: list[Generation] = []

    def live_job_arrives_at_step_3(generation: Generation, *, on_step: Any) -> Any:
        def step(done: int) -> None:
            if done == 3 and not live:  # a battle is submitted while the pool image is half made
                live.append(
                    generation_jobs.create_generation(model=models[1], prompt="a cat", seed=1)
                )
            on_step(done)

        return make_image(generation, on_step=step)

    monkeypatch.setattr(runner, "_make_image", live_job_arrives_at_step_3)
    with django_capture_on_commit_callbacks(execute=False) as sent:
        runner.run(generation_id=pool_job.pk, task_id="t1")
    pool_job.refresh_from_db()
    assert live, "the pool job never reached step 3"
    assert len(sent) == 1, "its message goes back to the queue, once"
    assert pool_job.status == Generation.Status.QUEUED, "it stopped and went back to the queue"
    assert pool_job.attempts == 0 and pool_job.failure_kind == "" and not pool_job.image
    assert pool_job.started_at is None and pool_job.claimed_by == ""


def test_a_pool_job_gives_way_before_it_starts_and_is_sent_again_once(
    models: list[Any], tiny_models_dir: Any, django_capture_on_commit_callbacks: Any
) -> None:
    pool_job = _pool_job(models[0], steps=40)
    generation_jobs.create_generation(model=models[1], prompt="a cat", seed=1)  # just committed
    before = pool_job.queued_at
    with django_capture_on_commit_callbacks(execute=False) as sent:
        runner.run(generation_id=pool_job.pk, task_id="t1")
    pool_job.refresh_from_db()
    assert len(sent) == 1, "its message goes back to the queue, once"
    assert pool_job.status == Generation.Status.QUEUED and pool_job.queued_at > before
    assert pool_job.attempts == 0 and pool_job.started_at is None and pool_job.failure_kind == ""


def test_a_pool_job_does_not_bounce_on_a_live_job_whose_message_was_lost(
    models: list[Any], tiny_models_dir: Any
) -> None:
    """A live job still queued long before the pool job started is not in the broker (the
    broker would have handed it out first): the sweeper sends it again; the pool job goes on."""
    pool_job = _pool_job(models[0], steps=20)
    lost = generation_jobs.create_generation(model=models[1], prompt="a cat", seed=1)
    long_ago = timezone.now() - timedelta(seconds=runner.GIVE_WAY_WINDOW_S + 5)
    Generation.objects.filter(pk=lost.pk).update(queued_at=long_ago)
    runner.run(generation_id=pool_job.pk)
    pool_job.refresh_from_db()
    assert pool_job.status == Generation.Status.DONE and pool_job.attempts == 1


def _filesystem_broker(root: Any) -> Any:
    from kombu import Connection

    return Connection(
        "filesystem://localhost/",
        transport="arena.broker:Transport",
        transport_options={
            "data_folder_in": str(root / "queue"),
            "data_folder_out": str(root / "queue"),
            "claim_folder": str(root / "claimed"),
            "control_folder": str(root / "control"),
            "polling_interval": 0.01,
        },
    )


def test_a_message_a_worker_took_but_has_not_started_is_not_lost_on_the_file_system_broker(
    job: Generation, tmp_path: Any, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The soak's "needed more than one delivery": a backlogged job's message, taken by the
    worker a moment before its claim, was missing from the queue folder, so the sweeper sent it
    again (attempts + 1) and the worker's claim then made it two attempts. The taken message is
    a reservation, as on Redis: the sweeper leaves the job alone, and its one delivery claims it
    at attempt 1. Once the worker that held it is gone, it is lost: sent again."""
    from celery import current_app

    from generation.tasks import generate

    settings.ARENA_LOST_MESSAGE_S = 10
    monkeypatch.setenv("CELERY_BROKER_URL", "filesystem://localhost/")  # what conf reads first
    monkeypatch.setattr(current_app, "connection_for_read", lambda: _filesystem_broker(tmp_path))
    queue = current_app.amqp.queues[job.model.queue]
    with _filesystem_broker(tmp_path) as connection:
        generate.apply_async(args=(job.pk,), queue=job.model.queue, producer=connection.Producer())
        # Sent long ago: the job waited in a backlog until a worker took its message.
        Generation.objects.filter(pk=job.pk).update(
            queued_at=timezone.now() - timedelta(seconds=60)
        )
        taken: list[Any] = []
        with connection.Consumer(queues=[queue], callbacks=[lambda _b, m: taken.append(m)]):
            connection.drain_events(timeout=5)
            assert len(taken) == 1
            assert _messages_on_folder(tmp_path / "queue") == 0, "the worker holds it"

            assert sweeper.sweep().requeued == [], "a reservation is not a lost message"
            assert _messages_on_folder(tmp_path / "queue") == 0, "and is not sent again"
            claimed = generation_jobs.claim(generation_id=job.pk, task_id="the-delivery")
            assert claimed is not None and claimed.attempts == 1
            taken[0].ack()
        assert os.listdir(tmp_path / "claimed") == [], "acknowledged: no longer held"

        # A message held by a process that is gone is lost; the sweeper sends it again.
        Generation.objects.filter(pk=job.pk).update(
            status=Generation.Status.QUEUED,
            queued_at=timezone.now() - timedelta(seconds=60),
            started_at=None,
        )
        generate.apply_async(args=(job.pk,), queue=job.model.queue, producer=connection.Producer())
        (message,) = os.listdir(tmp_path / "queue")
        dead = 2**22 + 12345  # above pid_max's default: no process has it
        os.rename(tmp_path / "queue" / message, tmp_path / "claimed" / f"{dead}-{message}")
        assert sweeper.sweep().requeued == [job.pk]


def _messages_on_folder(folder: Any) -> int:
    return len([name for name in os.listdir(folder) if name.endswith(".msg")])
