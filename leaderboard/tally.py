"""How votes become counts and online Elo: one outcome type, one pure tally function.

Every path that counts votes goes through ``tally``: a live vote (``services.count_vote``), the
rebuild from every vote (``services.rebuild_counts``), an imported log (``imports``), online Elo
(folded in at refresh) and the vote export's winner column (``votes``). The rules live here once:

- a vote is an ``Outcome`` on its left (FastChat's ``model_a``) and right (``model_b``) sides;
- a pair is stored lower model id first, so a vote with the sides the other way round counts the
  left side's win as ``wins_b``;
- online Elo scores a tie and "both bad" as half a win each, in the order the votes are given.

Pure: numpy only, no Django, no settings.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from leaderboard import ratings

Ints = NDArray[np.int64]

ELO_INIT = 1000.0


class Outcome(enum.IntEnum):
    """A vote's verdict. The values index the pair-count columns in stored order (``FIELDS``)."""

    LEFT = 0  # the left side (model_a) is better
    RIGHT = 1
    TIE = 2
    BOTH_BAD = 3


# The pair-count columns, indexed by the outcome once the pair is in stored order.
FIELDS = ("wins_a", "wins_b", "ties", "both_bad")
# A live vote's choice (arena.models.Vote.Choice values) and FastChat's winner, as outcomes.
FROM_CHOICE = {
    "left": Outcome.LEFT,
    "right": Outcome.RIGHT,
    "tie": Outcome.TIE,
    "both_bad": Outcome.BOTH_BAD,
}
FROM_WINNER = {
    "model_a": Outcome.LEFT,
    "model_b": Outcome.RIGHT,
    "tie": Outcome.TIE,
    "tie (bothbad)": Outcome.BOTH_BAD,
}
WINNER = {outcome: winner for winner, outcome in FROM_WINNER.items()}
# What the left side scores in online Elo, by outcome.
ELO_SCORE = (1.0, 0.0, 0.5, 0.5)


@dataclass(frozen=True)
class PairTally:
    """Counts per (group, pair): ``table[i]`` holds wins_a, wins_b, ties, both_bad of the pair
    ``a[i] < b[i]`` in group ``group[i]`` (a code the caller gave, e.g. category and anonymity)."""

    group: Ints
    a: Ints
    b: Ints
    table: Ints

    def rows(self) -> list[tuple[int, int, int, tuple[int, int, int, int]]]:
        """(group, a, b, (wins_a, wins_b, ties, both_bad)) per pair, as plain ints."""
        return [
            (g, a, b, (row[0], row[1], row[2], row[3]))
            for g, a, b, row in zip(
                self.group.tolist(),
                self.a.tolist(),
                self.b.tolist(),
                self.table.tolist(),
                strict=True,
            )
        ]


@dataclass(frozen=True)
class Tally:
    """What a sequence of votes adds: pair counts, and online Elo where it was asked for."""

    pairs: PairTally
    elo: dict[int, float]
    elo_votes: dict[int, int]


def tally(
    *,
    left: ArrayLike,
    right: ArrayLike,
    outcome: ArrayLike,
    group: ArrayLike | None = None,
    elo_from: Mapping[int, float] | None = None,
    elo_mask: ArrayLike | None = None,
    k: float = 4.0,
) -> Tally:
    """Count votes given in order: per group and pair in stored order, and, when ``elo_from``
    is given (the ratings to continue from; a model absent starts at ``ELO_INIT``), online Elo
    over the votes that ``elo_mask`` selects (all by default), in the order given."""
    side_l = np.asarray(left, dtype=np.int64).reshape(-1)
    side_r = np.asarray(right, dtype=np.int64).reshape(-1)
    verdict = np.asarray(outcome, dtype=np.int64).reshape(-1)
    groups = (
        np.zeros(side_l.size, dtype=np.int64)
        if group is None
        else np.asarray(group, dtype=np.int64).reshape(-1)
    )
    if not side_l.size == side_r.size == verdict.size == groups.size:
        raise ValueError("left, right, outcome and group must have the same length")
    if side_l.size and (verdict.min() < 0 or verdict.max() > Outcome.BOTH_BAD):
        raise ValueError("outcome must be an Outcome (0 to 3)")
    if np.any(side_l == side_r):
        raise ValueError("a vote needs two different models")
    pairs = _count_pairs(left=side_l, right=side_r, outcome=verdict, group=groups)
    elo: dict[int, float] = {}
    elo_votes: dict[int, int] = {}
    if elo_from is not None:
        mask = (
            np.ones(side_l.size, dtype=bool)
            if elo_mask is None
            else np.asarray(elo_mask, dtype=bool).reshape(-1)
        )
        elo, elo_votes = _online_elo(
            left=side_l[mask], right=side_r[mask], outcome=verdict[mask], start=elo_from, k=k
        )
    return Tally(pairs=pairs, elo=elo, elo_votes=elo_votes)


def _count_pairs(*, left: Ints, right: Ints, outcome: Ints, group: Ints) -> PairTally:
    if not left.size:
        empty = np.zeros(0, dtype=np.int64)
        return PairTally(group=empty, a=empty, b=empty, table=np.zeros((0, 4), dtype=np.int64))
    swapped = left > right
    low, high = np.where(swapped, right, left), np.where(swapped, left, right)
    # With the sides the other way round, the left side's win is the stored pair's b winning.
    stored = np.where(swapped & (outcome <= Outcome.RIGHT), 1 - outcome, outcome)
    models, dense = np.unique(np.concatenate([low, high]), return_inverse=True)
    size = models.size
    groups, group_index = np.unique(group, return_inverse=True)
    key = (group_index * size + dense[: low.size]) * size + dense[low.size :]
    keys, row = np.unique(key, return_inverse=True)
    table = np.bincount(row * 4 + stored, minlength=keys.size * 4).reshape(keys.size, 4)
    return PairTally(
        group=groups[keys // (size * size)],
        a=models[keys // size % size],
        b=models[keys % size],
        table=table.astype(np.int64),
    )


def _online_elo(
    *, left: Ints, right: Ints, outcome: Ints, start: Mapping[int, float], k: float
) -> tuple[dict[int, float], dict[int, int]]:
    models, dense = np.unique(np.concatenate([left, right]), return_inverse=True)
    ids = models.tolist()
    begin = [float(start.get(pk, ELO_INIT)) for pk in ids]
    n = left.size
    shown = _elo_from(start=begin, a=dense[:n], b=dense[n:], outcome=outcome, k=k)
    counted = np.bincount(dense, minlength=len(ids)).tolist()
    return dict(zip(ids, shown, strict=True)), dict(zip(ids, counted, strict=True))


def _elo_from(*, start: list[float], a: Ints, b: Ints, outcome: Ints, k: float) -> list[float]:
    """Online Elo continued from given ratings, one ``ratings.elo_change`` step per vote: each
    step depends on the one before, so this loop cannot be vectorised."""
    rating = list(start)
    for i, j, won in zip(a.tolist(), b.tolist(), outcome.tolist(), strict=True):
        change = ratings.elo_change(
            rating_a=rating[i], rating_b=rating[j], outcome=ELO_SCORE[won], k=k
        )
        rating[i] += change
        rating[j] -= change
    return rating
