"""Every vote is stored; only votes in good standing count. The lean vote path."""

from __future__ import annotations

import base64
import json
import threading
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from arena import challenge, services
from arena.models import Battle, Vote, Voter
from leaderboard import services as leaderboard_services
from leaderboard.models import PairCount, StyleCount

HTMX = {"HX-Request": "true"}


def counted_total() -> int:
    return sum(
        r.wins_a + r.wins_b + r.ties + r.both_bad for r in PairCount.objects.filter(anonymous=True)
    )


def ready_battle(client: Client, finish_battle: Any, prompt: str = "a fox") -> Battle:
    assert client.post("/battles", {"prompt": prompt}).status_code == 302
    battle = Battle.objects.order_by("-pk").first()
    assert battle is not None
    finish_battle(battle)
    return battle


@pytest.mark.django_db
def test_an_implausibly_fast_vote_is_stored_but_not_counted(
    client: Client, models: list[Any], finish_battle: Any, settings: Any
) -> None:
    settings.ARENA_MIN_MS_TO_VOTE = 60_000
    battle = ready_battle(client, finish_battle)
    assert client.post(f"/battles/{battle.public_id}/vote", {"choice": "left"}).status_code == 302
    vote = Vote.objects.get()
    assert vote.excluded and vote.standing == Vote.Standing.TOO_FAST
    assert vote.voter_record is not None and vote.address
    assert counted_total() == 0
    leaderboard_services.rebuild_counts()
    assert counted_total() == 0, "rebuild_counts counts counted votes only"


@pytest.mark.django_db
def test_a_slow_enough_vote_counts(
    client: Client, models: list[Any], finish_battle: Any, settings: Any
) -> None:
    settings.ARENA_MIN_MS_TO_VOTE = 1000
    battle = ready_battle(client, finish_battle)
    Battle.objects.filter(pk=battle.pk).update(ready_at=timezone.now() - timedelta(seconds=5))
    client.post(f"/battles/{battle.public_id}/vote", {"choice": "left"})
    vote = Vote.objects.get()
    assert not vote.excluded and vote.standing == Vote.Standing.COUNTED and vote.ms_to_vote
    assert vote.ms_to_vote >= 5000 and counted_total() == 1


@pytest.mark.django_db
def test_a_flagged_voters_votes_do_not_count(
    client: Client, models: list[Any], finish_battle: Any
) -> None:
    battle = ready_battle(client, finish_battle)
    Voter.objects.update(flagged=True)
    client.post(f"/battles/{battle.public_id}/vote", {"choice": "right"})
    assert Vote.objects.get().standing == Vote.Standing.VOTER_FLAGGED and counted_total() == 0


@pytest.mark.django_db
def test_votes_over_the_daily_cap_are_stored_but_not_counted(
    client: Client, models: list[Any], finish_battle: Any, settings: Any
) -> None:
    settings.ARENA_DAILY_CAP_VOTER = 2
    battles = [ready_battle(client, finish_battle, f"a fox {i}") for i in range(3)]
    for battle in battles:
        client.post(f"/battles/{battle.public_id}/vote", {"choice": "tie"})
    standings = list(Vote.objects.order_by("pk").values_list("standing", flat=True))
    assert standings == ["", "", Vote.Standing.OVER_CAP_VOTER]
    assert counted_total() == 2


@pytest.mark.django_db
def test_the_address_cap_holds_across_sessions(
    models: list[Any], finish_battle: Any, settings: Any
) -> None:
    settings.ARENA_DAILY_CAP_ADDRESS = 1
    for i in range(2):
        client = Client()
        battle = ready_battle(client, finish_battle, f"a fox {i}")
        client.post(f"/battles/{battle.public_id}/vote", {"choice": "tie"})
    standings = list(Vote.objects.order_by("pk").values_list("standing", flat=True))
    assert standings == ["", Vote.Standing.OVER_CAP_ADDRESS]


