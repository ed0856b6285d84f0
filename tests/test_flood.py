"""The flood simulation: honest voters drawn from a board, and a flood that opens a new session
for each vote from one address, on one curated prompt, voting for "our" model whenever it plays.
Through the real web server (live_server), Redis and a real Celery worker, which runs the
periodic integrity scan. At most 1% of honest voters may be flagged, and at least 90% of the
flood's votes must stop counting by the next refresh.

The request limits are relaxed here so the detection is measured on its own; with the default
limits the flood's sessions are refused long before (``ARENA_LIMIT_SESSIONS``).
"""

from __future__ import annotations

import http.cookiejar
import json
import random
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.db import connection

from arena import services
from arena.integrity import win_probability
from arena.models import Battle, Prompt, Vote, Voter
from leaderboard import services as leaderboard_services
from leaderboard.models import Snapshot

pytestmark = pytest.mark.worker

HONEST_VOTERS = 100
CAMPUS_VOTERS = 20  # of the honest voters, these share one address
FLOOD_VOTES = 100
OURS = "tiny-inhouse"
# The true board the honest voters draw from: "ours" is the weakest.
TRUE_RATINGS = {
    "tiny-inhouse": 940.0,
    "tiny-baseline-a": 1000.0,
    "tiny-baseline-b": 1040.0,
    "tiny-sdxl": 1080.0,
    "tiny-pixart": 1120.0,
}
PROMPTS = ["a red fox in the snow", "a lighthouse at dusk", "a bowl of ramen"]


class Browser:
    """One session: a cookie jar, a CSRF token, and an address it claims through the proxy."""

    def __init__(self, base: str, address: str) -> None:
        self.base, self.address = base, address
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))
        self.token = ""
        self.token = self.call("GET", "/api/v1/session")[1]["csrf_token"]

    def call(self, method: str, path: str, data: Any = None) -> tuple[int, Any]:
        request = urllib.request.Request(  # noqa: S310 - the test server's http:// URL
            self.base + path,
            data=json.dumps(data).encode() if data is not None else None,
            method=method,
            headers={
                "Content-Type": "application/json",
                "X-CSRFToken": self.token,
                "Referer": self.base + "/",
                "X-Forwarded-For": self.address,
            },
        )
        try:
            with self.opener.open(request, timeout=60) as response:  # noqa: S310
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"{}")

    def battle(self, prompt: str) -> Battle:
        status, data = self.call("POST", "/api/v1/battles", {"prompt": prompt})
        assert status == 201, data
        deadline = time.monotonic() + 60
        while data["status"] == "generating" and time.monotonic() < deadline:
            time.sleep(0.05)
            data = self.call("GET", f"/api/v1/battles/{data['id']}")[1]
        assert data["status"] == "ready", data
        return Battle.objects.select_related("model_left", "model_right").get(public_id=data["id"])

    def vote(self, battle: Battle, choice: str) -> None:
        status, data = self.call(
            "POST", f"/api/v1/battles/{battle.public_id}/vote", {"choice": choice}
        )
        assert status == 200, data


def honest_choice(battle: Battle, rng: random.Random) -> str:
    if rng.random() < 0.1:
        return "tie"
    p_left = win_probability(
        TRUE_RATINGS[battle.model_left.key], TRUE_RATINGS[battle.model_right.key]
    )
    return "left" if rng.random() < p_left else "right"


def honest_voter(base: str, index: int) -> int:
    rng = random.Random(index)
    address = "10.20.0.1" if index < CAMPUS_VOTERS else f"10.30.{index // 250}.{index % 250 + 1}"
    try:
        browser = Browser(base, address)
        for _ in range(rng.randint(3, 8)):
            battle = browser.battle(rng.choice(PROMPTS))
            browser.vote(battle, honest_choice(battle, rng))
        voter = Voter.objects.get(session=services.identity_hash(_session_key(browser)))
        return voter.pk
    finally:
        connection.close()  # this pool thread's own connection, or the test database stays busy


def _session_key(browser: Browser) -> str:
    return next(str(c.value) for c in browser.jar if c.name == "sessionid")


def flood(base: str) -> list[int]:
    """New session per vote, one address, one prompt; vote only where ours plays."""
    planted: list[int] = []
    while len(planted) < FLOOD_VOTES:
        browser = Browser(base, "203.0.113.66")
        battle = browser.battle(PROMPTS[0])
        if OURS not in (battle.model_left.key, battle.model_right.key):
            continue  # abandoned: a flood only spends votes where they help
        browser.vote(battle, "left" if battle.model_left.key == OURS else "right")
        planted.append(Vote.objects.get(battle=battle).pk)
    return planted


def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_flood_stops_counting_and_honest_voters_stay_counted(
    live_server: Any, worker: Any, models: list[Any], settings: Any, test_queue: str
) -> None:
    settings.ARENA_TRUSTED_PROXIES = ["127.0.0.1"]
    for name in ("SESSIONS", "BATTLES", "VOTES", "CHAT"):
        setattr(settings, f"ARENA_LIMIT_{name}", "")
    settings.ARENA_POOL_SIZE = 0  # every battle makes its own two single-use images
    for text in PROMPTS:
        Prompt.objects.create(text=text, category="other")
    base = live_server.url

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=4) as pool:
        honest = list(pool.map(lambda i: honest_voter(base, i), range(HONEST_VOTERS)))
    honest_votes = Vote.objects.filter(voter_record__in=honest).count()
    leaderboard_services.refresh_all()  # the board the scan tests preferences against
    planted = flood(base)
    planting_s = time.monotonic() - started

    from arena.tasks import scan_votes

    scan_votes.apply_async(queue=test_queue)  # the periodic task, run by the worker
    wait_for(
        lambda: Vote.objects.filter(excluded_by="integrity scan").exists(),
        120,
        "the integrity scan",
    )
    leaderboard_services.refresh_all()  # the next refresh

    flagged_honest = Voter.objects.filter(pk__in=honest, flagged=True).count()
    flood_counted = Vote.objects.filter(pk__in=planted, excluded=False).count()
    board = Snapshot.objects.latest_for("")
    print(
        f"\nflood simulation: {HONEST_VOTERS} honest voters, {honest_votes} honest votes; "
        f"{len(planted)} flood votes planted, {flood_counted} still counted "
        f"({1 - flood_counted / len(planted):.1%} stopped); honest voters flagged: "
        f"{flagged_honest} ({flagged_honest / HONEST_VOTERS:.1%}); board votes used "
        f"{board.votes_used if board else None}; {planting_s:.0f} s of voting"
    )
    assert flagged_honest <= 0.01 * HONEST_VOTERS
    assert flood_counted <= 0.10 * len(planted)
    assert board is not None and board.votes_used <= honest_votes + flood_counted
    flagged = Voter.objects.filter(flagged=True).exclude(pk__in=honest).first()
    assert flagged is not None and "address" in flagged.evidence
    assert "preference" in flagged.evidence["address"]
