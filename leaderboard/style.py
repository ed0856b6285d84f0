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

# ndtri is norm.ppf, without the import of scipy.stats (a second of every start).
from scipy.special import expit, ndtri

from leaderboard.ratings import ConvergenceError

Floats = NDArray[np.float64]
Ints = NDArray[np.int64]

ASPECTS = ("portrait", "square", "landscape")  # reference: square
# Width / height below the first edge is portrait, above the second landscape.
ASPECT_EDGES = (0.9, 1.1)
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


def image_classes(*, width: ArrayLike, height: ArrayLike, seconds: ArrayLike) -> Ints:
    """Each image's class, ``9 * aspect + 3 * resolution + time bucket`` (each 0, 1 or 2 in the
    order of ASPECTS, RESOLUTIONS and TIMES): 27 classes, which the covariates are a function of.
    An undefined aspect (0 x 0 pixels) counts as square."""
    w = np.asarray(width, dtype=np.float64)
    h = np.asarray(height, dtype=np.float64)
    t = np.asarray(seconds, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = w / h
    aspect = np.where(ratio < ASPECT_EDGES[0], 0, np.where(ratio > ASPECT_EDGES[1], 2, 1))
    return np.asarray(9 * aspect + 3 * _bucket(w * h, RESOLUTION_EDGES) + _bucket(t, TIME_EDGES))


def _bucket(values: Floats, edges: tuple[float, float]) -> Ints:
    """``np.searchsorted(edges, values, side="right")`` (NaN last), by two comparisons: four
    times faster on a million values."""
    bucket = np.add(values >= edges[0], values >= edges[1], dtype=np.int64)
    bucket[np.isnan(values)] = len(edges)
    return bucket


def _class_table() -> Floats:
    """Covariates (columns as ``covariate_names``, side left out as 0) of each image class."""
    code = np.arange(27)
    aspect, size, bucket = code // 9, code // 3 % 3, code % 3
    return np.column_stack(
        [
            np.zeros(27),
            aspect == 0,
            aspect == 2,
            size == 0,
            size == 2,
            bucket == 1,
            bucket == 2,
        ]
    ).astype(np.float64)


CLASS_COVARIATES = _class_table()


def image_covariates(
    *, width: ArrayLike, height: ArrayLike, seconds: ArrayLike, left: bool
) -> Floats:
    """One row of covariates per image (columns as ``covariate_names``)."""
    table = CLASS_COVARIATES.copy()
    table[:, 0] = 1.0 if left else 0.0
    return table[image_classes(width=width, height=height, seconds=seconds)]


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


def aggregate_image_votes(
    *,
    left: ArrayLike,
    right: ArrayLike,
    outcome: ArrayLike,
    classes_left: ArrayLike,
    classes_right: ArrayLike,
    n_models: int,
) -> StyledCounts:
    """``aggregate_styled_votes`` of votes described by their images' classes (image_classes):
    the same rows in the same order, from integer keys and counts rather than by sorting a
    million float rows."""
    side_l = np.asarray(left, dtype=np.int64)
    side_r = np.asarray(right, dtype=np.int64)
    result = np.asarray(outcome, dtype=np.float64)
    class_l = np.asarray(classes_left, dtype=np.int64)
    class_r = np.asarray(classes_right, dtype=np.int64)
    if not (side_l.shape == side_r.shape == result.shape == class_l.shape == class_r.shape):
        raise ValueError("left, right, outcome and the image classes must have one length")
    for side in (side_l, side_r):
        if side.size and (side.min() < 0 or side.max() >= n_models):
            raise ValueError("model indices must lie in 0 .. n_models - 1")
    for side in (class_l, class_r):
        if side.size and (side.min() < 0 or side.max() >= CLASS_COVARIATES.shape[0]):
            raise ValueError("image classes must lie in 0 .. 26")
    if np.any(side_l == side_r):
        raise ValueError("a model cannot battle itself")
    if not np.all((result == 0.0) | (result == 0.5) | (result == 1.0)):
        raise ValueError("outcome must be 1.0 (left wins), 0.0 (right wins) or 0.5 (tie)")
    classes = CLASS_COVARIATES.shape[0]
    if side_l.size == 0:
        empty = np.zeros(0)
        return StyledCounts(
            left=np.zeros(0, dtype=np.int64),
            right=np.zeros(0, dtype=np.int64),
            features=np.zeros((0, CLASS_COVARIATES.shape[1])),
            wins_left=empty,
            wins_right=empty,
            ties=empty,
            n_models=n_models,
        )
    left_table = CLASS_COVARIATES.copy()
    left_table[:, 0] = 1.0
    # A vote's covariate difference is a function of its two images' classes. Number the
    # differences of the class pairs that occur in the order np.unique sorts rows in, so that
    # (left, right, difference number) sorts as the rows (left, right, difference) do.
    combination = class_l * classes + class_r
    occurring = np.flatnonzero(np.bincount(combination, minlength=classes * classes))
    difference = left_table[occurring // classes] - CLASS_COVARIATES[occurring % classes]
    distinct, number = np.unique(difference, axis=0, return_inverse=True)
    difference_of = np.zeros(classes * classes, dtype=np.int64)
    difference_of[occurring] = number.ravel()
    d = distinct.shape[0]
    key = (side_l * n_models + side_r) * d + difference_of[combination]
    # Three counts per key: right wins (0), ties (1), left wins (2).
    cells = 3 * key + (2.0 * result).astype(np.int64)
    if n_models * n_models * d <= 4 * key.size + 100_000:
        counted = np.bincount(cells, minlength=3 * n_models * n_models * d).reshape(-1, 3)
        rows = np.flatnonzero(counted.any(axis=1))
        counted = counted[rows]
    else:  # many models: count the occurring keys only
        rows, inverse = np.unique(key, return_inverse=True)
        counted = np.bincount(3 * inverse.ravel() + cells % 3, minlength=3 * rows.size).reshape(
            -1, 3
        )
    pair = rows // d
    return StyledCounts(
        left=pair // n_models,
        right=pair % n_models,
        features=np.ascontiguousarray(distinct[rows % d]),
        wins_left=counted[:, 2].astype(np.float64),
        wins_right=counted[:, 0].astype(np.float64),
        ties=counted[:, 1].astype(np.float64),
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


def _weighted_gram(*, left: Ints, right: Ints, features: Floats, weight: Floats, m: int) -> Floats:
    """D' diag(weight) D for the design D whose row is (e_left - e_right, features), from
    bincounts: the rows are never built as an (rows x (m + k)) matrix."""
    k = features.shape[1]
    gram = np.zeros((m + k, m + k))
    pairs = np.bincount(left * m + right, weight, m * m).reshape(m, m)
    strengths = gram[:m, :m]
    strengths -= pairs + pairs.T
    strengths[np.diag_indices(m)] += np.bincount(left, weight, m) + np.bincount(right, weight, m)
    weighted = features * weight[:, None]
    column = np.arange(k)
    flat = weighted.ravel()
    cross = np.bincount((left[:, None] * k + column).ravel(), flat, m * k)
    cross -= np.bincount((right[:, None] * k + column).ravel(), flat, m * k)
    gram[:m, m:] = cross.reshape(m, k)
    gram[m:, :m] = gram[:m, m:].T
    gram[m:, m:] = features.T @ weighted
    return gram


def fit_style_controlled(
    *, counts: StyledCounts, l2_prior: float = 1e-4, level: float = 0.95, max_iter: int = 100
) -> StyleFit:
    """Newton fit of strengths and coefficients; sandwich intervals for the coefficients.

    Assumes one connected comparison graph (a refresh fits each group apart otherwise). The
    gradient and Hessian come from bincounts over the rows (O(rows x covariates) a step), so a
    refresh of a million votes in some ten thousand rows fits in milliseconds."""
    n = counts.n_models
    battles = counts.wins_left + counts.wins_right + counts.ties
    score = counts.wins_left + 0.5 * counts.ties
    per_model = np.bincount(counts.left, battles, n) + np.bincount(counts.right, battles, n)
    models = np.flatnonzero(per_model > 0)
    renumber = np.full(n, -1)
    renumber[models] = np.arange(models.size)
    m, k = models.size, counts.features.shape[1]
    left, right = renumber[counts.left], renumber[counts.right]
    features = np.ascontiguousarray(counts.features, dtype=np.float64)
    # Only differences of strengths are identified: pin their mean (the all-ones direction).
    gauge = np.zeros((m + k, m + k))
    gauge[:m, :m] = 1.0 / max(m, 1)
    ridge = l2_prior * np.eye(m + k)

    def linear(params: Floats) -> Floats:
        return np.asarray(params[:m][left] - params[:m][right] + features @ params[m:])

    params = np.zeros(m + k)
    for _ in range(max_iter):
        p = expit(linear(params))
        residual = battles * p - score
        gradient = np.concatenate(
            [
                np.bincount(left, residual, m) - np.bincount(right, residual, m),
                features.T @ residual,
            ]
        )
        gradient += l2_prior * params
        hessian = (
            _weighted_gram(
                left=left, right=right, features=features, weight=battles * p * (1 - p), m=m
            )
            + ridge
            + gauge
        )
        step = np.linalg.solve(hessian, gradient)
        params -= step
        if np.max(np.abs(step)) < 1e-10:
            break
    else:
        raise ConvergenceError(f"style-controlled fit did not converge in {max_iter} steps")
    params[:m] -= params[:m].mean()
    p = expit(linear(params))
    residual_sq = (
        counts.wins_left * (1 - p) ** 2 + counts.wins_right * p**2 + counts.ties * (0.5 - p) ** 2
    )
    bread = (
        _weighted_gram(left=left, right=right, features=features, weight=battles * p * (1 - p), m=m)
        + ridge
        + gauge
    )
    meat = _weighted_gram(left=left, right=right, features=features, weight=residual_sq, m=m)
    inverse = np.linalg.inv(bread)
    covariance = inverse @ meat @ inverse
    half = ndtri(0.5 + level / 2) * np.sqrt(np.clip(np.diag(covariance)[m:], 0.0, None))
    theta = np.full(n, np.nan)
    theta[models] = params[:m]
    beta = params[m:]
    return StyleFit(
        log_strengths=theta,
        coefficients=beta,
        coefficient_lower=beta - half,
        coefficient_upper=beta + half,
    )
