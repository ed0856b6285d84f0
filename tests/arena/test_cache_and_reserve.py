"""The content-addressed image cache, pregeneration, and the reserve model."""

from __future__ import annotations

import random
from typing import Any

import pytest

from arena import services
from arena.models import Battle, Prompt
from generation import jobs as generation_jobs
from generation.models import Generation, ImageModel

from .test_services import finish_side

pytestmark = pytest.mark.django_db


CHAT = Generation.Purpose.CHAT


def test_a_repeated_chat_request_reuses_the_image_under_a_new_name(
    models: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    first = generation_jobs.create_generation(model=models[0], prompt="a fox", seed=1, purpose=CHAT)
    finish_side(first)
    first.refresh_from_db()
    with django_capture_on_commit_callbacks(execute=False) as sent:
        again = generation_jobs.create_generation(
            model=models[0], prompt=" a  fox ", seed=1, purpose=CHAT
        )
        generation_jobs.enqueue(again)
    assert sent == [], "nothing to queue"
    assert again.status == Generation.Status.DONE and again.cached_from == first
    assert again.image.name != first.image.name
    assert again.image_sha256 == first.image_sha256


@pytest.mark.parametrize("change", [{"seed": 2}, {"prompt": "a wolf"}, {"steps": 3}])
def test_any_change_to_what_decides_the_pixels_misses_the_cache(
    models: list[Any], change: dict[str, Any]
) -> None:
    finish_side(
        generation_jobs.create_generation(model=models[0], prompt="a fox", seed=1, purpose=CHAT)
    )
    request = {"model": models[0], "prompt": "a fox", "seed": 1, "purpose": CHAT, **change}
    assert generation_jobs.create_generation(**request).status == Generation.Status.QUEUED


@pytest.mark.parametrize("first_purpose", list(Generation.Purpose))
@pytest.mark.parametrize("then_purpose", list(Generation.Purpose))
def test_only_chat_images_are_ever_reused_and_only_by_chat(
    models: list[Any], first_purpose: str, then_purpose: str
) -> None:
    first = generation_jobs.create_generation(
        model=models[0], prompt="a fox", seed=1, purpose=first_purpose
    )
    finish_side(first)
    again = generation_jobs.create_generation(
        model=models[0], prompt="a fox", seed=1, purpose=then_purpose
    )
    reused = first_purpose == then_purpose == CHAT
    assert (again.status == Generation.Status.DONE) is reused
    assert (again.cached_from_id == first.pk) is reused


def test_a_battle_on_a_curated_prompt_is_ready_at_once_from_the_pool(
    models: list[Any], settings: Any
) -> None:
    services.load_prompts()
    prompt = Prompt.objects.curated().order_by("pk").first()
    assert prompt is not None
    result = services.pregenerate(per_pair=1, limit=1)
    assert len(result.queued) == len(models) and result.present == 0
    for job in Generation.objects.filter(pk__in=result.queued):
        assert job.purpose == Generation.Purpose.POOL
        finish_side(job)
    assert services.pregenerate(per_pair=1, limit=1) == services.Pregenerated(
        queued=[], present=len(models)
    )
    battle = services.create_battle(prompt_text=prompt.text, owner="me")
    assert battle.status == Battle.Status.READY
    assert {battle.generation_left_id, battle.generation_right_id} <= set(result.queued)
    # The pool is no longer stocked for every model, so the next battle is generated live.
    live = services.create_battle(prompt_text=prompt.text, owner="me", rng=random.Random(3))
    assert live.status == Battle.Status.GENERATING
    assert not {live.generation_left_id, live.generation_right_id} & set(result.queued)


@pytest.fixture
def reserve(models: list[Any], settings: Any) -> ImageModel:
    """The PixArt model stands in for failed sides and is never drawn itself (weight 0)."""
    stand_in = models[3]
    ImageModel.objects.filter(pk=stand_in.pk).update(sampling_weight=0)
    settings.ARENA_RESERVE_MODEL = stand_in.key
    return stand_in


def test_a_failed_side_is_handed_to_the_reserve_model_and_the_battle_goes_on(
    reserve: ImageModel,
) -> None:
    battle = services.create_battle(prompt_text="a harbour", owner="me")
    failed_model = battle.model_left_id
    generation_jobs.fail(generation_id=battle.generation_left_id, error="CUDA error")
    battle.refresh_from_db()
    assert battle.status == Battle.Status.GENERATING and battle.replacements == 1
    assert battle.model_left_id == reserve.pk != failed_model
    replacement = battle.generation_left
    assert (replacement.status, replacement.seed) == (Generation.Status.QUEUED, battle.seed)
    finish_side(replacement)
    finish_side(battle.generation_right)
    battle.refresh_from_db()
    assert battle.status == Battle.Status.READY


def test_when_the_reserve_fails_too_the_battle_is_voided(reserve: ImageModel) -> None:
    battle = services.create_battle(prompt_text="a harbour", owner="me")
    generation_jobs.fail(generation_id=battle.generation_right_id, error="boom")
    battle.refresh_from_db()
    generation_jobs.fail(generation_id=battle.generation_right_id, error="boom again")
    battle.refresh_from_db()
    assert battle.status == Battle.Status.VOID
    assert services.battle_state(battle).message == services.VOID_MESSAGE
