"""Confidence intervals from the robust (sandwich) covariance, and rank by interval."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

# ndtri is norm.ppf, without the import of scipy.stats (a second of every start).
from scipy.special import expit, ndtri

from leaderboard.ratings.counts import Floats, Ints, PairCounts
from leaderboard.ratings.fit import Problem, checked_log_strengths


def sandwich_intervals(
    *,
    counts: PairCounts,
    log_strengths: ArrayLike,
    weights: ArrayLike | None = None,
    level: float = 0.95,
    hessian_ridge: float = 1e-5,
) -> tuple[Floats, Floats]:
    """Normal intervals from the robust covariance H^-1 J H^-1, in log-strength units."""
    # H is the Hessian of the weighted loss, J the sum over battles of each battle's score outer
    # product: the same definition as LMArena's arena-rank. Like arena-rank we add
    # hessian_ridge * (total battles, or 1 when weighted) to H's diagonal. The all-ones direction
    # of each component has zero score variance, so the ridge only fixes the gauge there; elsewhere
    # it shrinks variances by about ridge / (per-battle information), roughly 0.1 % of a width.
    # hessian_ridge=0.0 gives the exact mean-zero-gauge covariance H^+ J H^+.
    check_level(level)
    problem = Problem.build(counts=counts, weights=weights)
    theta = checked_log_strengths(log_strengths, counts.n_models)[problem.models]
    if not np.all(np.isfinite(theta)):
        raise ValueError("log_strengths must be finite for every model that has battles")
    unweighted = weights is None or bool(np.allclose(problem.weights, 1.0))
    ridge = hessian_ridge * (float(problem.battles.sum()) if unweighted else 1.0)
    win_prob = expit(problem.difference(theta))
    score_variance = problem.weights**2 * (
        problem.wins_a * (1.0 - win_prob) ** 2
        + problem.wins_b * win_prob**2
        + problem.ties * (0.5 - win_prob) ** 2
    )
    meat = problem.laplacian(score_variance)
    bread = problem.laplacian(problem.weighted_battles * win_prob * (1.0 - win_prob))
    # Adding the component projector makes the bread invertible without changing the result:
    # it acts only on the all-ones directions, which the meat annihilates.
    bread_inverse = np.linalg.inv(bread + ridge * np.eye(problem.size) + problem.gauge_projector)
    covariance = bread_inverse @ meat @ bread_inverse
    half_width = ndtri(0.5 + level / 2.0) * np.sqrt(np.clip(np.diag(covariance), 0.0, None))
    return problem.expand(theta - half_width), problem.expand(theta + half_width)


def rank_ub(*, lower: ArrayLike, upper: ArrayLike) -> Ints:
    """Rank (UB): 1 + the number of models whose lower bound is above this model's upper bound."""
    low = np.asarray(lower, dtype=np.float64)
    high = np.asarray(upper, dtype=np.float64)
    if low.shape != high.shape or low.ndim != 1:
        raise ValueError("lower and upper must be one-dimensional arrays of the same length")
    if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
        raise ValueError("bounds must be finite; leave out models without battles")
    if np.any(low > high):
        raise ValueError("every lower bound must be at most its upper bound")
    above = low.size - np.searchsorted(np.sort(low), high, side="right")
    return np.asarray(1 + above, dtype=np.int64)


def check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie strictly between 0 and 1, got {level}")
