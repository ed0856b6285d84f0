"""Matchmaking leaves out models that cannot serve a battle soon: no live worker on their
queue, or an expected wait beyond ARENA_MAX_EXPECTED_WAIT_S."""

from __future__ import annotations

import random
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from arena import services
from arena.matchmaking import NotEnoughModels, available_weights
from generation import capacity
from generation import jobs as generation_jobs
from generation.models import Generation, ImageModel, WorkerHeartbeat


def test_available_weights_zero_dead_and_slow_models_and_keep_the_rest() -> None:
    weights = available_weights(
        weights=[1.0, 2.0, 3.0, 4.0],
        live=[True, False, True, True],
        expected_wait_s=[0.0, 0.0, 61.0, 60.0],
        budget_s=60,
    )
    assert weights == [1.0, 0.0, 0.0, 4.0]


def test_a_budget_of_zero_means_no_limit() -> None:
    assert available_weights(weights=[1.0], live=[True], expected_wait_s=[1e9], budget_s=0) == [1.0]


def test_available_weights_refuse_lists_of_different_lengths() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        available_weights(weights=[1.0], live=[], expected_wait_s=[0.0], budget_s=0)


@pytest.fixture
def live(models: list[Any], settings: Any) -> list[Any]:
    """Three models on a queue with a ready worker; the others on a queue nobody serves."""
    settings.ARENA_MATCH_LIVE_WORKERS = True
    served, unserved = models[:3], models[3:]
    ImageModel.objects.filter(pk__in=[m.pk for m in served]).update(queue="gpu-live")
    ImageModel.objects.filter(pk__in=[m.pk for m in unserved]).update(queue="gpu-dead")
    WorkerHeartbeat.objects.create(
        node="w@h",
        queues=["gpu-live"],
        ready=True,
        children=1,
        warm_children=1,
        seen_at=timezone.now(),
    )
    return served


@pytest.mark.django_db
def test_battles_never_draw_a_model_whose_queue_has_no_live_worker(
    live: list[Any], settings: Any
) -> None:
    settings.ARENA_MAX_EXPECTED_WAIT_S = 0  # no worker drains these jobs; the backlog grows
    rng = random.Random(4)
    drawn: set[int] = set()
    for i in range(40):
        battle = services.create_battle(prompt_text=f"a fox {i}", owner="me", rng=rng)
        drawn |= {battle.model_left_id, battle.model_right_id}
    assert drawn == {m.pk for m in live}


@pytest.mark.django_db
def test_a_model_with_a_long_battle_backlog_is_not_drawn_until_it_drains(
    live: list[Any], settings: Any
) -> None:
    settings.ARENA_MAX_EXPECTED_WAIT_S = 60
    slow = live[0]
    ImageModel.objects.filter(pk=slow.pk).update(queue="gpu-slow")
    WorkerHeartbeat.objects.create(
        node="w2@h",
        queues=["gpu-slow"],
        ready=True,
        children=1,
        warm_children=1,
        seen_at=timezone.now(),
    )
    slow.refresh_from_db()
    for model, compute_ms in ((slow, 5000), (live[1], 1), (live[2], 1)):
        done = generation_jobs.create_generation(model=model, prompt="x", seed=1)
        Generation.objects.filter(pk=done.pk).update(
            status=Generation.Status.DONE, compute_ms=compute_ms, finished_at=timezone.now()
        )
    # 12 battle jobs of 5 s each: a new one would wait 60 s; one more and it is over budget.
    backlog = [
        generation_jobs.create_generation(model=slow, prompt=f"q {i}", seed=i) for i in range(13)
    ]
    waits = capacity.expected_waits(models=[slow], workers=capacity.serving_workers())
    assert waits[slow.pk] == pytest.approx(65.0)
    rng = random.Random(5)
    for i in range(20):
        battle = services.create_battle(prompt_text=f"a cat {i}", owner="me", rng=rng)
        assert slow.pk not in {battle.model_left_id, battle.model_right_id}
    # Pool jobs wait behind battles: a pool backlog does not delay a battle job.
    Generation.objects.filter(pk__in=[b.pk for b in backlog]).update(
        purpose=Generation.Purpose.POOL
    )
    waits = capacity.expected_waits(models=[slow], workers=capacity.serving_workers())
    assert waits[slow.pk] == 0.0


@pytest.mark.django_db
def test_with_no_live_workers_the_api_answers_503_no_models(
    models: list[Any], settings: Any
) -> None:
    settings.ARENA_MATCH_LIVE_WORKERS = True
    client = Client()
    token = client.get("/api/v1/session").json()["csrf_token"]
    response = client.post(
        "/api/v1/battles",
        {"prompt": "a fox"},
        content_type="application/json",
        headers={"X-CSRFToken": token},
    )
    assert response.status_code == 503 and response.json()["error"]["code"] == "no_models"
    with pytest.raises(NotEnoughModels):
        services.create_battle(prompt_text="a fox", owner="me")
