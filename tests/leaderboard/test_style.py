"""leaderboard.style against truth: known strengths and covariate effects are recovered."""

from __future__ import annotations

import numpy as np
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