@pytest.mark.django_db
def test_a_second_vote_is_refused_and_the_first_stands(
    client: Client, models: list[Any], finish_battle: Any
) -> None:
    battle = ready_battle(client, finish_battle)
    client.post(f"/battles/{battle.public_id}/vote", {"choice": "left"})
    again = client.post(f"/api/v1/battles/{battle.public_id}/vote", {"choice": "right"})
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_voted"
    assert Vote.objects.get().choice == "left" and counted_total() == 1


@pytest.mark.django_db(transaction=True)
def test_the_vote_path_takes_at_most_eight_queries(
    client: Client, models: list[Any], finish_battle: Any
) -> None:
    battle = ready_battle(client, finish_battle)
    with CaptureQueriesContext(connection) as queries:
        response = client.post(
            f"/battles/{battle.public_id}/vote", {"choice": "left"}, headers=HTMX
        )
    assert (
        response.status_code == 200 and battle.model_left.display_name in response.content.decode()
    )
    assert Vote.objects.get().standing == Vote.Standing.COUNTED
    assert counted_total() == 1 and StyleCount.objects.get().total == 1
    statements = [q["sql"] for q in queries.captured_queries]
    listing = "\n".join(s[:120] for s in statements)
    assert not any('FROM "arena_vote"' in s for s in statements), (
        "the answer is built from what the service holds, without reading the vote back"
    )
    if connection.vendor == "postgresql":
        # The battle with its voter and the visitor's session row, and one statement that
        # claims the battle, stores the vote and adds it to the pair's and the style row's
        # counts.
        assert len(statements) == 2, listing
        assert '"django_session"' in statements[0]
        (write,) = [s for s in statements if s.startswith("WITH")]
        for table in (
            "arena_battle",
            "arena_vote",
            "leaderboard_paircount",
            "leaderboard_stylecount",
        ):
            assert f'"{table}"' in write
    else:
        # Battle with its voter and session, BEGIN, the claim, the vote's INSERT, the pair's
        # and the style row's upserts, COMMIT.
        assert len(statements) <= 8, listing


def _ready(finish_battle: Any, prompt: str) -> Battle:
    battle = services.create_battle(prompt_text=prompt, owner="me")
    finish_battle(battle)
    Battle.objects.filter(pk=battle.pk).update(ready_at=timezone.now() - timedelta(seconds=5))
    battle.refresh_from_db()
    return battle


@pytest.mark.django_db
def test_a_vote_that_loses_its_battle_to_another_gives_its_daily_cap_back(
    models: list[Any], finish_battle: Any, settings: Any
) -> None:
    settings.ARENA_DAILY_CAP_VOTER = 1
    voter = Voter.objects.create(session="s" * 64, address="a" * 64)
    first, second = _ready(finish_battle, "a fox"), _ready(finish_battle, "a cat")
    stale = Battle.objects.get(pk=first.pk)  # read before the other vote, as a racing request
    services.cast_vote(battle=first, choice="left", voter="other")
    with pytest.raises(services.VoteRejected) as refused:
        services.cast_vote(battle=stale, choice="right", voter="me", voter_record=voter)
    assert refused.value.code == "already_voted"
    assert list(Vote.objects.values_list("voter", "choice")) == [("other", "left")]
    # The lost vote took nothing from the cap: the voter's next vote still counts.
    vote = services.cast_vote(battle=second, choice="tie", voter="me", voter_record=voter)
    assert vote.standing == Vote.Standing.COUNTED and counted_total() == 2


