"""leaderboard.style against truth: known strengths and covariate effects are recovered."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit

from leaderboard import ratings, style

RECOVERY_TOL = 0.06  # logits: about 4 standard errors at 100k votes


def simulate(
    *,
    strengths: np.ndarray,
    beta: np.ndarray,
    votes: int,
    rng: np.random.Generator,
    resolution_by_model: np.ndarray,
) -> style.StyledCounts:
    n = strengths.size
    left = rng.integers(0, n, size=votes)
    right = (left + rng.integers(1, n, size=votes)) % n
    # Each model mostly renders at its own size, sometimes at another: resolution varies
    # within a model, as it does when prompts ask for different sizes.
    sizes = np.array([384, 768, 1536])
    pick_l = np.where(rng.random(votes) < 0.7, resolution_by_model[left], rng.integers(0, 3, votes))
    pick_r = np.where(
        rng.random(votes) < 0.7, resolution_by_model[right], rng.integers(0, 3, votes)
    )
    seconds_l, seconds_r = rng.uniform(0.5, 12, votes), rng.uniform(0.5, 12, votes)
    x_l = style.image_covariates(
        width=sizes[pick_l], height=sizes[pick_l], seconds=seconds_l, left=True
    )
    x_r = style.image_covariates(
        width=sizes[pick_r], height=sizes[pick_r], seconds=seconds_r, left=False
    )
    p = expit(strengths[left] - strengths[right] + (x_l - x_r) @ beta)
    outcome = (rng.random(votes) < p).astype(float)
    return style.aggregate_styled_votes(
        left=left, right=right, outcome=outcome, features_left=x_l, features_right=x_r, n_models=n
    )


def test_known_strengths_and_style_effects_are_recovered() -> None:
    rng = np.random.default_rng(0)
    strengths = np.array([-0.5, -0.1, 0.0, 0.2, 0.4])
    beta = np.array([0.4, 0.0, 0.0, -0.3, 0.5, 0.0, -0.2])  # side, -, -, small, large, -, slow
    counts = simulate(
        strengths=strengths,
        beta=beta,
        votes=100_000,
        rng=rng,
        resolution_by_model=np.array([2, 0, 1, 0, 2]),
    )
    fit = style.fit_style_controlled(counts=counts)
    np.testing.assert_allclose(fit.log_strengths, strengths - strengths.mean(), atol=RECOVERY_TOL)
    used = [0, 3, 4, 5, 6]  # aspect never varies in this simulation (all square)
    np.testing.assert_allclose(fit.coefficients[used], beta[used], atol=RECOVERY_TOL)
    inside = (fit.coefficient_lower[used] <= beta[used]) & (
        beta[used] <= fit.coefficient_upper[used]
    )
    assert inside.sum() >= len(used) - 1


def test_without_control_resolution_moves_models_and_with_it_they_return() -> None:
    rng = np.random.default_rng(1)
    strengths = np.zeros(4)
    beta = np.array([0.0, 0.0, 0.0, -0.6, 0.6, 0.0, 0.0])
    counts = simulate(
        strengths=strengths,
        beta=beta,
        votes=60_000,
        rng=rng,
        resolution_by_model=np.array([2, 2, 0, 0]),
    )
    plain = ratings.PairCounts.from_arrays(
        a=counts.left,
        b=counts.right,
        wins_a=counts.wins_left,
        wins_b=counts.wins_right,
        ties=counts.ties,
        n_models=4,
    )
    raw = ratings.fit_bradley_terry(counts=plain)
    controlled = style.fit_style_controlled(counts=counts).log_strengths
    assert raw[0] - raw[2] > 0.3, "large renders look like a better model"
    assert abs(controlled[0] - controlled[2]) < RECOVERY_TOL


def dense_covariates(
    *, width: np.ndarray, height: np.ndarray, seconds: np.ndarray, left: bool
) -> np.ndarray:
    """image_covariates as first written, column by column: the reference for the class table."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = width / height
    size = np.searchsorted(style.RESOLUTION_EDGES, width * height, side="right")
    bucket = np.searchsorted(style.TIME_EDGES, seconds, side="right")
    return np.column_stack(
        [
            np.full(width.shape, 1.0 if left else 0.0),
            ratio < 0.9,
            ratio > 1.1,
            size == 0,
            size == 2,
            bucket == 1,
            bucket == 2,
        ]
    ).astype(float)


