"""Style control for images: Bradley-Terry with covariates of each battle's two images.

Pure numerical code (numpy and scipy only). Each vote's left side wins with probability

    sigmoid(theta_left - theta_right + beta . (x_left - x_right)),

where x describes an image, not the model: its side (x_side = 1 on the left, so beta_side is a
position effect), its output resolution and aspect class, and its generation-time bucket, each
class one-hot against a reference class. theta is then each model's strength with those effects
held equal: the controlled board. A tie counts as half a win, as on the default board.

Votes with the same (left, right, covariate difference) are aggregated into one row, so a
refresh fits from kept counts like the plain board does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import expit
from scipy.stats import norm

from leaderboard.ratings import ConvergenceError

Floats = NDArray[np.float64]
Ints = NDArray[np.int64]

ASPECTS = ("portrait", "square", "landscape")  # reference: square
# Output resolution classes by pixel count; reference: the middle one.
RESOLUTION_EDGES = (512 * 512, 1024 * 1024)
RESOLUTIONS = ("small", "medium", "large")
# Generation-time buckets in seconds; reference: the first.
TIME_EDGES = (2.0, 8.0)
TIMES = ("fast", "medium", "slow")


def covariate_names() -> tuple[str, ...]:
    """Names of the columns ``image_covariates`` returns, reference classes left out."""
    return (
        "side_left",
        "aspect_portrait",
        "aspect_landscape",
        "resolution_small",
        "resolution_large",
        "time_medium",
        "time_slow",
    )


def image_covariates(
    *, width: ArrayLike, height: ArrayLike, seconds: ArrayLike, left: bool
) -> Floats:
    """One row of covariates per image (columns as ``covariate_names``)."""
    w = np.asarray(width, dtype=np.float64)
    h = np.asarray(height, dtype=np.float64)
    t = np.asarray(seconds, dtype=np.float64)
    ratio = w / h
    pixels = w * h
    size = np.searchsorted(RESOLUTION_EDGES, pixels, side="right")
    bucket = np.searchsorted(TIME_EDGES, t, side="right")
    return np.column_stack(
        [
            np.full(w.shape, 1.0 if left else 0.0),
            (ratio < 0.9).astype(float),
            (ratio > 1.1).astype(float),
            (size == 0).astype(float),
            (size == 2).astype(float),
            (bucket == 1).astype(float),
            (bucket == 2).astype(float),
        ]
    )


@dataclass(frozen=True)
class StyledCounts:
    """Votes aggregated per (left model, right model, covariate difference) row."""

    left: Ints
    right: Ints
    features: Floats  # rows x covariates: left image's minus right image's
    wins_left: Floats
    wins_right: Floats
    ties: Floats
    n_models: int


def aggregate_styled_votes(
    *,
    left: ArrayLike,
    right: ArrayLike,
    outcome: ArrayLike,
    features_left: ArrayLike,
    features_right: ArrayLike,
    n_models: int,
) -> StyledCounts:
    """Aggregate votes (outcome 1 left wins, 0 right wins, 0.5 tie) with their images'
    covariates into rows of equal (left, right, difference)."""
    side_l = np.asarray(left, dtype=np.int64)
    side_r = np.asarray(right, dtype=np.int64)
    result = np.asarray(outcome, dtype=np.float64)
    difference = np.asarray(features_left, dtype=np.float64) - np.asarray(
        features_right, dtype=np.float64
    )
    if not (side_l.shape == side_r.shape == result.shape) or difference.shape[0] != side_l.size:
        raise ValueError("left, right, outcome and the feature rows must have one length")
    if np.any(side_l == side_r):
        raise ValueError("a model cannot battle itself")
    if not np.all((result == 0.0) | (result == 0.5) | (result == 1.0)):
        raise ValueError("outcome must be 1.0 (left wins), 0.0 (right wins) or 0.5 (tie)")
    keys = np.column_stack([side_l, side_r, difference])
    unique, inverse = np.unique(keys, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    rows = unique.shape[0]
    return StyledCounts(
        left=unique[:, 0].astype(np.int64),
        right=unique[:, 1].astype(np.int64),
        features=np.ascontiguousarray(unique[:, 2:]),
        wins_left=np.bincount(inverse, result == 1.0, rows).astype(np.float64),
        wins_right=np.bincount(inverse, result == 0.0, rows).astype(np.float64),
        ties=np.bincount(inverse, result == 0.5, rows).astype(np.float64),
        n_models=n_models,
    )


@dataclass(frozen=True)
class StyleFit:
    """Controlled log-strengths (mean zero over models with battles, NaN otherwise), the
    covariate coefficients (logits) and their sandwich intervals."""

    log_strengths: Floats
    coefficients: Floats
    coefficient_lower: Floats
    coefficient_upper: Floats


def fit_style_controlled(
    *, counts: StyledCounts, l2_prior: float = 1e-4, level: float = 0.95, max_iter: int = 100
) -> StyleFit:
    """Newton fit of strengths and coefficients; sandwich intervals for the coefficients.

    Assumes one connected comparison graph (a refresh fits each group apart otherwise)."""
    n = counts.n_models
    battles = counts.wins_left + counts.wins_right + counts.ties
    score = counts.wins_left + 0.5 * counts.ties
    per_model = np.bincount(counts.left, battles, n) + np.bincount(counts.right, battles, n)
    models = np.flatnonzero(per_model > 0)
    renumber = np.full(n, -1)
    renumber[models] = np.arange(models.size)
    m, k = models.size, counts.features.shape[1]
    design = np.zeros((battles.size, m + k))
    rows = np.arange(battles.size)
    design[rows, renumber[counts.left]] = 1.0
    design[rows, renumber[counts.right]] = -1.0
    design[:, m:] = counts.features
    # Only differences of strengths are identified: pin their mean (the all-ones direction).
    gauge = np.zeros((m + k, m + k))
    gauge[:m, :m] = 1.0 / max(m, 1)
    ridge = l2_prior * np.eye(m + k)
    params = np.zeros(m + k)
    for _ in range(max_iter):
        p = expit(design @ params)
        gradient = design.T @ (battles * p - score) + l2_prior * params
        hessian = (design.T * (battles * p * (1 - p))) @ design + ridge + gauge
        step = np.linalg.solve(hessian, gradient)
        params -= step
        if np.max(np.abs(step)) < 1e-10:
            break
    else:
        raise ConvergenceError(f"style-controlled fit did not converge in {max_iter} steps")
    params[:m] -= params[:m].mean()
    p = expit(design @ params)
    residual_sq = (
        counts.wins_left * (1 - p) ** 2 + counts.wins_right * p**2 + counts.ties * (0.5 - p) ** 2
    )
    bread = (design.T * (battles * p * (1 - p))) @ design + ridge + gauge
    meat = (design.T * residual_sq) @ design
    inverse = np.linalg.inv(bread)
    covariance = inverse @ meat @ inverse
    half = norm.ppf(0.5 + level / 2) * np.sqrt(np.clip(np.diag(covariance)[m:], 0.0, None))
    theta = np.full(n, np.nan)
    theta[models] = params[:m]
    beta = params[m:]
    return StyleFit(
        log_strengths=theta,
        coefficients=beta,
        coefficient_lower=beta - half,
        coefficient_upper=beta + half,
    )
