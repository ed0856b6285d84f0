"""Status polls: an unchanged battle status is a 304; any change, or another session, is not."""

from __future__ import annotations

import re
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


def under_a_floor(
    client: Client, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> tuple[Battle, list[Any]]:
    """A battle under a 10 s floor, and the clock (set it with ``clock[0] = ...``)."""
    settings.ARENA_REVEAL_MIN_MS, settings.ARENA_REVEAL_JITTER_MS = 10_000, 0
    battle = owned_battle(client)
    assert battle.reveal_at is not None
    clock = [battle.created_at + timedelta(seconds=2.5)]
    monkeypatch.setattr(timezone, "now", lambda: clock[0])
    return battle, clock


def test_under_a_reveal_floor_the_api_tag_moves_with_the_shown_progress_not_with_either_side(
    models: list[Any],
    client: Client,
    finish_battle: Any,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    battle, clock = under_a_floor(client, settings, monkeypatch)
    url = f"/api/v1/battles/{battle.public_id}"
    first = client.get(url)
    tag = first["ETag"]
    assert first.status_code == 200 and first.json()["progress"] == 25

    # A side's steps and a finished battle change nothing that is shown before the floor.
    Generation.objects.filter(pk=battle.generation_left_id).update(steps_done=3)
    assert client.get(url, headers={"If-None-Match": tag}).status_code == 304
    finish_battle(battle)
    assert client.get(url, headers={"If-None-Match": tag}).status_code == 304

    clock[0] += timedelta(seconds=1)  # time moves the one figure shown
    moved = client.get(url, headers={"If-None-Match": tag})
    assert moved.status_code == 200 and moved.json() == {
        "id": str(battle.public_id),
        "status": "generating",
        "progress": 35,
    }
    clock[0] = battle.reveal_at
    shown = client.get(url, headers={"If-None-Match": moved["ETag"]})
    assert shown.status_code == 200 and "images" in shown.json()


def floor_of(html: bytes) -> tuple[int, int]:
    """The floor's end (ms from when the panel was drawn) and length the panel carries."""
    found = re.search(rb'data-floor-in-ms="(\d+)" data-floor-ms="(\d+)"', html)
    assert found, html
    return int(found[1]), int(found[2])


def test_under_a_reveal_floor_every_panel_poll_after_the_first_is_a_304_whatever_the_sides_do(
    models: list[Any],
    client: Client,
    finish_battle: Any,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    battle, clock = under_a_floor(client, settings, monkeypatch)
    url = f"/battles/{battle.public_id}/panel"
    first = client.get(url)
    tag = first["ETag"]
    # The page animates the time elapsed itself, from the floor's end and length.
    assert first.status_code == 200 and floor_of(first.content) == (7500, 10_000)
    assert b'value="25"' in first.content and "Generating both images… 25%" in first.text

    # Time, a side's steps and a finished battle: none of them changes the panel's tag.
    for seconds, change in enumerate([None, "steps", "finished", None], start=1):
        if change == "steps":
            Generation.objects.filter(pk=battle.generation_left_id).update(steps_done=3)
        elif change == "finished":
            finish_battle(battle)
        clock[0] = battle.created_at + timedelta(seconds=2.5 + 1.5 * seconds)
        polled = client.get(url, headers={"If-None-Match": tag})
        assert polled.status_code == 304 and polled["ETag"] == tag
    # A poll without the tag (a new tab) is told the floor's end afresh.
    again = client.get(url)
    assert again["ETag"] == tag and floor_of(again.content) == (1500, 10_000)

    clock[0] = battle.reveal_at
    shown = client.get(url, headers={"If-None-Match": tag})
    assert shown.status_code == 200 and b"/images/" in shown.content
    assert b"data-floor" not in shown.content


def poll_trigger(html: bytes) -> str:
    found = re.search(rb'hx-trigger="([^"]*)"', html)
    assert found, html
    return found[1].decode()


def test_under_a_reveal_floor_the_panel_polls_once_just_past_the_floors_end_then_every_400ms(
    models: list[Any], client: Client, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    battle, clock = under_a_floor(client, settings, monkeypatch)
    assert battle.reveal_at is not None
    # 7.5 s of the 10 s floor left: the page and the panel poll next 100 ms past its end,
    # (and 2 s after a failed poll), not every 400 ms.
    for url in (f"/battles/{battle.public_id}", f"/battles/{battle.public_id}/panel"):
        shown = client.get(url)
        assert poll_trigger(shown.content) == "load delay:7600ms, arena-retry delay:2s"
    clock[0] = battle.reveal_at - timedelta(milliseconds=20)
    assert "load delay:120ms," in poll_trigger(client.get(url).content)
    # Past the floor (still generating: no worker) the panel polls every 400 ms again.
    clock[0] = battle.reveal_at + timedelta(milliseconds=1)
    assert poll_trigger(client.get(url).content) == "every 400ms"


def test_a_late_battle_past_its_floor_carries_no_floor_and_keeps_its_tag(
    models: list[Any], client: Client, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    battle, clock = under_a_floor(client, settings, monkeypatch)
    url = f"/battles/{battle.public_id}/panel"
    under = client.get(url)["ETag"]
    assert battle.reveal_at is not None
    clock[0] = battle.reveal_at + timedelta(seconds=1)  # past the floor, still generating
    late = client.get(url, headers={"If-None-Match": under})
    assert late.status_code == 200 and b"data-floor" not in late.content
    assert b'value="99"' in late.content
    clock[0] += timedelta(seconds=2)
    assert client.get(url, headers={"If-None-Match": late["ETag"]}).status_code == 304


def test_under_a_reveal_floor_the_page_without_javascript_shows_the_time_elapsed_and_reloads(
    models: list[Any], client: Client, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    battle, clock = under_a_floor(client, settings, monkeypatch)
    page = client.get(f"/battles/{battle.public_id}")
    assert b'<meta http-equiv="refresh" content="2">' in page.content
    assert b'value="25">25%</progress>' in page.content
    assert "Generating both images… 25%" in page.text
    clock[0] += timedelta(seconds=5)
    assert b'value="75">75%</progress>' in client.get(f"/battles/{battle.public_id}").content