def dense_fit(counts: style.StyledCounts, l2_prior: float = 1e-4) -> style.StyleFit:
    """fit_style_controlled as first written, on the full (rows x (models + covariates)) design:
    the reference for the bincount fit."""
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
    gauge = np.zeros((m + k, m + k))
    gauge[:m, :m] = 1.0 / m
    ridge = l2_prior * np.eye(m + k)
    params = np.zeros(m + k)
    for _ in range(100):
        p = expit(design @ params)
        gradient = design.T @ (battles * p - score) + l2_prior * params
        hessian = (design.T * (battles * p * (1 - p))) @ design + ridge + gauge
        step = np.linalg.solve(hessian, gradient)
        params -= step
        if np.max(np.abs(step)) < 1e-10:
            break
    params[:m] -= params[:m].mean()
    p = expit(design @ params)
    residual_sq = (
        counts.wins_left * (1 - p) ** 2 + counts.wins_right * p**2 + counts.ties * (0.5 - p) ** 2
    )
    bread = (design.T * (battles * p * (1 - p))) @ design + ridge + gauge
    meat = (design.T * residual_sq) @ design
    inverse = np.linalg.inv(bread)
    half = 1.959963984540054 * np.sqrt(np.diag(inverse @ meat @ inverse)[m:])
    theta = np.full(n, np.nan)
    theta[models] = params[:m]
    return style.StyleFit(
        log_strengths=theta,
        coefficients=params[m:],
        coefficient_lower=params[m:] - half,
        coefficient_upper=params[m:] + half,
    )


def image_votes(rng: np.random.Generator, votes: int, n: int) -> tuple[np.ndarray, ...]:
    """Votes with images of every aspect, size and time class, edges, zeros and NaN included."""
    left = rng.integers(0, n, size=votes)
    right = (left + rng.integers(1, n, size=votes)) % n
    outcome = rng.choice([0.0, 0.5, 1.0], size=votes, p=[0.4, 0.2, 0.4])
    sides = []
    for _ in range(2):
        width = rng.choice([0.0, 384.0, 460.8, 512.0, 563.2, 1024.0, 1536.0, np.nan], size=votes)
        height = rng.choice([0.0, 512.0, 1024.0], size=votes)
        seconds = rng.choice([0.0, 1.0, 2.0, 5.0, 8.0, 20.0, np.nan], size=votes)
        sides.append((width, height, seconds))
    return left, right, outcome, *sides[0], *sides[1]


def test_image_classes_give_the_covariates_column_by_column() -> None:
    _, _, _, width, height, seconds, *_ = image_votes(np.random.default_rng(2), 5000, 3)
    for left in (True, False):
        np.testing.assert_array_equal(
            style.image_covariates(width=width, height=height, seconds=seconds, left=left),
            dense_covariates(width=width, height=height, seconds=seconds, left=left),
        )


def test_votes_counted_by_image_class_give_the_rows_of_the_float_aggregation() -> None:
    rng = np.random.default_rng(3)
    # 6 models count into a dense table; 400 models with few votes through np.unique.
    for n, votes in ((6, 20_000), (400, 3_000)):
        left, right, outcome, wl, hl, sl, wr, hr, sr = image_votes(rng, votes, n)
        by_class = style.aggregate_image_votes(
            left=left,
            right=right,
            outcome=outcome,
            classes_left=style.image_classes(width=wl, height=hl, seconds=sl),
            classes_right=style.image_classes(width=wr, height=hr, seconds=sr),
            n_models=n,
        )
        by_rows = style.aggregate_styled_votes(
            left=left,
            right=right,
            outcome=outcome,
            features_left=dense_covariates(width=wl, height=hl, seconds=sl, left=True),
            features_right=dense_covariates(width=wr, height=hr, seconds=sr, left=False),
            n_models=n,
        )
        for name in ("left", "right", "features", "wins_left", "wins_right", "ties"):
            np.testing.assert_array_equal(getattr(by_class, name), getattr(by_rows, name))
            assert getattr(by_class, name).dtype == getattr(by_rows, name).dtype


def test_the_bincount_fit_gives_the_dense_design_fit() -> None:
    rng = np.random.default_rng(4)
    left, right, outcome, wl, hl, sl, wr, hr, sr = image_votes(rng, 30_000, 8)
    counts = style.aggregate_image_votes(
        left=left,
        right=right,
        outcome=outcome,
        classes_left=style.image_classes(width=wl, height=hl, seconds=sl),
        classes_right=style.image_classes(width=wr, height=hr, seconds=sr),
        n_models=8,
    )
    fast, dense = style.fit_style_controlled(counts=counts), dense_fit(counts)
    for name in ("log_strengths", "coefficients", "coefficient_lower", "coefficient_upper"):
        np.testing.assert_allclose(getattr(fast, name), getattr(dense, name), rtol=0, atol=1e-9)


def test_bad_image_votes_are_refused() -> None:
    good: dict[str, list[float]] = {
        "left": [0],
        "right": [1],
        "outcome": [1.0],
        "classes_left": [0],
        "classes_right": [26],
    }
    style.aggregate_image_votes(**good, n_models=2)
    changes: list[tuple[dict[str, list[float]], str]] = [
        ({"right": [0]}, "itself"),
        ({"right": [2]}, "model indices"),
        ({"outcome": [0.7]}, "outcome"),
        ({"classes_left": [27]}, "image classes"),
        ({"classes_right": [-1]}, "image classes"),
        ({"outcome": [1.0, 0.0]}, "one length"),
    ]
    for change, message in changes:
        with pytest.raises(ValueError, match=message):
            style.aggregate_image_votes(**{**good, **change}, n_models=2)
