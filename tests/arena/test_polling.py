"""Status polls: an unchanged battle status is a 304; any change, or another session, is not."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from arena import polling, services
from arena.models import Battle
from generation.models import Generation

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def still_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """A queued battle's panel tag also moves every WAIT_REFRESH_S (arena.waiting); these
    tests compare tags taken moments apart, so that interval stays put."""
    monkeypatch.setattr(polling, "wait_bucket", lambda: 0)


def owned_battle(client: Client) -> Battle:
    client.get("/")
    owner = services.identity_hash(client.session.session_key or "")
    return services.create_battle(prompt_text="a harbour at dusk", owner=owner)


@pytest.mark.parametrize("kind", ["panel", "api"])
def test_an_unchanged_status_is_a_304_and_a_changed_one_a_fresh_answer(
    models: list[Any], client: Client, finish_battle: Any, kind: str
) -> None:
    battle = owned_battle(client)
    url = (
        f"/battles/{battle.public_id}/panel"
        if kind == "panel"
        else f"/api/v1/battles/{battle.public_id}"
    )
    first = client.get(url)
    tag = first["ETag"]
    assert first.status_code == 200 and tag and first["Cache-Control"] == "private, no-cache"
    again = client.get(url, headers={"If-None-Match": tag})
    assert again.status_code == 304 and again.content == b"" and again["ETag"] == tag

    Generation.objects.filter(pk=battle.generation_left_id).update(steps_done=1)
    moved = client.get(url, headers={"If-None-Match": tag})
    assert moved.status_code == 200 and moved["ETag"] != tag

    finish_battle(battle)
    ready = client.get(url, headers={"If-None-Match": moved["ETag"]})
    assert ready.status_code == 200 and b"/images/" in ready.content
    services.cast_vote(battle=battle, choice="left", voter="v" * 64)
    voted = client.get(url, headers={"If-None-Match": ready["ETag"]})
    assert voted.status_code == 200 and battle.model_left.display_name.encode() in voted.content


def test_another_session_with_a_stolen_etag_gets_a_404_not_a_304(
    models: list[Any], client: Client
) -> None:
    battle = owned_battle(client)
    url = f"/battles/{battle.public_id}/panel"
    tag = client.get(url)["ETag"]
    stranger = Client()
    stranger.get("/")
    assert stranger.get(url, headers={"If-None-Match": tag}).status_code == 404
    api = stranger.get(f"/api/v1/battles/{battle.public_id}", headers={"If-None-Match": tag})
    assert api.status_code == 404


def test_a_battle_the_sweeper_voids_is_a_fresh_answer_for_a_poll_that_holds_its_tag(
    models: list[Any], client: Client, settings: Any
) -> None:
    battle = owned_battle(client)
    url = f"/battles/{battle.public_id}/panel"
    tag = client.get(url)["ETag"]
    old = timezone.now() - timedelta(seconds=settings.ARENA_BATTLE_DEADLINE_S + 5)
    Battle.objects.filter(pk=battle.pk).update(created_at=old)
    assert services.void_overdue_battles(now=timezone.now()) == 1
    answer = client.get(url, headers={"If-None-Match": tag})
    assert answer.status_code == 200 and b'data-status="void"' in answer.content


def test_the_tag_is_the_same_for_every_poll_of_one_state_and_says_nothing_of_the_models(
    models: list[Any], client: Client
) -> None:
    battle = owned_battle(client)
    url = f"/battles/{battle.public_id}/panel"
    tags = {client.get(url)["ETag"] for _ in range(3)}
    assert len(tags) == 1
    tag = tags.pop()
    for model in (battle.model_left, battle.model_right):
        assert model.key not in tag and model.display_name not in tag


@pytest.mark.parametrize("kind", ["panel", "api"])
def test_under_a_reveal_floor_the_tag_moves_with_the_shown_progress_not_with_either_side(
    models: list[Any],
    client: Client,
    finish_battle: Any,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
) -> None:
    settings.ARENA_REVEAL_MIN_MS, settings.ARENA_REVEAL_JITTER_MS = 10_000, 0
    battle = owned_battle(client)
    url = (
        f"/battles/{battle.public_id}/panel"
        if kind == "panel"
        else f"/api/v1/battles/{battle.public_id}"
    )
    assert battle.reveal_at is not None
    frozen = battle.created_at + timedelta(seconds=2.5)
    monkeypatch.setattr(timezone, "now", lambda: frozen)
    first = client.get(url)
    tag = first["ETag"]
    assert first.status_code == 200 and b"25" in first.content

    # A side's steps and a finished battle change nothing that is shown before the floor.
    Generation.objects.filter(pk=battle.generation_left_id).update(steps_done=3)
    assert client.get(url, headers={"If-None-Match": tag}).status_code == 304
    finish_battle(battle)
    assert client.get(url, headers={"If-None-Match": tag}).status_code == 304

    frozen += timedelta(seconds=1)  # time moves the one figure shown
    moved = client.get(url, headers={"If-None-Match": tag})
    assert moved.status_code == 200 and b"35" in moved.content and b"/images/" not in moved.content
    frozen = battle.reveal_at
    shown = client.get(url, headers={"If-None-Match": moved["ETag"]})
    assert shown.status_code == 200 and b"/images/" in shown.content
