"""Online Elo, shown only as a comparison column: it depends on the order of the votes."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from leaderboard.ratings.counts import Floats


def online_elo(
    *,
    a: ArrayLike,
    b: ArrayLike,
    outcome: ArrayLike,
    n_models: int,
    k: float = 4.0,
    scale: float = 400.0,
    base: float = 10.0,
    init: float = 1000.0,
) -> Floats:
    """Sequential Elo over votes in order (outcome 1 a wins, 0 b wins, 0.5 tie), for comparison."""
    side_a = np.asarray(a, dtype=np.int64)
    side_b = np.asarray(b, dtype=np.int64)
    result = np.asarray(outcome, dtype=np.float64)
    if not (side_a.shape == side_b.shape == result.shape) or side_a.ndim != 1:
        raise ValueError("a, b and outcome must be one-dimensional arrays of the same length")
    if side_a.size and (
        min(side_a.min(), side_b.min()) < 0 or max(side_a.max(), side_b.max()) >= n_models
    ):
        raise ValueError(f"model indices must lie in [0, {n_models})")
    ratings = [init] * n_models
    # Each update depends on the previous one, so this loop cannot be vectorised; plain Python
    # floats are several times faster than numpy scalars here.
    for i, j, won in zip(side_a.tolist(), side_b.tolist(), result.tolist(), strict=True):
        change = elo_change(
            rating_a=ratings[i], rating_b=ratings[j], outcome=won, k=k, scale=scale, base=base
        )
        ratings[i] += change
        ratings[j] -= change
    return np.asarray(ratings, dtype=np.float64)


def elo_change(
    *,
    rating_a: float,
    rating_b: float,
    outcome: float,
    k: float = 4.0,
    scale: float = 400.0,
    base: float = 10.0,
) -> float:
    """One online Elo step: what side a gains (side b loses the same) for one vote's outcome."""
    expected = 1.0 / (1.0 + float(base) ** ((rating_b - rating_a) / scale))
    return float(k * (outcome - expected))
