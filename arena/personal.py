"""What a voter sees of their own votes: the battles they revealed, their own leaderboard,
and share links to a revealed battle.

A visitor is their browser session and, when signed in, their account: "your votes" are the
voted battles the session started or the account voted on. Reading them never creates a
session (a visitor who never battled has none, and no votes).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import numpy as np
from django.conf import settings
from django.db.models import Q, QuerySet
from django.http import HttpRequest

from arena import services
from arena.models import Battle
from generation.models import ImageModel
from leaderboard import ratings
from leaderboard.board import compute_board

# A personal board needs this many of the voter's own anonymous votes.
PERSONAL_BOARD_MIN_VOTES = 30
# Bytes of randomness in a share token (32 URL-safe characters).
SHARE_TOKEN_BYTES = 24


class NotShareable(Exception):
    """Only a battle with a vote can be shared."""


def visitor_of(request: HttpRequest) -> tuple[str | None, int | None]:
    """(session hash, account id) of the visitor, either None where absent; makes nothing."""
    key = request.session.session_key
    owner = services.identity_hash(key) if key else None
    user = getattr(request, "user", None)
    account = user.pk if user is not None and user.is_authenticated else None
    return owner, account


def revealed_battles(*, owner: str | None, user_id: int | None) -> QuerySet[Battle]:
    """The visitor's voted battles (names revealed), newest vote first."""
    mine = Q(pk__in=[])
    if owner:
        mine |= Q(owner=owner)
    if user_id is not None:
        mine |= Q(vote__voter_record__user_id=user_id)
    return (
        Battle.objects.filter(mine, status=Battle.Status.VOTED)
        .select_related("vote", "model_left", "model_right", "generation_left", "generation_right")
        .order_by("-vote__created_at", "-pk")
    )


@dataclass(frozen=True)
class PersonalRow:
    model: ImageModel
    rank: int
    rating: float | None  # None where the voter's votes bound it on one side at most
    lower: float
    upper: float
    status: str
    votes: int
    win_rate: float


@dataclass(frozen=True)
class PersonalBoard:
    votes: int  # the voter's anonymous, non-gold votes
    needed: int  # votes still missing before a board is shown (0: shown)
    rows: list[PersonalRow]


def personal_board(battles: QuerySet[Battle]) -> PersonalBoard:
    """Bradley-Terry on the voter's own votes, each counted once and unweighted, as the
    public board computes it (open intervals where the votes bound a model on one side)."""
    votes = list(
        battles.filter(anonymous=True, gold_side="").values_list(
            "model_left_id", "model_right_id", "vote__choice"
        )
    )
    needed = max(PERSONAL_BOARD_MIN_VOTES - len(votes), 0)
    if needed:
        return PersonalBoard(votes=len(votes), needed=needed, rows=[])
    model_ids = sorted({pk for left, right, _ in votes for pk in (left, right)})
    index = {pk: i for i, pk in enumerate(model_ids)}
    tie_choices = {"tie", "both_bad"} if settings.LEADERBOARD_BOTH_BAD_AS_TIE else {"tie"}
    decided = [
        (left, right, choice)
        for left, right, choice in votes
        if choice in {"left", "right"} | tie_choices
    ]
    if not decided:
        return PersonalBoard(votes=len(votes), needed=0, rows=[])
    counts = ratings.PairCounts.from_arrays(
        a=np.array([index[left] for left, _, _ in decided], dtype=np.int64),
        b=np.array([index[right] for _, right, _ in decided], dtype=np.int64),
        wins_a=np.array([choice == "left" for _, _, choice in decided], dtype=float),
        wins_b=np.array([choice == "right" for _, _, choice in decided], dtype=float),
        ties=np.array([choice in tie_choices for _, _, choice in decided], dtype=float),
        n_models=max(len(model_ids), 1),
    )
    board = compute_board(counts=counts)
    shown = board.shown_board
    by_id = ImageModel.objects.in_bulk(model_ids)
    rows = [
        PersonalRow(
            model=by_id[pk],
            rank=int(shown.rank[i]),
            rating=None if np.isnan(shown.rating[i]) else float(shown.rating[i]),
            lower=float(shown.lower[i]),
            upper=float(shown.upper[i]),
            status=str(shown.status[i]),
            votes=int(board.votes[i]),
            win_rate=float(board.win_rate[i]),
        )
        for pk, i in index.items()
    ]
    rows.sort(key=lambda r: (r.rank, -(r.rating if r.rating is not None else r.lower)))
    return PersonalBoard(votes=len(votes), needed=0, rows=rows)


def share_battle(*, battle: Battle) -> str:
    """The battle's share token, made on the first request; only a voted battle has one."""
    if battle.status != Battle.Status.VOTED:
        raise NotShareable("Vote first: a battle can be shared once its names are revealed.")
    token = secrets.token_urlsafe(SHARE_TOKEN_BYTES)
    Battle.objects.filter(
        pk=battle.pk, status=Battle.Status.VOTED, share_token__isnull=True
    ).update(share_token=token)
    battle.refresh_from_db(fields=["share_token"])
    assert battle.share_token is not None
    return battle.share_token
