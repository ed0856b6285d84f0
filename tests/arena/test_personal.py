"""Your votes, the personal board and share links, through Django's test client (no worker)."""

from __future__ import annotations

import random
import re
from typing import Any

import pytest
from django.conf import settings
from django.test import Client

from arena import personal, services
from arena.models import Battle

from .test_services import finish_side

pytestmark = pytest.mark.django_db


def session_of(client: Client) -> str:
    """Start a battle through the page, so the client has a session; return its owner hash."""
    client.post("/battles", {"prompt": "a lighthouse at dawn"})
    key = client.session.session_key
    assert key is not None
    return services.identity_hash(key)


def voted_battle(owner: str, choice: str = "left", prompt: str = "a red fox") -> Battle:
    battle = services.create_battle(prompt_text=prompt, owner=owner)
    finish_side(battle.generation_left)
    finish_side(battle.generation_right)
    battle.refresh_from_db()
    if choice:
        services.cast_vote(battle=battle, choice=choice, voter=owner)
    return battle


def images_of(battle: Battle) -> tuple[str, str]:
    return (
        str(battle.generation_left.image.name).rsplit("/", 1)[-1],
        str(battle.generation_right.image.name).rsplit("/", 1)[-1],
    )


def test_your_votes_lists_each_revealed_battle_with_both_images_names_and_the_vote(
    client: Client, models: list[Any]
) -> None:
    owner = session_of(client)
    battle = voted_battle(owner, "right", prompt="a green teapot on a shelf")
    html = client.get("/votes/").content.decode()
    left, right = images_of(battle)
    assert f"/images/{left}" in html and f"/images/{right}" in html
    assert battle.model_left.display_name in html and battle.model_right.display_name in html
    assert "a green teapot on a shelf" in html and "B is better" in html


def test_your_votes_leaves_out_unvoted_battles_and_other_sessions_battles(
    client: Client, models: list[Any]
) -> None:
    owner = session_of(client)
    unvoted = voted_battle(owner, choice="", prompt="an unvoted castle")
    theirs = voted_battle("someone-else", prompt="somebody else's boat")
    html = client.get("/votes/").content.decode()
    for battle in (unvoted, theirs):
        for name in images_of(battle):
            assert name not in html
    assert "an unvoted castle" not in html and "somebody else's boat" not in html
    assert 'id="no-votes"' in html


def test_your_votes_without_a_session_is_empty_and_makes_no_session(client: Client) -> None:
    response = client.get("/votes/")
    assert response.status_code == 200 and 'id="no-votes"' in response.content.decode()
    assert settings.SESSION_COOKIE_NAME not in client.cookies


@pytest.mark.parametrize("page", ["0", "2", "x", "-1", "9" * 30, "²", "9" * 5000])
def test_a_page_of_your_votes_that_does_not_exist_is_a_404(client: Client, page: str) -> None:
    assert client.get("/votes/", {"page": page}).status_code == 404


def test_below_thirty_votes_the_personal_board_says_how_many_more_are_needed(
    client: Client, models: list[Any]
) -> None:
    owner = session_of(client)
    for _ in range(4):
        voted_battle(owner)
    for path in ("/votes/", "/leaderboard/"):
        html = client.get(path).content.decode()
        assert 'id="personal-board-needed"' in html, path
        assert "4 so far, 26 more needed" in html, path
        assert 'id="personal-leaderboard"' not in html


def test_from_thirty_votes_the_personal_board_ranks_the_voters_own_preferences(
    client: Client, models: list[Any]
) -> None:
    """The voter always prefers the model with the larger primary key: their board puts the
    models in that order, whatever the public board says."""
    owner = session_of(client)
    rng = random.Random(3)
    for _ in range(personal.PERSONAL_BOARD_MIN_VOTES + 10):
        battle = voted_battle(owner, choice="")
        better = "left" if battle.model_left_id > battle.model_right_id else "right"
        choice = better if rng.random() < 0.8 else rng.choice(["tie", "left", "right"])
        services.cast_vote(battle=battle, choice=choice, voter=owner)
    board = personal.personal_board(personal.revealed_battles(owner=owner, user_id=None))
    assert board.needed == 0 and board.votes == 40
    rated = [(r, r.rating) for r in board.rows if r.rating is not None]
    assert len(rated) >= 3
    assert [r.rank for r in board.rows] == sorted(r.rank for r in board.rows)
    best = max(rated, key=lambda pair: pair[1])[0]
    worst = min(rated, key=lambda pair: pair[1])[0]
    assert best.model.pk > worst.model.pk
    html = client.get("/leaderboard/").content.decode()
    assert 'id="personal-leaderboard"' in html and 'id="personal-board-note"' in html
    assert "Yours alone" in html and "unweighted" in html


