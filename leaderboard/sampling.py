"""Active sampling: which pair should meet next, so that votes go where the board is unsure.

Pure numerical code (numpy and scipy only, an explicit rng). Two ingredients, mixed with the
plain policy so that every pair keeps a chance to meet (and the board stays checkable):

* **New-model boost.** A model with fewer than ``boost_until`` votes has its weight multiplied by
  ``boost`` (LMArena boosts a new model until about 3,000 votes).
* **Uncertainty.** For each pair of neighbours in rating order, the variance of their
  difference shrinks, after one more battle between them, from v to v / (1 + v p (1 - p)), with
  p their predicted win probability (one battle's Fisher information on the contrast). Pairs are
  chosen in proportion to that reduction: close, thinly measured neighbours first.

``pair_probabilities`` returns the published policy: the chance of each pair in the next battle.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import expit

Floats = NDArray[np.float64]


def boosted_weights(
    *, weights: ArrayLike, votes: ArrayLike, boost_until: int, boost: float
) -> Floats:
    """Per-model sampling weights with the new-model boost applied."""
    if boost < 1.0:
        raise ValueError(f"boost must be at least 1, got {boost}")
    base = np.asarray(weights, dtype=np.float64)
    fresh = np.asarray(votes) < boost_until
    return np.asarray(np.where(fresh, base * boost, base), dtype=np.float64)


def pair_probabilities(
    *,
    weights: ArrayLike,
    log_strengths: ArrayLike | None = None,
    covariance: ArrayLike | None = None,
    uncertainty_share: float = 0.0,
) -> Floats:
    """Symmetric matrix of the chance that each pair meets next (zero diagonal, sums to one).

    A share ``1 - uncertainty_share`` follows the weights (a pair in proportion to the product
    of its models' weights); the rest goes to neighbouring pairs in proportion to how much one
    battle would shrink the variance of their difference (needs log_strengths and covariance;
    models with a NaN strength, not yet on the board, get none of it).
    """
    if not 0.0 <= uncertainty_share <= 1.0:
        raise ValueError("uncertainty_share must lie in [0, 1]")
    w = np.asarray(weights, dtype=np.float64)
    plain = np.outer(w, w)
    np.fill_diagonal(plain, 0.0)
    if plain.sum() <= 0:
        raise ValueError("at least two models need a positive weight")
    plain /= plain.sum()
    if uncertainty_share == 0.0 or log_strengths is None or covariance is None:
        return plain
    gain = neighbour_gain(weights=w, log_strengths=log_strengths, covariance=covariance)
    if gain.sum() <= 0:
        return plain
    return np.asarray((1.0 - uncertainty_share) * plain + uncertainty_share * gain, np.float64)


def neighbour_gain(
    *, weights: ArrayLike, log_strengths: ArrayLike, covariance: ArrayLike
) -> Floats:
    """Symmetric matrix, summing to one (all zero when no pair gains), of each pair of rating
    neighbours' share of the uncertainty part: in proportion to how much one more battle
    between them shrinks the variance of their difference. Models with a NaN strength or a
    zero weight take no part."""
    w = np.asarray(weights, dtype=np.float64)
    theta = np.asarray(log_strengths, dtype=np.float64)
    cov = np.asarray(covariance, dtype=np.float64)
    gain = np.zeros((w.size, w.size))
    rated = np.flatnonzero(np.isfinite(theta) & (w > 0))
    order = rated[np.argsort(theta[rated], kind="stable")]
    for low, high in zip(order[:-1], order[1:], strict=True):
        variance = cov[low, low] + cov[high, high] - 2.0 * cov[low, high]
        if not np.isfinite(variance) or variance <= 0:
            continue
        p = expit(theta[high] - theta[low])
        information = p * (1.0 - p)
        gain[low, high] = gain[high, low] = variance - variance / (1.0 + variance * information)
    total = gain.sum()
    return np.asarray(gain / total if total > 0 else gain, dtype=np.float64)


def draw_pair(probabilities: ArrayLike, rng: np.random.Generator) -> tuple[int, int]:
    """One pair drawn from a pair-probability matrix, sides in random order."""
    matrix = np.asarray(probabilities, dtype=np.float64)
    upper = np.triu(matrix + matrix.T, k=1).ravel()
    flat = int(rng.choice(upper.size, p=upper / upper.sum()))
    i, j = divmod(flat, matrix.shape[0])
    return (i, j) if rng.random() < 0.5 else (j, i)
