"""One leaderboard from one board's counts: fit, intervals, display scale, ranks, matrices.

The whole computation behind a snapshot, as one pure function, so that ``refresh`` only loads
the counts and saves what comes out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from leaderboard.ratings.counts import Floats, Ints, PairCounts, components
from leaderboard.ratings.fit import fit_bradley_terry, intervals_to_display, to_display
from leaderboard.ratings.intervals import rank_ub, sandwich_intervals
from leaderboard.ratings.matrices import battle_count_matrix, predicted_win_matrix, win_rate_matrix
from leaderboard.ratings.resampling import Resamples, bootstrap

INTERVAL_METHODS = ("sandwich", "bootstrap")


@dataclass(frozen=True)
class Board:
    """A computed board, one entry per model of the counts unless said otherwise."""

    log_strengths: Floats
    rating: Floats
    lower: Floats  # display points
    upper: Floats
    votes: Floats  # battles each model took part in
    win_rate: Floats  # share of its battles won, ties as half; 0 without battles
    component: Ints  # connected part of the comparison graph
    provisional: NDArray[np.bool_]
    shown: Ints  # indices of the models the board lists, in model order
    rank: Ints  # Rank (UB) of each shown model, aligned with ``shown``
    battles: Floats  # model x model matrices
    win_rates: Floats
    predicted: Floats
    resamples: Resamples | None  # bootstrap boards: the rounds behind the bounds
    extended: bool  # bootstrap boards: the rounds extended ``previous`` rather than fresh

    @property
    def components(self) -> int:
        return int(self.component.max()) + 1 if self.component.size else 0


def compute_board(
    *,
    counts: PairCounts,
    intervals: str,
    min_votes: float,
    hide_below_min: bool,
    rng: np.random.Generator | None = None,
    rounds: int = 1000,
    previous: Resamples | None = None,
    threads: int = 1,
    anchor: int | None = None,
    anchor_rating: float | None = None,
    scale: float = 400.0,
    base: float = 10.0,
    init: float = 1000.0,
) -> Board:
    """Fit, intervals (sandwich, or bootstrap from ``rng``, extending ``previous`` when it
    can), display ratings, Rank (UB) and heatmap matrices of one board.

    A model with fewer than ``min_votes`` battles is provisional; with ``hide_below_min`` (a
    category board) it is also left off the board and out of the ranks.
    """
    if intervals not in INTERVAL_METHODS:
        raise ValueError(
            f"intervals must be one of {', '.join(INTERVAL_METHODS)}, got {intervals!r}"
        )
    theta = fit_bradley_terry(counts=counts)
    resamples, extended = None, False
    if intervals == "bootstrap":
        if rng is None:
            raise ValueError("bootstrap intervals need an rng")
        resampled = bootstrap(
            counts=counts,
            rounds=rounds,
            rng=rng,
            log_strengths=theta,
            previous=previous,
            threads=threads,
        )
        low, high = resampled.lower, resampled.upper
        resamples, extended = resampled.resamples, resampled.extended
    else:
        low, high = sandwich_intervals(counts=counts, log_strengths=theta)
    shape = {"scale": scale, "base": base, "init": init}
    rating = to_display(log_strengths=theta, anchor=anchor, anchor_rating=anchor_rating, **shape)
    lower, upper = intervals_to_display(
        log_strengths=theta,
        lower=low,
        upper=high,
        anchor=anchor,
        anchor_rating=anchor_rating,
        **shape,
    )
    battles = battle_count_matrix(counts)
    win_rates = win_rate_matrix(counts)
    per_model = battles.sum(axis=1)
    score = np.nansum(win_rates * battles, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        win_rate = np.where(per_model > 0, score / per_model, 0.0)
    provisional = per_model < min_votes
    shown = np.flatnonzero(~provisional if hide_below_min else np.ones_like(provisional))
    rank = (
        rank_ub(lower=lower[shown], upper=upper[shown])
        if shown.size
        else np.zeros(0, dtype=np.int64)
    )
    return Board(
        log_strengths=theta,
        rating=rating,
        lower=lower,
        upper=upper,
        votes=per_model,
        win_rate=win_rate,
        component=components(counts),
        provisional=provisional,
        shown=shown.astype(np.int64),
        rank=np.asarray(rank, dtype=np.int64),
        battles=battles,
        win_rates=win_rates,
        predicted=predicted_win_matrix(theta),
        resamples=resamples,
        extended=extended,
    )
