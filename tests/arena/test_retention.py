"""Retention deletes images nobody needs and keeps every image behind a vote."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from arena import chat_services as chat
from arena import retention, services
from arena.models import Battle, ChatTurn, Vote
from generation import jobs as generation_jobs
from generation.models import Generation

pytestmark = pytest.mark.django_db

UNVOTED = timedelta(days=7)
CHAT = timedelta(days=30)


def age(battle: Battle, days: int) -> None:
    Battle.objects.filter(pk=battle.pk).update(created_at=timezone.now() - timedelta(days=days))


def files_of(battle: Battle) -> list[str]:
    battle.refresh_from_db()
    return [str(battle.generation_left.image.name), str(battle.generation_right.image.name)]


def exists(name: str) -> bool:
    return default_storage.exists(name)


def new_battle(finish_battle: Any, prompt: str) -> Battle:
    battle = services.create_battle(prompt_text=prompt, owner="o" * 64)
    finish_battle(battle)
    return battle


def chat_turn(models: list[Any], days_old: int) -> Generation:
    conversation = chat.conversation_for(owner="c" * 64)
    settings = chat.check_settings(model=models[0], prompt="a teapot")
    turn = chat.start_turn(conversation=conversation, settings=settings)
    ChatTurn.objects.filter(pk=turn.pk).update(created_at=timezone.now() - timedelta(days=days_old))
    job = turn.chat_images.get().generation
    claimed = generation_jobs.claim(generation_id=job.pk)
    assert claimed is not None
    from tests.conftest import _png

    generation_jobs.finish(
        generation=claimed, data=_png(), compute_ms=5, queue_wait_ms=1, device="cpu"
    )
    job.refresh_from_db()
    return job


def test_old_unvoted_battles_lose_their_images_and_voted_ones_keep_them(
    models: list[Any], finish_battle: Any
) -> None:
    voted = new_battle(finish_battle, "a voted fox")
    services.cast_vote(battle=voted, choice="left", voter="v" * 64)
    excluded = new_battle(finish_battle, "an excluded vote")
    vote = services.cast_vote(battle=excluded, choice="tie", voter="v" * 64)
    services.exclude_votes(votes=Vote.objects.filter(pk=vote.pk), reason="test", by="tester")
    unvoted_old = new_battle(finish_battle, "nobody voted")
    unvoted_recent = new_battle(finish_battle, "not voted yet")
    for battle in (voted, excluded, unvoted_old):
        age(battle, 30)
    age(unvoted_recent, 2)

    pruned = retention.prune_images(unvoted_after=UNVOTED, chat_after=CHAT)

    assert pruned.battle_images == 2 and pruned.battles_voided == 1
    assert not any(exists(name) for name in files_of(unvoted_old))
    for battle in (voted, excluded, unvoted_recent):
        assert all(exists(name) for name in files_of(battle)), battle.prompt_text
    unvoted_old.refresh_from_db()
    assert unvoted_old.status == Battle.Status.VOID
    assert Battle.objects.get(pk=voted.pk).status == Battle.Status.VOTED


def test_a_pruned_battle_cannot_be_voted_on_and_its_images_answer_404(
    models: list[Any], finish_battle: Any, client: Client
) -> None:
    client.get("/")
    owner = services.identity_hash(client.session.session_key or "")
    battle = services.create_battle(prompt_text="abandoned", owner=owner)
    finish_battle(battle)
    age(battle, 30)
    names = files_of(battle)
    retention.prune_images(unvoted_after=UNVOTED, chat_after=CHAT)
    for name in names:
        assert client.get(f"/images/{name.split('/')[1]}").status_code == 404
    page = client.get(f"/battles/{battle.public_id}")
    assert page.status_code == 200
    vote = client.post(f"/battles/{battle.public_id}/vote", {"choice": "left"})
    assert vote.status_code == 409
    assert not Vote.objects.filter(battle=battle).exists()


def test_a_pruned_image_is_never_reused_by_the_cache(models: list[Any], finish_battle: Any) -> None:
    battle = new_battle(finish_battle, "cached twice")
    age(battle, 30)
    retention.prune_images(unvoted_after=UNVOTED, chat_after=CHAT)
    left = Generation.objects.get(pk=battle.generation_left_id)
    assert left.cache_key == "" and left.image_sha256 == ""
    again = generation_jobs.create_generation(
        model=left.model, prompt=left.prompt, seed=left.seed, steps=left.steps
    )
    assert again.status == Generation.Status.QUEUED, "a fresh job, not a copy of a missing file"


def test_old_chat_images_go_and_recent_ones_and_pool_images_stay(
    models: list[Any], finish_battle: Any
) -> None:
    old = chat_turn(models, days_old=40)
    recent = chat_turn(models, days_old=3)
    pool = generation_jobs.create_generation(
        model=models[0], prompt="pool image", seed=1, purpose=Generation.Purpose.POOL
    )
    Generation.objects.filter(pk=pool.pk).update(created_at=timezone.now() - timedelta(days=90))
    claimed = generation_jobs.claim(generation_id=pool.pk)
    assert claimed is not None
    from tests.conftest import _png

    generation_jobs.finish(
        generation=claimed, data=_png(), compute_ms=5, queue_wait_ms=1, device="cpu"
    )
    pool.refresh_from_db()

    pruned = retention.prune_images(unvoted_after=UNVOTED, chat_after=CHAT)

    assert pruned.chat_images == 1
    assert not exists(str(old.image.name))
    assert exists(str(recent.image.name)) and exists(str(pool.image.name))


def test_a_dry_run_counts_and_deletes_nothing(models: list[Any], finish_battle: Any) -> None:
    battle = new_battle(finish_battle, "dry run")
    age(battle, 30)
    out = StringIO()
    call_command("prune_images", "--dry-run", stdout=out)
    assert (
        "would delete 2 battle images and 0 chat images; 1 unvoted battles voided" in out.getvalue()
    )
    assert all(exists(name) for name in files_of(battle))
    assert Battle.objects.get(pk=battle.pk).status == Battle.Status.READY


def test_the_command_refuses_a_zero_day_limit() -> None:
    err = StringIO()
    with pytest.raises(SystemExit):
        call_command("prune_images", "--unvoted-days", "0", stderr=err)
    assert "at least 1" in err.getvalue()
