"""Honest waiting: a generating battle says why it waits, with one figure for both sides, and a
refused request always shows its message."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from arena import limits, polling
from arena.models import Battle
from generation import jobs
from generation.models import Generation, WorkerHeartbeat

pytestmark = pytest.mark.django_db


def label(html: str) -> str:
    found = re.search(r'id="progress-label">(.*?)</span>', html, re.S)
    assert found, html
    return found[1]


def start(client: Client) -> Battle:
    assert client.post("/battles", {"prompt": "a lighthouse at dawn"}).status_code == 302
    return Battle.objects.latest("created_at")


def test_while_no_worker_has_the_models_loaded_the_page_says_so(
    client: Client, models: list[Any]
) -> None:
    battle = start(client)
    text = label(client.get(f"/battles/{battle.public_id}").content.decode())
    assert "The models are still loading" in text and "About" not in text
    for m in models:
        assert m.display_name not in text and m.key not in text


def test_a_queue_shows_one_position_and_estimate_for_both_sides(
    client: Client, models: list[Any], test_queue: str
) -> None:
    WorkerHeartbeat.objects.create(
        node="w1", queues=[test_queue], children=1, warm_children=1, seen_at=timezone.now()
    )
    for seed, purpose in enumerate(["battle"] * 3 + ["chat", "pool"]):
        jobs.create_generation(
            model=models[seed % 2], prompt=f"someone else's {seed}", seed=seed, purpose=purpose
        )
    battle = start(client)
    html = client.get(f"/battles/{battle.public_id}/panel").content.decode()
    # Three battle jobs are ahead of the left side; the right side also waits for the left
    # (one queue, one worker): the figure is the larger, 4. Queued chat and pool jobs go after.
    # Each job of a model without finished images counts UNKNOWN_COMPUTE_S = 10 s: 4 x 10 + 10.
    assert label(html) == "4 images ahead of this battle in the queue. About 50 seconds to go."

    # The queue moves: the figure with it.
    Generation.objects.filter(prompt__startswith="someone else's").update(
        status=Generation.Status.DONE
    )
    html = client.get(f"/battles/{battle.public_id}/panel").content.decode()
    assert label(html) == "1 image ahead of this battle in the queue. About 20 seconds to go."


def test_a_waiting_battles_poll_tag_moves_with_time_even_without_changes(
    client: Client, models: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    battle = start(client)
    url = f"/battles/{battle.public_id}/panel"
    interval = [7]
    monkeypatch.setattr(polling, "wait_bucket", lambda: interval[0])
    tag = client.get(url)["ETag"]
    api = f"/api/v1/battles/{battle.public_id}"
    api_tag = client.get(api)["ETag"]
    assert client.get(url, HTTP_IF_NONE_MATCH=tag).status_code == 304
    interval[0] += 1  # WAIT_REFRESH_S later the queue may have moved: a fresh answer
    assert client.get(url, HTTP_IF_NONE_MATCH=tag).status_code == 200
    assert client.get(api, HTTP_IF_NONE_MATCH=api_tag).status_code == 304, "no wait in the API"


def test_under_the_reveal_floor_the_wait_and_its_refresh_say_nothing_about_the_pair(
    client: Client, models: list[Any], test_queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The queue figure depends on the pair's queues and speeds: before the floor it is not
    # shown, and the panel's tag does not move with the wait refresh either.
    WorkerHeartbeat.objects.create(
        node="w1", queues=[test_queue], children=1, warm_children=1, seen_at=timezone.now()
    )
    for seed in range(3):
        jobs.create_generation(model=models[0], prompt=f"ahead {seed}", seed=seed, purpose="battle")
    battle = start(client)
    Battle.objects.filter(pk=battle.pk).update(reveal_at=timezone.now() + timedelta(minutes=5))
    url = f"/battles/{battle.public_id}/panel"
    html = client.get(url).content.decode()
    assert "ahead of this battle" not in html and "About" not in label(html)
    interval = [7]
    monkeypatch.setattr(polling, "wait_bucket", lambda: interval[0])
    tag = client.get(url)["ETag"]
    interval[0] += 1
    assert polling.status_etag(kind="panel", battle_id=battle.public_id, owner=battle.owner) == tag

    # Past the floor the battle is late, which the voter sees anyway: the figure comes back.
    Battle.objects.filter(pk=battle.pk).update(reveal_at=timezone.now() - timedelta(seconds=1))
    assert "ahead of this battle" in client.get(url).content.decode()


def test_a_refused_request_says_when_to_come_back_in_words() -> None:
    assert limits.RateLimited(1, "votes").message.endswith("Try again in 1 second.")
    assert limits.RateLimited(5, "votes").message.endswith("Try again in 5 seconds.")


def test_a_429_without_javascript_is_a_readable_page_with_its_message(
    client: Client, models: list[Any], settings: Any
) -> None:
    settings.ARENA_LIMIT_BATTLES = "session=1/86400"
    start(client)
    refused = client.post("/battles", {"prompt": "a second one"})
    assert refused.status_code == 429 and refused["Content-Type"].startswith("text/html")
    page = refused.content.decode()
    assert "<!doctype html>" in page and 'role="alert"' in page
    assert "You are starting battles faster than this arena allows" in page