@pytest.mark.django_db(transaction=True)
def test_votes_racing_for_one_battle_store_and_count_exactly_one(
    models: list[Any], finish_battle: Any, settings: Any
) -> None:
    settings.ARENA_DAILY_CAP_VOTER = 1
    battle = _ready(finish_battle, "a fox")
    racers = 6
    voters = [Voter.objects.create(session=f"{i}" * 64, address="a" * 64) for i in range(racers)]
    start = threading.Barrier(racers)
    outcomes: list[str] = []

    def vote(i: int) -> None:
        mine = Battle.objects.get(pk=battle.pk)
        start.wait()
        try:
            services.cast_vote(battle=mine, choice="left", voter=f"v{i}", voter_record=voters[i])
            outcomes.append("stored")
        except services.VoteRejected as error:
            outcomes.append(error.code)
        finally:
            connection.close()

    threads = [threading.Thread(target=vote, args=(i,)) for i in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["already_voted"] * (racers - 1) + ["stored"]
    assert Vote.objects.count() == 1 and counted_total() == 1
    assert StyleCount.objects.get().total == 1
    # Each loser's cap was given back: each of them can still cast one vote that counts.
    (winner,) = Vote.objects.values_list("voter_record", flat=True)
    loser = next(v for v in voters if v.pk != winner)
    next_vote = services.cast_vote(
        battle=_ready(finish_battle, "a cat"), choice="tie", voter="x", voter_record=loser
    )
    assert next_vote.standing == Vote.Standing.COUNTED


# --- The proof-of-work check -----------------------------------------------------------------


@pytest.fixture
def pow_on(settings: Any) -> None:
    settings.ARENA_CHALLENGE_MAX_NUMBER = 2000


@pytest.mark.django_db
def test_a_new_session_solves_the_challenge_before_its_first_battle(
    client: Client, models: list[Any], pow_on: None
) -> None:
    refused = client.post("/api/v1/battles", {"prompt": "a fox"})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "challenge_required"
    page = client.post("/battles", {"prompt": "a fox"})
    assert page.status_code == 403 and "JavaScript" in page.content.decode()
    puzzle = client.get("/api/v1/challenge").json()
    assert puzzle["required"] and puzzle["maxNumber"] == 2000
    answer = challenge.solve(puzzle)
    assert client.post("/api/v1/battles", {"prompt": "a fox", "altcha": answer}).status_code == 201
    # Solved once per session.
    assert client.post("/api/v1/battles", {"prompt": "a cat"}).status_code == 201
    assert client.get("/api/v1/challenge").json() == {"required": False}
    assert Voter.objects.get().verified_at is not None


@pytest.mark.django_db
def test_a_replayed_challenge_answer_is_refused(models: list[Any], pow_on: None) -> None:
    first = Client()
    answer = challenge.solve(first.get("/api/v1/challenge").json())
    assert first.post("/api/v1/battles", {"prompt": "a fox", "altcha": answer}).status_code == 201
    replay = Client().post("/api/v1/battles", {"prompt": "a fox", "altcha": answer})
    assert replay.status_code == 400 and "already used" in replay.json()["error"]["message"]


@pytest.mark.django_db
def test_a_forged_challenge_answer_is_refused(
    client: Client, models: list[Any], pow_on: None
) -> None:
    puzzle = client.get("/api/v1/challenge").json()
    payload = json.loads(base64.b64decode(challenge.solve(puzzle)))
    payload["number"] += 1  # the wrong number
    wrong = base64.b64encode(json.dumps(payload).encode()).decode()
    forged_sig = dict(payload, number=payload["number"] - 1, signature="0" * 64)
    resigned = base64.b64encode(json.dumps(forged_sig).encode()).decode()
    for bad in (wrong, resigned, "not base64 at all", "x" * 5000):
        answer = client.post("/api/v1/battles", {"prompt": "a fox", "altcha": bad})
        # The oversized one is refused by the request schema itself.
        assert answer.status_code == 400
        assert answer.json()["error"]["code"] in {"bad_challenge", "bad_altcha"}
    assert not Battle.objects.exists()


@pytest.mark.django_db
def test_an_expired_challenge_answer_is_refused(
    client: Client, models: list[Any], pow_on: None, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    answer = challenge.solve(client.get("/api/v1/challenge").json())
    later = time.time() + settings.ARENA_CHALLENGE_TTL_S + 5
    monkeypatch.setattr(time, "time", lambda: later)
    expired = client.post("/api/v1/battles", {"prompt": "a fox", "altcha": answer})
    assert expired.status_code == 400 and "expired" in expired.json()["error"]["message"]


def test_the_default_challenge_costs_a_person_little(settings: Any) -> None:
    """About max_number / 2 hashes per new session: measured here, not assumed."""
    import time

    from arena import settings as defaults

    settings.ARENA_CHALLENGE_MAX_NUMBER = defaults.ARENA_CHALLENGE_MAX_NUMBER
    spent = []
    for _ in range(5):
        puzzle = challenge.new_challenge()
        start = time.perf_counter()
        challenge.solve(puzzle)
        spent.append(time.perf_counter() - start)
    mean = sum(spent) / len(spent)
    assert settings.ARENA_CHALLENGE_MAX_NUMBER == 100_000
    assert mean < 2.0, f"a person barely notices it ({mean:.2f} s in Python)"


# --- Admin login lockout ---------------------------------------------------------------------


@pytest.mark.django_db
def test_the_admin_login_locks_out_after_repeated_failures(settings: Any) -> None:
    from django.contrib.auth.models import User

    User.objects.create_superuser("boss", password="right-password-123")
    client = Client()
    login = f"/{settings.ADMIN_URL}login/"
    for _ in range(settings.AXES_FAILURE_LIMIT):
        client.post(login, {"username": "boss", "password": "wrong"})
    locked = client.post(login, {"username": "boss", "password": "right-password-123"})
    assert locked.status_code == 429
    assert "_auth_user_id" not in client.session


# --- Sign-in ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_with_sign_in_required_only_signed_in_people_vote(
    client: Client, models: list[Any], finish_battle: Any, settings: Any
) -> None:
    from django.contrib.auth.models import User

    settings.ARENA_REQUIRE_SIGN_IN = True
    battle = ready_battle(client, finish_battle)
    refused = client.post(f"/api/v1/battles/{battle.public_id}/vote", {"choice": "left"})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "sign_in_required"
    page = client.post(f"/battles/{battle.public_id}/vote", {"choice": "left"}, headers=HTMX)
    assert page.status_code == 403 and "Sign in to vote" in page.content.decode()
    user = User.objects.create_user("alice")
    client.force_login(user)  # a new session: the battle above stays with the old one
    battle = ready_battle(client, finish_battle, "a cat")
    assert client.post(f"/battles/{battle.public_id}/vote", {"choice": "left"}).status_code == 302
    vote = Vote.objects.get()
    assert vote.voter_record is not None and vote.voter_record.user_id == user.pk


def test_sign_in_settings_start_with_allauth_and_refuse_half_configurations() -> None:
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    def check(**env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "manage.py", "check"],
            cwd=ROOT,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=120,
        )

    on = check(ARENA_ACCOUNTS="1", ARENA_SOCIAL_PROVIDERS="github", ARENA_REQUIRE_SIGN_IN="1")
    assert on.returncode == 0, on.stderr
    half = check(ARENA_REQUIRE_SIGN_IN="1")
    assert half.returncode != 0 and "need ARENA_ACCOUNTS=1" in half.stderr


