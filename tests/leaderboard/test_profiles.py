"""Model pages: sample images only from images already named, and the head-to-head table."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from arena import chat_services, services
from arena.models import Battle, PoolImage, Prompt
from generation import jobs as generation_jobs
from generation.models import Generation, ImageModel
from leaderboard import profiles
from tests.arena.test_services import finish_side, png_bytes

pytestmark = pytest.mark.django_db


def battle(choice: str = "", *, prompt: str = "a red fox", color: int = 1) -> Battle:
    made = services.create_battle(prompt_text=prompt, owner="me")
    for offset, side in enumerate((made.generation_left, made.generation_right)):
        claimed = generation_jobs.claim(generation_id=side.pk)
        assert claimed is not None
        generation_jobs.finish(
            generation=claimed,
            data=png_bytes((color, 2 * offset, 3)),
            compute_ms=5,
            queue_wait_ms=1,
            device="cpu",
        )
    made.refresh_from_db()
    if choice:
        services.cast_vote(battle=made, choice=choice, voter="me")
    return made


def chat_image(model: ImageModel, prompt: str = "a chat kettle") -> Generation:
    """One queued direct-chat image of ``model``."""
    turn = chat_services.start_turn(
        conversation=chat_services.conversation_for(owner="me"),
        settings=chat_services.TurnSettings(
            model=model,
            prompt=prompt,
            negative_prompt="",
            seed=1,
            steps=1,
            guidance=model.default_guidance,
            width=model.width,
            height=model.height,
            count=1,
        ),
    )
    return turn.chat_images.get().generation


def name_of(generation: Generation) -> str:
    return str(generation.image.name).rsplit("/", 1)[-1]


def page_of(client: Client, model: ImageModel) -> str:
    response = client.get(f"/leaderboard/models/{model.key}/")
    assert response.status_code == 200
    return response.content.decode()


def test_a_voted_battles_images_are_samples_on_both_models_pages(
    client: Client, models: list[Any]
) -> None:
    voted = battle("left", prompt="a voted lighthouse")
    for model, side in (
        (voted.model_left, voted.generation_left),
        (voted.model_right, voted.generation_right),
    ):
        html = page_of(client, model)
        assert f"/images/{name_of(side)}" in html and "a voted lighthouse" in html


def test_an_unrevealed_battles_images_never_appear_on_a_model_page(
    client: Client, models: list[Any]
) -> None:
    hidden = battle(prompt="an unrevealed castle", color=7)
    assert hidden.status == Battle.Status.READY
    for model in (hidden.model_left, hidden.model_right):
        html = page_of(client, model)
        for side in (hidden.generation_left, hidden.generation_right):
            assert name_of(side) not in html
        assert "an unrevealed castle" not in html


def test_an_image_with_the_bytes_of_an_unrevealed_battle_is_no_sample(
    client: Client, models: list[Any]
) -> None:
    """A chat image that shares its pixels with an unvoted battle's side would name that side:
    it is left out, whichever row it sits on."""
    hidden = battle(prompt="an unrevealed castle", color=9)
    chat = chat_image(hidden.model_left)
    Generation.objects.filter(pk=chat.pk).update(
        status=Generation.Status.DONE,
        image=hidden.generation_left.image.name,
        image_sha256=hidden.generation_left.image_sha256,
        finished_at=timezone.now(),
    )
    html = page_of(client, hidden.model_left)
    assert name_of(hidden.generation_left) not in html
    assert profiles.samples(hidden.model_left.key) == []


def test_a_pool_image_not_yet_used_never_appears_on_a_model_page(
    client: Client, models: list[Any]
) -> None:
    model = models[0]
    prompt = Prompt.objects.create(text="a pooled harbour", category="animals")
    job = generation_jobs.create_generation(
        model=model,
        prompt=prompt.text,
        seed=5,
        purpose=Generation.Purpose.POOL,
    )
    PoolImage.objects.create(prompt=prompt, model=model, generation=job)
    finish_side(job)
    job.refresh_from_db()
    assert job.status == Generation.Status.DONE
    html = page_of(client, model)
    assert name_of(job) not in html and "a pooled harbour" not in html


def test_direct_chat_and_named_comparison_images_are_samples(
    client: Client, models: list[Any]
) -> None:
    model = models[0]
    image = chat_image(model)
    finish_side(image)
    image.refresh_from_db()
    html = page_of(client, model)
    assert f"/images/{name_of(image)}" in html and "direct chat" in html


def test_the_head_to_head_table_counts_wins_losses_and_ties_against_each_opponent(
    client: Client, models: list[Any]
) -> None:
    for choice in ("left", "left", "right", "tie", "both_bad"):
        battle(choice)
    counted = Battle.objects.counted().select_related("vote", "model_left", "model_right")
    model = counted[0].model_left
    expected: dict[str, list[int]] = {}
    for b in counted:
        if model.pk not in (b.model_left_id, b.model_right_id):
            continue
        mine_left = b.model_left_id == model.pk
        opponent = b.model_right if mine_left else b.model_left
        row = expected.setdefault(opponent.key, [0, 0, 0, 0])
        choice = b.vote.choice
        if choice == "tie":
            row[2] += 1
        elif choice == "both_bad":
            row[3] += 1
        elif (choice == "left") == mine_left:
            row[0] += 1
        else:
            row[1] += 1
    found = {
        r.opponent.key: [r.wins, r.losses, r.ties, r.both_bad]
        for r in profiles.head_to_head(model.key)
    }
    assert found == expected
    html = page_of(client, model)
    assert 'id="head-to-head"' in html


def test_named_comparison_votes_are_left_out_of_the_head_to_head_table(
    models: list[Any],
) -> None:
    left, right = models[0], models[1]
    named = chat_services.create_named_battle(
        owner="me", prompt_text="a named duel", left=left, right=right
    )
    finish_side(named.generation_left)
    finish_side(named.generation_right)
    named.refresh_from_db()
    services.cast_vote(battle=named, choice="left", voter="me")
    assert profiles.head_to_head(left.key) == []


def test_a_model_page_without_votes_or_images_says_so(client: Client, models: list[Any]) -> None:
    html = page_of(client, models[0])
    assert 'id="no-head-to-head"' in html and 'id="no-samples"' in html
