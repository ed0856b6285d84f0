"""Status polls: an unchanged battle status is a 304; any change, or another session, is not."""

from __future__ import annotations

import math
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


def test_under_a_reveal_floor_the_panel_polls_once_just_past_the_floors_end_then_at_steps(
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
    # Past the floor (still generating, no worker, the models have no runs yet to go by): the
    # panel polls at the next reveal step, 100 ms past it, not every 400 ms.
    clock[0] = battle.reveal_at + timedelta(milliseconds=1)
    assert poll_trigger(client.get(url).content) == "load delay:1099ms, arena-retry delay:2s"


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
    # The panel names the step it polls at next: asked again before it, nothing changed.
    clock[0] += timedelta(milliseconds=500)
    assert client.get(url, headers={"If-None-Match": late["ETag"]}).status_code == 304
    clock[0] += timedelta(seconds=2)  # a later step: the poll is told the next one
    moved = client.get(url, headers={"If-None-Match": late["ETag"]})
    assert moved.status_code == 200 and b'value="99"' in moved.content


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


# --- Past the floor: the page asks again when the battle could first be shown -----------------


def ran(model: Any, *, compute_ms: int, steps: int = 8, times: int = 3) -> None:
    """Recent finished fresh runs of a model, as a worker writes them."""
    for _ in range(times):
        Generation.objects.create(
            model=model,
            prompt="a run",
            seed=1,
            steps=steps,
            guidance=5.0,
            width=64,
            height=64,
            output_width=64,
            output_height=64,
            status=Generation.Status.DONE,
            purpose=Generation.Purpose.CHAT,
            steps_done=steps,
            started_at=timezone.now(),
            finished_at=timezone.now(),
            compute_ms=compute_ms,
        )


def started(battle: Battle, at: Any) -> None:
    """Both sides running since ``at``, 6 of their 8 steps written."""
    Generation.objects.filter(
        pk__in=[battle.generation_left_id, battle.generation_right_id]
    ).update(status=Generation.Status.RUNNING, started_at=at, steps_done=6)


def test_past_the_floor_the_panel_polls_at_the_step_the_slower_side_can_first_be_done(
    models: list[Any], client: Client, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    battle, clock = under_a_floor(client, settings, monkeypatch)
    assert battle.reveal_at is not None
    # Both started at submit; left's model takes 12.2 s at best (2.2 s past the 10 s floor),
    # right's 2 s: the battle can be shown 3 s past the floor at the earliest.
    ran(battle.model_left, compute_ms=12_200)
    ran(battle.model_left, compute_ms=20_000)  # slower runs do not move the earliest
    ran(battle.model_right, compute_ms=2_000)
    started(battle, battle.reveal_at - timedelta(seconds=10))
    url = f"/battles/{battle.public_id}/panel"
    clock[0] = battle.reveal_at + timedelta(milliseconds=100)
    first = client.get(url)
    assert poll_trigger(first.content) == "load delay:3000ms, arena-retry delay:2s"
    assert b'data-poll-ms="3000"' in first.content
    # The same step, asked again before it (a second tab, a retry): nothing changed, a 304.
    clock[0] += timedelta(milliseconds=1500)
    Generation.objects.filter(pk=battle.generation_left_id).update(steps_done=7)  # progress
    again = client.get(url, headers={"If-None-Match": first["ETag"]})
    assert again.status_code == 304 and again["ETag"] == first["ETag"]
    # At that step and still running (slower than ever before): the next step, a fresh answer.
    clock[0] = battle.reveal_at + timedelta(milliseconds=3100)
    late = client.get(url, headers={"If-None-Match": first["ETag"]})
    assert late.status_code == 200 and late["ETag"] != first["ETag"]
    assert poll_trigger(late.content) == "load delay:1000ms, arena-retry delay:2s"


@pytest.mark.parametrize("slow_ms", [10_500, 13_000, 30_000, 60_000])
def test_the_next_poll_is_bounded_and_on_the_reveal_grid(
    models: list[Any],
    client: Client,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
    slow_ms: int,
) -> None:
    battle, clock = under_a_floor(client, settings, monkeypatch)
    assert battle.reveal_at is not None
    ran(battle.model_left, compute_ms=slow_ms)
    ran(battle.model_right, compute_ms=1_000)
    started(battle, battle.reveal_at - timedelta(seconds=10))
    for past_ms in (0, 150, 950, 999, 2_000, 7_777):
        clock[0] = battle.reveal_at + timedelta(milliseconds=past_ms)
        polled = polling.battle_next_poll(Battle.objects.get(pk=battle.pk), now=clock[0])
        assert polling.POLL_MIN_MS <= polled.in_ms <= polling.POLL_MAX_MS, (past_ms, polled)
        # It lands 100 ms past a reveal step (the only moments the battle can be shown at).
        assert (past_ms + polled.in_ms - polling.POLL_MARGIN_MS) % 1000 == 0, (past_ms, polled)
        assert polled.step == (past_ms + polled.in_ms) // 1000
        # Never before the step where the slower side can first be done, unless bounded.
        first_ms = math.ceil((slow_ms - 10_000) / 1000) * 1000
        assert past_ms + polled.in_ms >= min(first_ms, past_ms + polling.POLL_MAX_MS - 1000)


def refresh(page: Any) -> bytes:
    found = re.search(rb'<meta http-equiv="refresh" content="(\d+)">', page.content)
    assert found, page.content
    return found[1]


def swap_sides(battle: Battle) -> None:
    Battle.objects.filter(pk=battle.pk).update(
        generation_left=battle.generation_right_id,
        generation_right=battle.generation_left_id,
        model_left=battle.model_right_id,
        model_right=battle.model_left_id,
    )


@pytest.mark.parametrize("kind", ["running", "queued"])
def test_the_next_poll_is_the_same_whichever_side_is_slow(
    models: list[Any],
    client: Client,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
) -> None:
    battle, clock = under_a_floor(client, settings, monkeypatch)
    assert battle.reveal_at is not None
    ran(battle.model_left, compute_ms=13_400)
    ran(battle.model_right, compute_ms=800)
    if kind == "running":
        started(battle, battle.reveal_at - timedelta(seconds=10))
    url = f"/battles/{battle.public_id}/panel"
    page_url = f"/battles/{battle.public_id}"
    answers = []
    for _ in range(2):
        clock[0] = battle.reveal_at + timedelta(milliseconds=100)
        panel, page = client.get(url), client.get(page_url)
        # (The whole page carries a fresh CSP nonce each time: its poll and reload only.)
        answers.append((panel.content, panel["ETag"], poll_trigger(page.content), refresh(page)))
        swap_sides(battle)
    assert answers[0] == answers[1]
    assert b"load delay:" in answers[0][0]
    # Not a constant: the slower side's model sets it.
    assert poll_trigger(answers[0][0]) != "load delay:1000ms, arena-retry delay:2s"


def test_a_ready_battle_past_the_floor_is_polled_when_it_is_shown(
    models: list[Any],
    client: Client,
    finish_battle: Any,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    battle, clock = under_a_floor(client, settings, monkeypatch)
    assert battle.reveal_at is not None
    clock[0] = battle.reveal_at + timedelta(milliseconds=1300)
    finish_battle(battle)  # ready 1.3 s past the floor: shown 2 s past it
    url = f"/battles/{battle.public_id}/panel"
    answer = client.get(url)
    assert b"/images/" not in answer.content
    assert poll_trigger(answer.content) == "load delay:800ms, arena-retry delay:2s"
    clock[0] = battle.reveal_at + timedelta(milliseconds=2000)
    assert b"/images/" in client.get(url, headers={"If-None-Match": answer["ETag"]}).content


def test_past_the_floor_the_page_without_javascript_reloads_when_the_panel_would_poll(
    models: list[Any], client: Client, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    battle, clock = under_a_floor(client, settings, monkeypatch)
    assert battle.reveal_at is not None
    ran(battle.model_left, compute_ms=13_000)
    ran(battle.model_right, compute_ms=1_000)
    started(battle, battle.reveal_at - timedelta(seconds=10))
    clock[0] = battle.reveal_at + timedelta(milliseconds=100)
    page = client.get(f"/battles/{battle.public_id}")
    assert poll_trigger(page.content) == "load delay:3000ms, arena-retry delay:2s"
    assert b'<meta http-equiv="refresh" content="3">' in page.content
