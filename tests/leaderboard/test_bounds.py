"""leaderboard.bounds against truth: what the data cannot bound, anchored and joint intervals."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit, logit

from leaderboard import bounds, ratings
from leaderboard.ratings import ConvergenceError, PairCounts

SAME_TOL = 1e-9  # display points: only rounding separates two fits of the same core
COVERAGE_FLOOR = 0.93  # the floor for intervals that must hold jointly
BOUND_TOL = 1e-7  # log-strength units; brentq solves to 1e-10


def simulate(
    *, strengths: np.ndarray, votes: int, rng: np.random.Generator, tie_share: float = 0.1
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = strengths.size
    a = rng.integers(0, n, size=votes)
    b = (a + rng.integers(1, n, size=votes)) % n
    wins = rng.random(votes) < expit(strengths[a] - strengths[b])
    return a, b, np.where(rng.random(votes) < tie_share, 0.5, wins.astype(float))


def counts_of(rows: list[tuple[int, int, float, float, float]], n_models: int) -> PairCounts:
    a, b, wins_a, wins_b, ties = zip(*rows, strict=True)
    return PairCounts.from_arrays(
        a=a, b=b, wins_a=wins_a, wins_b=wins_b, ties=ties, n_models=n_models
    )


def shown(counts: PairCounts, **options: object) -> bounds.Board:
    evidence = bounds.evidence(counts)
    theta = ratings.fit_bradley_terry(counts=bounds.core_counts(counts, evidence.core))
    return bounds.board(counts=counts, evidence=evidence, log_strengths=theta, **options)  # type: ignore[arg-type]


def with_newcomer(counts: PairCounts, *, losses: int, rng: np.random.Generator) -> PairCounts:
    """The same counts plus one more model that lost ``losses`` battles to random opponents."""
    opponents = rng.integers(0, counts.n_models, size=losses)
    per = np.bincount(opponents, minlength=counts.n_models)
    met = np.flatnonzero(per)
    return PairCounts.from_arrays(
        a=np.concatenate([counts.a, met]),
        b=np.concatenate([counts.b, np.full(met.size, counts.n_models)]),
        wins_a=np.concatenate([counts.wins_a, per[met].astype(float)]),
        wins_b=np.concatenate([counts.wins_b, np.zeros(met.size)]),
        ties=np.concatenate([counts.ties, np.zeros(met.size)]),
        n_models=counts.n_models + 1,
    )


def board_counts(seed: int = 0, n: int = 8, votes: int = 5_000) -> PairCounts:
    rng = np.random.default_rng(seed)
    a, b, outcome = simulate(strengths=rng.normal(0, 0.6, n), votes=votes, rng=rng)
    return ratings.aggregate_votes(a=a, b=b, outcome=outcome, n_models=n)


def test_a_model_that_never_wins_is_open_below_and_moves_no_other_model() -> None:
    before = board_counts()
    after = with_newcomer(before, losses=40, rng=np.random.default_rng(1))
    old, new = shown(before), shown(after)
    assert new.status[-1] == bounds.BELOW
    assert np.isnan(new.rating[-1]) and new.lower[-1] == -np.inf and np.isfinite(new.upper[-1])
    np.testing.assert_allclose(new.rating[:-1], old.rating, rtol=0, atol=SAME_TOL)
    np.testing.assert_allclose(new.lower[:-1], old.lower, rtol=0, atol=SAME_TOL)


def test_a_model_nobody_beat_is_open_above() -> None:
    counts = counts_of(
        [(0, 1, 30, 20, 0), (1, 2, 25, 25, 0), (0, 2, 20, 30, 0), (3, 0, 12, 0, 0)], 4
    )
    board = shown(counts)
    assert board.status[3] == bounds.ABOVE
    assert board.upper[3] == np.inf and np.isfinite(board.lower[3])
    assert board.rank[3] == 1


def test_the_one_sided_bound_is_where_so_clean_a_record_has_a_two_and_a_half_per_cent_chance() -> (
    None
):
    # Model 2 lost all 30 battles against model 0; the core {0, 1} is centred, so its bound u
    # solves (1 - expit(u - theta_0)) ** 30 = 0.025 in log-strength units.
    counts = counts_of([(0, 1, 40, 40, 0), (0, 2, 30, 0, 0)], 3)
    evidence = bounds.evidence(counts)
    theta = ratings.fit_bradley_terry(counts=bounds.core_counts(counts, evidence.core))
    lower, upper = bounds.one_sided_bounds(counts=counts, evidence=evidence, log_strengths=theta)
    expected = theta[0] + logit(1.0 - 0.025 ** (1 / 30))
    assert lower[2] == -np.inf
    assert upper[2] == pytest.approx(expected, abs=BOUND_TOL)


def test_only_ties_give_an_open_interval_never_a_zero_width_one() -> None:
    board = shown(counts_of([(0, 1, 0, 0, 100)], 2))
    assert list(board.status) == [bounds.UNBOUNDED, bounds.UNBOUNDED]
    assert np.all(board.lower == -np.inf) and np.all(board.upper == np.inf)


def test_a_model_with_only_ties_inside_a_decided_group_is_open_both_ways() -> None:
    counts = counts_of(
        [(0, 1, 30, 20, 0), (1, 2, 20, 25, 0), (0, 2, 22, 21, 0), (2, 3, 0, 0, 15)], 4
    )
    board = shown(counts)
    assert board.status[3] == bounds.UNBOUNDED
    assert all(board.status[:3] == bounds.BOUNDED)


@pytest.mark.parametrize("seed", range(20))
def test_no_interval_has_zero_width_on_thin_or_odd_boards(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 7))
    rows: list[tuple[int, int, float, float, float]] = []
    for i in range(n):
        for j in range(i + 1, n):
            if rng.random() < 0.6:
                wa, wb, t = (float(v) for v in rng.integers(0, 4, 3) * (rng.random(3) < 0.5))
                rows.append((i, j, wa, wb, t))
    rows = [row for row in rows if sum(row[2:]) > 0] or [(0, 1, 0.0, 0.0, 3.0)]
    board = shown(counts_of(rows, n))
    played = np.isfinite(board.lower) | np.isfinite(board.upper) | ~np.isnan(board.rating)
    played |= board.status != bounds.BOUNDED
    assert np.all(board.upper[played] > board.lower[played])


def test_rank_ub_compares_only_models_of_the_same_group() -> None:
    # Group {0, 1}: 0 far above 1. Group {2, 3}: close. Model 2 must not be ranked below 0.
    counts = counts_of([(0, 1, 900, 100, 0), (2, 3, 50, 50, 0)], 4)
    board = shown(counts)
    assert board.group[0] == board.group[1] != board.group[2] == board.group[3]
    assert board.rank.tolist() == [1, 2, 1, 1]


def test_rank_ub_within_groups_accepts_open_bounds() -> None:
    ranks = bounds.rank_ub_within_groups(
        lower=np.array([10.0, -np.inf, 0.0]),
        upper=np.array([20.0, 5.0, np.inf]),
        group=np.array([0, 0, 0]),
    )
    assert ranks.tolist() == [1, 2, 1]


def test_the_anchor_shows_no_interval_and_sits_at_its_rating() -> None:
    board = shown(board_counts(), anchor=2, anchor_rating=1200.0)
    assert board.status[2] == bounds.ANCHOR
    assert board.rating[2] == board.lower[2] == board.upper[2] == 1200.0


def test_anchored_sandwich_half_widths_are_the_contrasts_standard_errors() -> None:
    counts = board_counts(seed=3)
    theta = ratings.fit_bradley_terry(counts=counts)
    covariance = bounds.sandwich_covariance(counts=counts, log_strengths=theta)
    half = bounds.relative_half_widths(covariance=covariance, anchor=0)
    contrast = np.zeros(counts.n_models)
    contrast[[0, 4]] = [-1.0, 1.0]
    expected = 1.959963984540054 * np.sqrt(contrast @ covariance @ contrast)
    assert half[4] == pytest.approx(expected, rel=1e-12)
    assert half[0] == 0.0


def test_the_mean_gauge_sandwich_covariance_matches_ratings_sandwich_intervals() -> None:
    counts = board_counts(seed=4)
    theta = ratings.fit_bradley_terry(counts=counts)
    lower, upper = ratings.sandwich_intervals(counts=counts, log_strengths=theta)
    covariance = bounds.sandwich_covariance(counts=counts, log_strengths=theta)
    half = bounds.relative_half_widths(covariance=covariance, anchor=None)
    np.testing.assert_allclose(half, (upper - lower) / 2, rtol=1e-9)


def test_anchored_bootstrap_bounds_are_percentiles_of_each_rounds_difference() -> None:
    rng = np.random.default_rng(5)
    samples = rng.normal(size=(400, 3))
    theta = np.zeros(3)
    lower, upper = bounds.bootstrap_bounds(samples=samples, log_strengths=theta, anchor=1)
    difference = samples[:, 2] - samples[:, 1]
    assert lower[2] == pytest.approx(np.quantile(difference, 0.025))
    assert upper[2] == pytest.approx(np.quantile(difference, 0.975))
    assert np.isnan(lower[1]) and np.isnan(upper[1])


def test_family_wise_bootstrap_is_studentised_by_the_given_scale_at_an_order_statistic() -> None:
    rng = np.random.default_rng(6)
    rounds, theta = 199, np.array([0.3, -0.1, -0.2])
    scale = np.array([0.5, 1.0, 2.0])
    samples = theta + rng.normal(size=(rounds, 3)) * scale
    lower, upper = bounds.bootstrap_bounds(
        samples=samples, log_strengths=theta, anchor=None, simultaneous=True, scale=scale
    )
    worst = np.sort(np.max(np.abs(samples - theta) / scale, axis=1))
    c = worst[int(np.ceil(0.95 * (rounds + 1))) - 1]  # the 190th of 199: level exactly 0.95
    np.testing.assert_allclose(lower, theta - c * scale, rtol=1e-12)
    np.testing.assert_allclose(upper, theta + c * scale, rtol=1e-12)
    # Without a scale each model's own bootstrap standard deviation studentises it.
    own_lower, _ = bounds.bootstrap_bounds(
        samples=samples, log_strengths=theta, anchor=None, simultaneous=True
    )
    assert np.all(own_lower < theta) and not np.allclose(own_lower, lower)


def test_anchored_intervals_cover_the_truth_with_a_thinly_voted_anchor() -> None:
    # Without ties, so that the truth is what the model estimates (ties counted as half a win
    # shrink gaps when they occur independently of strength; see leaderboard.ties).
    rng = np.random.default_rng(11)
    truth = np.array([0.0, 0.4, -0.3, 0.8, -0.6, 0.2])
    covered = total = 0
    for _ in range(400):
        a, b, outcome = simulate(strengths=truth, votes=3_000, rng=rng, tie_share=0.0)
        # The anchor (model 0) takes part in only about one battle in ten.
        keep = ((a != 0) & (b != 0)) | (rng.random(a.size) < 0.3)
        counts = ratings.aggregate_votes(a=a[keep], b=b[keep], outcome=outcome[keep], n_models=6)
        board = shown(counts, anchor=0, anchor_rating=0.0)
        relative = (truth - truth[0]) * bounds.POINTS_PER_LOG
        inside = (board.lower[1:] <= relative[1:]) & (relative[1:] <= board.upper[1:])
        covered += int(inside.sum())
        total += inside.size
    assert covered / total >= COVERAGE_FLOOR


def test_family_wise_sandwich_intervals_hold_jointly() -> None:
    rng = np.random.default_rng(12)
    truth = rng.normal(0, 0.5, 20)
    centred = (truth - truth.mean()) * bounds.POINTS_PER_LOG
    joint = 0
    boards = 120
    for _ in range(boards):
        a, b, outcome = simulate(strengths=truth, votes=5_000, rng=rng, tie_share=0.0)
        board = shown(
            ratings.aggregate_votes(a=a, b=b, outcome=outcome, n_models=20), simultaneous=True
        )
        rating_offset = 1000.0
        joint += bool(
            np.all(
                (board.lower - rating_offset <= centred) & (centred <= board.upper - rating_offset)
            )
        )
    assert joint / boards >= COVERAGE_FLOOR


def test_rank_sets_contain_the_true_ranks_when_every_interval_covers() -> None:
    lower = np.array([10.0, 5.0, -3.0, -4.0])
    upper = np.array([20.0, 12.0, 1.0, 6.0])
    best, worst = bounds.rank_sets(lower=lower, upper=upper, group=np.zeros(4, dtype=int))
    assert best.tolist() == [1, 1, 3, 2]
    assert worst.tolist() == [2, 3, 4, 4]


def test_provisional_needs_both_a_narrow_interval_and_enough_votes() -> None:
    flags = bounds.provisional(
        lower=np.array([990.0, 990.0, 900.0, -np.inf]),
        upper=np.array([1010.0, 1010.0, 1100.0, 1000.0]),
        votes=np.array([500, 50, 5000, 5000]),
        max_half_width=25.0,
        min_votes=100,
    )
    assert flags.tolist() == [False, True, True, True]


def test_without_a_prior_a_model_that_never_wins_raises_convergence_error() -> None:
    counts = with_newcomer(board_counts(), losses=40, rng=np.random.default_rng(2))
    with pytest.raises(ConvergenceError):
        ratings.fit_bradley_terry(counts=counts, l2_prior=0.0)
