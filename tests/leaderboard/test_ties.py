"""leaderboard.ties: Davidson's tie model recovers known strengths and tie rates."""

from __future__ import annotations

import numpy as np
import pytest

from leaderboard import ratings, ties
from leaderboard.ratings import PairCounts

RECOVERY_TOL = 0.06  # log-strength units, about 4 standard errors at 200k battles over 6 models
NU_RTOL = 0.05


def simulate_davidson(
    *, strengths: np.ndarray, nu: float, votes: int, rng: np.random.Generator
) -> PairCounts:
    n = strengths.size
    a = rng.integers(0, n, size=votes)
    b = (a + rng.integers(1, n, size=votes)) % n
    half = 0.5 * (strengths[a] - strengths[b])
    weights = np.column_stack([np.exp(half), np.exp(-half), np.full(votes, nu)])
    cumulative = np.cumsum(weights / weights.sum(axis=1, keepdims=True), axis=1)
    draw = rng.random(votes)[:, None]
    outcome = np.array([1.0, 0.0, 0.5])[np.argmax(draw < cumulative, axis=1)]
    return ratings.aggregate_votes(a=a, b=b, outcome=outcome, n_models=n)


def test_davidson_recovers_known_strengths_and_tie_parameter() -> None:
    truth = np.array([-0.9, -0.4, 0.0, 0.2, 0.5, 0.6])
    counts = simulate_davidson(strengths=truth, nu=0.6, votes=200_000, rng=np.random.default_rng(1))
    fit = ties.fit_davidson(counts=counts)
    np.testing.assert_allclose(fit.log_strengths, truth - truth.mean(), atol=RECOVERY_TOL)
    assert fit.nu == pytest.approx(0.6, rel=NU_RTOL)


def test_the_gradient_is_zero_at_the_fit_and_the_loss_higher_elsewhere() -> None:
    counts = simulate_davidson(
        strengths=np.array([0.0, 0.3, 0.8]), nu=1.0, votes=5_000, rng=np.random.default_rng(2)
    )
    fit = ties.fit_davidson(counts=counts)

    def loglik(theta: np.ndarray, nu: float) -> float:
        total = 0.0
        rows = zip(counts.a, counts.b, counts.wins_a, counts.wins_b, counts.ties, strict=True)
        for i, j, wa, wb, t in rows:
            p = ties.davidson_probabilities(log_strengths=theta, nu=nu, a=int(i), b=int(j))
            total += wa * np.log(p[0]) + wb * np.log(p[1]) + t * np.log(p[2])
        return total

    best = loglik(fit.log_strengths, fit.nu)
    rng = np.random.default_rng(3)
    for _ in range(5):
        nudged = fit.log_strengths + rng.normal(0, 0.02, 3)
        assert loglik(nudged, fit.nu) < best + 1e-6
        assert loglik(fit.log_strengths, fit.nu * 1.05) < best + 1e-6


def test_with_ties_independent_of_strength_davidson_keeps_the_gaps_that_half_wins_shrink() -> None:
    rng = np.random.default_rng(4)
    truth = np.linspace(-1.0, 1.0, 8)
    n = truth.size
    votes = 100_000
    a = rng.integers(0, n, size=votes)
    b = (a + rng.integers(1, n, size=votes)) % n
    wins = rng.random(votes) < 1 / (1 + np.exp(truth[b] - truth[a]))
    outcome = np.where(rng.random(votes) < 0.25, 0.5, wins.astype(float))
    counts = ratings.aggregate_votes(a=a, b=b, outcome=outcome, n_models=n)
    half_win = ratings.fit_bradley_terry(counts=counts)
    davidson = ties.fit_davidson(counts=counts).log_strengths
    spread = np.ptp(truth)
    assert np.ptp(half_win) / spread < 0.9, "ties as half a win shrink the gaps"
    assert np.ptp(davidson) / spread == pytest.approx(1.0, abs=0.06)
    assert np.array_equal(np.argsort(half_win), np.argsort(davidson)), "the same order"


def test_a_fit_without_ties_is_refused() -> None:
    counts = PairCounts.from_arrays(
        a=[0], b=[1], wins_a=[5.0], wins_b=[3.0], ties=[0.0], n_models=2
    )
    with pytest.raises(ValueError, match="at least one tie"):
        ties.fit_davidson(counts=counts)