def test_the_personal_board_leaves_other_sessions_votes_out(models: list[Any]) -> None:
    for _ in range(personal.PERSONAL_BOARD_MIN_VOTES):
        voted_battle("someone-else")
    board = personal.personal_board(personal.revealed_battles(owner="me", user_id=None))
    assert board.votes == 0 and board.needed == personal.PERSONAL_BOARD_MIN_VOTES


def test_a_shared_battle_is_public_after_the_vote_only_when_asked(
    client: Client, models: list[Any]
) -> None:
    owner = session_of(client)
    battle = voted_battle(owner, "tie", prompt="a paper boat in the rain")
    assert battle.share_token is None  # nothing public until asked
    page = client.get(f"/battles/{battle.public_id}").content.decode()
    assert 'id="share-button"' in page
    response = client.post(f"/battles/{battle.public_id}/share")
    assert response.status_code == 200
    battle.refresh_from_db()
    token = battle.share_token
    assert token and len(token) >= 32
    link = re.search(r'id="share-link">([^<]+)<', response.content.decode())
    assert link and link.group(1).endswith(f"/shared/{token}")
    # Asked again, the same link.
    client.post(f"/battles/{battle.public_id}/share", headers={"HX-Request": "true"})
    battle.refresh_from_db()
    assert battle.share_token == token
    stranger = Client()
    shared = stranger.get(f"/shared/{token}")
    assert shared.status_code == 200
    html = shared.content.decode()
    left, right = images_of(battle)
    assert f"/images/{left}" in html and f"/images/{right}" in html
    assert battle.model_left.display_name in html and "Tie" in html
    assert "a paper boat in the rain" in html
    assert 'method="post"' not in html.split('id="shared"', 1)[1]  # read-only
    assert settings.SESSION_COOKIE_NAME not in stranger.cookies


def test_an_unvoted_battle_cannot_be_shared_and_has_no_share_page(
    client: Client, models: list[Any]
) -> None:
    owner = session_of(client)
    battle = voted_battle(owner, choice="", prompt="a secret lantern")
    response = client.post(f"/battles/{battle.public_id}/share")
    assert response.status_code == 409
    battle.refresh_from_db()
    assert battle.share_token is None
    # Even a token written by hand opens nothing while the battle has no vote.
    Battle.objects.filter(pk=battle.pk).update(share_token="t" * 32)
    shared = Client().get(f"/shared/{'t' * 32}")
    assert shared.status_code == 404
    left, right = images_of(battle)
    assert left not in shared.content.decode() and right not in shared.content.decode()


def test_another_sessions_battle_cannot_be_shared(client: Client, models: list[Any]) -> None:
    session_of(client)
    battle = voted_battle("someone-else")
    assert client.post(f"/battles/{battle.public_id}/share").status_code == 404
    battle.refresh_from_db()
    assert battle.share_token is None


@pytest.mark.parametrize("token", ["short", "x" * 65, "a" * 31 + "!", "%00" * 20, "a" * 40])
def test_a_share_page_with_a_bad_or_unknown_token_is_a_404(client: Client, token: str) -> None:
    assert client.get(f"/shared/{token}").status_code == 404


def test_your_votes_include_an_accounts_votes_from_another_browser(
    models: list[Any], django_user_model: Any
) -> None:
    from arena.models import Voter

    user = django_user_model.objects.create_user(username="ada", password="x")
    elsewhere = Voter.objects.create(session="other-browser", address="a", user=user)
    battle = voted_battle("other-browser", choice="")
    services.cast_vote(battle=battle, choice="left", voter="other-browser", voter_record=elsewhere)
    theirs = voted_battle("someone-else")
    mine = personal.revealed_battles(owner="this-browser", user_id=user.pk)
    assert list(mine) == [battle]
    assert theirs not in personal.revealed_battles(owner=None, user_id=user.pk)