@pytest.mark.django_db
def test_a_vote_takes_its_request_limit_and_daily_caps_in_one_redis_round_trip(
    client: Client,
    models: list[Any],
    finish_battle: Any,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from arena import limits

    redis = limits.redis_client()
    if redis is None:
        pytest.skip("Redis is the deployed cache; the laptop's local cache has no round trips")
    settings.ARENA_DAILY_CAP_VOTER = 1
    battles = [ready_battle(client, finish_battle, f"a fox {i}") for i in range(2)]
    sent: list[str] = []
    real = type(redis).execute_command

    def counting(self: Any, *args: Any, **options: Any) -> Any:
        sent.append(str(args[0]))
        return real(self, *args, **options)

    monkeypatch.setattr(type(redis), "execute_command", counting)
    for battle in battles:
        sent.clear()
        client.post(f"/api/v1/battles/{battle.public_id}/vote", {"choice": "left"})
        assert sent == ["EVALSHA"], sent
    # The caps were counted in that round trip: the second vote is over the voter's cap.
    standings = list(Vote.objects.order_by("pk").values_list("standing", flat=True))
    assert standings == ["", Vote.Standing.OVER_CAP_VOTER]
    # A refused vote counts against the limit too, still in one round trip, and takes no cap.
    sent.clear()
    again = client.post(f"/api/v1/battles/{battles[0].public_id}/vote", {"choice": "left"})
    assert again.status_code == 409 and sent == ["EVALSHA"]
