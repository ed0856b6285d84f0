"""Reads for the leaderboard: per-model totals from the pair counts."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from generation.models import ImageModel
from leaderboard.models import PairCount


@dataclass(frozen=True)
class Row:
    model: ImageModel
    votes: int
    wins: float
    win_rate: float | None


def board(*, category: str | None = None) -> list[Row]:
    """Every model with anonymous votes: votes, wins (a tie or both-bad as half), win rate."""
    counts = PairCount.objects.all()
    if category:
        counts = counts.filter(category=category)
    votes: dict[int, int] = defaultdict(int)
    wins: dict[int, float] = defaultdict(float)
    for row in counts:
        shared = (row.ties + row.both_bad) / 2
        votes[row.model_a_id] += row.total
        votes[row.model_b_id] += row.total
        wins[row.model_a_id] += row.wins_a + shared
        wins[row.model_b_id] += row.wins_b + shared
    models = ImageModel.objects.in_bulk(list(votes))
    rows = [
        Row(model=models[pk], votes=n, wins=wins[pk], win_rate=wins[pk] / n if n else None)
        for pk, n in votes.items()
    ]
    return sorted(rows, key=lambda r: (-(r.win_rate or 0), -r.votes, r.model.display_name))
