"""leaderboard.ratings against truth: known strengths, calculus, invariances, oracles."""

from __future__ import annotations

import math
import os

import choix
import numpy as np
import pytest
from scipy.stats import norm

from leaderboard import ratings
from leaderboard.ratings import ConvergenceError, PairCounts

RECOVERY_TOL = 0.05  # log-strength units; about 5 standard errors with 200k votes over 8 models
GRADIENT_RTOL = 1e-6  # central differences with step 1e-5 are accurate to about 1e-9 relative
INVARIANCE_TOL = 1e-9  # log-strength units; only rounding separates the two fits
ORACLE_TOL = 0.01  # display points, as promised against choix and arena-rank
INTERVAL_WIDTH_RTOL = (
    0.15  # bootstrap percentiles from 1000 rounds carry a few per cent Monte Carlo noise
)
INTERVAL_CENTRE_TOL = (
    0.15  # fraction of the sandwich width by which the bootstrap midpoint may move
)
BATCHED_REFIT_TOL = 1e-5  # log-strength units; the bootstrap solves to 1e-6 per round


def simulate_votes(
    *, strengths: np.ndarray, votes: int, rng: np.random.Generator, tie_share: float = 0.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Uniform pairs, random sides, Bradley-Terry outcomes and optionally a share of ties."""
    n_models = strengths.size
    a = rng.integers(0, n_models, size=votes)
    b = (a + rng.integers(1, n_models, size=votes)) % n_models
    a_wins = rng.random(votes) < 1.0 / (1.0 + np.exp(strengths[b] - strengths[a]))
    outcome = np.where(rng.random(votes) < tie_share, 0.5, a_wins.astype(float))
    return a, b, outcome


def synthetic_counts(
    *, n_models: int = 8, votes: int = 20_000, seed: int = 0, tie_share: float = 0.2
) -> PairCounts:
    rng = np.random.default_rng(seed)
    strengths = rng.normal(0.0, 0.7, size=n_models)
    a, b, outcome = simulate_votes(strengths=strengths, votes=votes, rng=rng, tie_share=tie_share)
    return ratings.aggregate_votes(a=a, b=b, outcome=outcome, n_models=n_models)


def counts_of(rows: list[tuple[int, int, float, float, float]], n_models: int) -> PairCounts:
    a, b, wins_a, wins_b, ties = zip(*rows, strict=True)
    return PairCounts.from_arrays(
        a=a, b=b, wins_a=wins_a, wins_b=wins_b, ties=ties, n_models=n_models
    )


def test_known_strengths_are_recovered_from_synthetic_votes() -> None:
    rng = np.random.default_rng(42)
    strengths = np.array([-1.2, -0.6, -0.3, 0.0, 0.1, 0.4, 0.7, 0.9])
    a, b, outcome = simulate_votes(strengths=strengths, votes=200_000, rng=rng)
    counts = ratings.aggregate_votes(a=a, b=b, outcome=outcome, n_models=strengths.size)

    theta = ratings.fit_bradley_terry(counts=counts)

    assert np.max(np.abs(theta - (strengths - strengths.mean()))) < RECOVERY_TOL


def test_fitted_log_strengths_have_mean_zero() -> None:
    theta = ratings.fit_bradley_terry(counts=synthetic_counts())

    assert abs(theta.mean()) < INVARIANCE_TOL


def test_analytic_gradient_matches_finite_differences_of_the_loss() -> None:
    counts = synthetic_counts(n_models=6, votes=3_000)
    rng = np.random.default_rng(1)
    theta = rng.normal(size=6)
    weights = rng.uniform(0.5, 2.0, size=counts.a.size)
    step = 1e-5

    def loss(at: np.ndarray) -> float:
        return ratings.bradley_terry_loss(
            counts=counts, log_strengths=at, weights=weights, l2_prior=0.3
        )

    numerical = np.array(
        [(loss(theta + step * unit) - loss(theta - step * unit)) / (2 * step) for unit in np.eye(6)]
    )
    analytic = ratings.bradley_terry_gradient(
        counts=counts, log_strengths=theta, weights=weights, l2_prior=0.3
    )

    assert np.linalg.norm(analytic - numerical) < GRADIENT_RTOL * np.linalg.norm(analytic)


def test_gradient_vanishes_at_the_fitted_strengths() -> None:
    counts = synthetic_counts()
    theta = ratings.fit_bradley_terry(counts=counts, l2_prior=0.0)

    gradient = ratings.bradley_terry_gradient(counts=counts, log_strengths=theta)

    assert np.max(np.abs(gradient)) < 1e-9 * counts.battles.sum()


def test_relabelling_models_relabels_the_ratings() -> None:
    counts = synthetic_counts()
    new_label = np.random.default_rng(3).permutation(counts.n_models)
    relabelled = PairCounts.from_arrays(
        a=new_label[counts.a],
        b=new_label[counts.b],
        wins_a=counts.wins_a,
        wins_b=counts.wins_b,
        ties=counts.ties,
        n_models=counts.n_models,
    )

    original = ratings.fit_bradley_terry(counts=counts)
    renamed = ratings.fit_bradley_terry(counts=relabelled)

    assert np.max(np.abs(renamed[new_label] - original)) < INVARIANCE_TOL


def test_swapping_sides_and_their_wins_leaves_ratings_unchanged() -> None:
    counts = synthetic_counts()
    mirrored = PairCounts.from_arrays(
        a=counts.b,
        b=counts.a,
        wins_a=counts.wins_b,
        wins_b=counts.wins_a,
        ties=counts.ties,
        n_models=counts.n_models,
    )

    assert np.max(
        np.abs(
            ratings.fit_bradley_terry(counts=mirrored) - ratings.fit_bradley_terry(counts=counts)
        )
    ) < (INVARIANCE_TOL)


def test_a_tie_counts_as_half_a_win_for_each_side() -> None:
    counts = synthetic_counts(tie_share=0.4)
    halved = PairCounts.from_arrays(
        a=counts.a,
        b=counts.b,
        wins_a=counts.wins_a + counts.ties / 2,
        wins_b=counts.wins_b + counts.ties / 2,
        ties=np.zeros_like(counts.ties),
        n_models=counts.n_models,
    )

    assert np.max(
        np.abs(ratings.fit_bradley_terry(counts=halved) - ratings.fit_bradley_terry(counts=counts))
    ) < (INVARIANCE_TOL)


def test_ratings_match_choix_on_tie_free_data() -> None:
    rng = np.random.default_rng(7)
    strengths = rng.normal(0.0, 0.8, size=10)
    a, b, outcome = simulate_votes(strengths=strengths, votes=5_000, rng=rng)
    comparisons = [
        (int(i), int(j)) if won else (int(j), int(i))
        for i, j, won in zip(a, b, outcome == 1.0, strict=True)
    ]
    counts = ratings.aggregate_votes(a=a, b=b, outcome=outcome, n_models=10)

    # alpha=0 makes choix return the plain MLE, centred on mean zero like ours.
    expected = choix.ilsr_pairwise(10, comparisons, alpha=0.0, tol=1e-12, max_iter=1_000)
    ours = ratings.fit_bradley_terry(counts=counts, l2_prior=0.0)

    assert np.max(
        np.abs(ratings.to_display(log_strengths=ours) - ratings.to_display(log_strengths=expected))
    ) < (ORACLE_TOL)


def test_the_default_prior_moves_ordinary_ratings_by_less_than_the_oracle_tolerance() -> None:
    counts = synthetic_counts(votes=2_000)

    with_prior = ratings.to_display(log_strengths=ratings.fit_bradley_terry(counts=counts))
    without = ratings.to_display(
        log_strengths=ratings.fit_bradley_terry(counts=counts, l2_prior=0.0)
    )

    assert np.max(np.abs(with_prior - without)) < ORACLE_TOL


def test_ratings_and_sandwich_intervals_match_arena_rank() -> None:
    # arena-rank pins numpy 2.3.3, so it lives in its own venv: `deploy/dev.py test` runs this
    # file there too, with ARENA_REQUIRE_ORACLE=1 so that a missing arena-rank fails, not skips.
    if os.environ.get("ARENA_REQUIRE_ORACLE"):
        import arena_rank  # noqa: F401
        import pandas as pd
    else:
        pytest.importorskip("arena_rank")
        pd = pytest.importorskip("pandas")
    from arena_rank.models.bradley_terry import BradleyTerry
    from arena_rank.utils.data_utils import PairDataset

    rng = np.random.default_rng(11)
    strengths = rng.normal(0.0, 0.6, size=12)
    a, b, outcome = simulate_votes(strengths=strengths, votes=30_000, rng=rng, tie_share=0.2)
    names = np.array([f"model-{i:02d}" for i in range(12)])
    winner = np.where(outcome == 1.0, "model_a", np.where(outcome == 0.0, "model_b", "tie"))
    dataset = PairDataset.from_pandas(
        pd.DataFrame({"model_a": names[a], "model_b": names[b], "winner": winner})
    )
    expected = BradleyTerry(n_competitors=12).compute_ratings_and_cis(dataset, ci_method="sandwich")

    counts = ratings.aggregate_votes(a=a, b=b, outcome=outcome, n_models=12)
    theta = ratings.fit_bradley_terry(counts=counts)
    lower, upper = ratings.sandwich_intervals(counts=counts, log_strengths=theta)
    shown_lower, shown_upper = ratings.intervals_to_display(
        log_strengths=theta, lower=lower, upper=upper
    )

    assert (
        np.max(np.abs(ratings.to_display(log_strengths=theta) - np.asarray(expected["ratings"])))
        < ORACLE_TOL
    )
    assert np.max(np.abs(shown_lower - np.asarray(expected["rating_lower"]))) < ORACLE_TOL
    assert np.max(np.abs(shown_upper - np.asarray(expected["rating_upper"]))) < ORACLE_TOL


def test_sandwich_interval_for_two_models_matches_the_binomial_formula() -> None:
    wins, losses = 70.0, 30.0
    counts = counts_of([(0, 1, wins, losses, 0.0)], n_models=2)
    theta = ratings.fit_bradley_terry(counts=counts, l2_prior=0.0)

    lower, upper = ratings.sandwich_intervals(
        counts=counts, log_strengths=theta, level=0.9, hessian_ridge=0.0
    )

    # The difference d = theta_0 - theta_1 is a logit of a binomial share with variance
    # 1 / (n p (1 - p)); each side carries half of d under the mean-zero gauge.
    share = wins / (wins + losses)
    half_width = norm.ppf(0.95) * math.sqrt(1.0 / ((wins + losses) * share * (1 - share))) / 2
    assert theta[0] == pytest.approx(math.log(share / (1 - share)) / 2, abs=INVARIANCE_TOL)
    assert upper - theta == pytest.approx([half_width, half_width], rel=1e-9)
    assert theta - lower == pytest.approx([half_width, half_width], rel=1e-9)


def test_bootstrap_and_sandwich_intervals_agree_on_large_data() -> None:
    counts = synthetic_counts(n_models=10, votes=200_000, seed=5)
    theta = ratings.fit_bradley_terry(counts=counts)

    sandwich_lower, sandwich_upper = ratings.sandwich_intervals(counts=counts, log_strengths=theta)
    result = ratings.bootstrap(
        counts=counts, rounds=1000, rng=np.random.default_rng(0), log_strengths=theta
    )
    boot_lower, boot_upper, samples = result.lower, result.upper, result.samples

    sandwich_width = sandwich_upper - sandwich_lower
    assert samples.shape == (1000, 10)
    assert np.max(np.abs((boot_upper - boot_lower) / sandwich_width - 1.0)) < INTERVAL_WIDTH_RTOL
    centre_shift = (boot_upper + boot_lower - sandwich_upper - sandwich_lower) / 2
    assert np.max(np.abs(centre_shift) / sandwich_width) < INTERVAL_CENTRE_TOL


def test_batched_bootstrap_refits_equal_separate_fits_of_the_same_resamples() -> None:
    counts = synthetic_counts(n_models=6, votes=3_000, seed=9)
    assert np.all(counts.battles > 0)  # every row is then a resampled cell, in the order below

    result = ratings.bootstrap(counts=counts, rounds=20, rng=np.random.default_rng(4))

    draws = result.resamples.draws
    cells = np.concatenate([counts.wins_a, counts.wins_b, counts.ties])
    assert np.all(draws.sum(axis=1) == cells.sum())
    for sample, draw in zip(result.samples, draws, strict=True):
        wins_a, wins_b, ties = np.split(draw.astype(float), 3)
        resampled = PairCounts.from_arrays(
            a=counts.a,
            b=counts.b,
            wins_a=wins_a,
            wins_b=wins_b,
            ties=ties,
            n_models=counts.n_models,
        )
        assert (
            np.max(np.abs(sample - ratings.fit_bradley_terry(counts=resampled))) < BATCHED_REFIT_TOL
        )


def test_bootstrap_is_reproducible_with_the_same_seed() -> None:
    counts = synthetic_counts(votes=2_000)

    first = ratings.bootstrap(counts=counts, rounds=50, rng=np.random.default_rng(8))
    second = ratings.bootstrap(counts=counts, rounds=50, rng=np.random.default_rng(8))

    assert np.array_equal(first.samples, second.samples)


def test_bootstrap_survives_resamples_where_a_model_wins_everything() -> None:
    # Model 2 has three battles, so many resamples leave it undefeated or without a loss to model 0.
    counts = counts_of(
        [(0, 1, 30.0, 25.0, 5.0), (1, 2, 1.0, 1.0, 0.0), (0, 2, 0.0, 1.0, 0.0)], n_models=3
    )

    result = ratings.bootstrap(counts=counts, rounds=200, rng=np.random.default_rng(2))
    lower, upper, samples = result.lower, result.upper, result.samples

    assert np.all(np.isfinite(samples[:, :2]))
    assert np.all(lower <= upper)


def test_a_model_that_won_every_battle_gets_a_finite_rating() -> None:
    counts = counts_of(
        [(0, 1, 12.0, 0.0, 0.0), (0, 2, 9.0, 0.0, 0.0), (1, 2, 5.0, 5.0, 2.0)], n_models=3
    )

    theta = ratings.fit_bradley_terry(counts=counts)

    assert np.all(np.isfinite(theta))
    assert theta[0] > theta[1] + 3.0  # far ahead, as the data say, yet finite


def test_without_a_prior_an_undefeated_model_raises_convergence_error() -> None:
    counts = counts_of([(0, 1, 12.0, 0.0, 0.0), (1, 2, 5.0, 5.0, 2.0)], n_models=3)

    with pytest.raises(ConvergenceError, match="won or lost all"):
        ratings.fit_bradley_terry(counts=counts, l2_prior=0.0, max_iter=30)


def test_disconnected_comparison_graph_is_detected_and_each_part_centred() -> None:
    counts = counts_of(
        [(0, 1, 10.0, 5.0, 1.0), (2, 3, 2.0, 8.0, 0.0), (3, 4, 6.0, 6.0, 0.0)], n_models=5
    )

    labels = ratings.components(counts)
    theta = ratings.fit_bradley_terry(counts=counts, l2_prior=0.0)

    assert labels[0] == labels[1]
    assert labels[2] == labels[3] == labels[4]
    assert labels[0] != labels[2]
    assert abs(theta[:2].sum()) < INVARIANCE_TOL
    assert abs(theta[2:].sum()) < INVARIANCE_TOL


def test_models_without_battles_are_left_unrated() -> None:
    counts = counts_of(
        [(0, 2, 10.0, 5.0, 1.0), (2, 3, 2.0, 8.0, 0.0), (0, 3, 4.0, 4.0, 4.0)], n_models=5
    )

    theta = ratings.fit_bradley_terry(counts=counts)
    lower, upper = ratings.sandwich_intervals(counts=counts, log_strengths=theta)

    assert np.isnan(theta[[1, 4]]).all()
    assert np.isfinite(theta[[0, 2, 3]]).all()
    assert np.isnan(lower[[1, 4]]).all()
    assert np.isfinite(upper[[0, 2, 3]]).all()


def test_rank_ub_counts_models_whose_lower_bound_beats_this_upper_bound() -> None:
    lower = np.array([1100.0, 1090.0, 1040.0, 1000.0, 1060.0])
    upper = np.array([1120.0, 1130.0, 1095.0, 1050.0, 1080.0])

    # Model 2's upper bound 1095 sits below model 0's lower bound 1100 only; model 3's 1050 is
    # below models 0, 1 and 4; model 4's 1080 is below 0 and 1.
    assert ratings.rank_ub(lower=lower, upper=upper).tolist() == [1, 1, 2, 4, 3]


def test_display_ratings_are_centred_on_init_with_400_points_per_factor_of_ten() -> None:
    theta = np.array([0.0, math.log(10.0), 2 * math.log(10.0)])

    shown = ratings.to_display(log_strengths=theta, init=1500.0)

    assert shown.tolist() == pytest.approx([1100.0, 1500.0, 1900.0])


def test_display_ratings_can_be_anchored_to_a_chosen_model() -> None:
    theta = np.array([-0.5, 0.2, 0.3])

    shown = ratings.to_display(
        log_strengths=theta, scale=200.0, base=math.e, anchor=2, anchor_rating=1114.0
    )

    assert shown.tolist() == pytest.approx([954.0, 1094.0, 1114.0])


def test_display_intervals_shift_with_the_ratings() -> None:
    theta = np.array([-0.5, 0.5])

    lower, upper = ratings.intervals_to_display(
        log_strengths=theta, lower=theta - 0.1, upper=theta + 0.1, anchor=0
    )
    shown = ratings.to_display(log_strengths=theta, anchor=0)

    points = 0.1 * 400.0 / math.log(10.0)
    assert (shown - lower).tolist() == pytest.approx([points, points])
    assert (upper - shown).tolist() == pytest.approx([points, points])


def test_online_elo_gives_the_winner_half_of_k_from_equal_ratings() -> None:
    shown = ratings.online_elo(a=[0, 1], b=[1, 2], outcome=[1.0, 0.5], n_models=3, k=4.0)

    assert shown[0] == pytest.approx(1002.0)
    assert 998.0 < shown[1] < 1000.0  # a tie moves the lower-rated side up...
    assert shown[2] < 1000.0  # ...and the higher-rated side down
    assert shown.sum() == pytest.approx(3000.0)


def test_win_rate_matrix_counts_ties_as_half_and_is_nan_where_models_never_met() -> None:
    counts = counts_of([(0, 1, 6.0, 2.0, 2.0), (1, 0, 1.0, 1.0, 0.0)], n_models=3)

    win_rate = ratings.win_rate_matrix(counts)
    battles = ratings.battle_count_matrix(counts)

    assert battles[0, 1] == battles[1, 0] == 12.0
    assert win_rate[0, 1] == pytest.approx(8.0 / 12.0)
    assert win_rate[1, 0] == pytest.approx(4.0 / 12.0)
    assert np.isnan(win_rate[0, 2])
    assert np.isnan(win_rate[2, 2])


def test_predicted_win_matrix_is_a_logistic_of_the_strength_gap() -> None:
    predicted = ratings.predicted_win_matrix(np.array([0.0, math.log(3.0)]))

    assert predicted[1, 0] == pytest.approx(0.75)
    assert predicted + predicted.T == pytest.approx(np.ones((2, 2)))


def test_uniform_weights_leave_ratings_unchanged() -> None:
    counts = synthetic_counts()
    weights = np.full(counts.a.size, 3.0)

    weighted = ratings.fit_bradley_terry(counts=counts, weights=weights, l2_prior=0.0)

    assert (
        np.max(np.abs(weighted - ratings.fit_bradley_terry(counts=counts, l2_prior=0.0)))
        < INVARIANCE_TOL
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"b": [0, 2]}, "battle itself"),
        ({"a": [0, 5]}, "model indices"),
        ({"a": [-1, 1]}, "model indices"),
        ({"wins_a": [1.0, -2.0]}, "non-negative"),
        ({"ties": [0.0, np.nan]}, "finite"),
        ({"wins_b": [1.0]}, "same length"),
        ({"a": [0.0, 1.5]}, "integer model indices"),
        ({"n_models": 0}, "positive integer"),
    ],
)
def test_pair_counts_reject_invalid_arrays_with_a_clear_message(
    change: dict[str, object], message: str
) -> None:
    arrays: dict[str, object] = {
        "a": [0, 1],
        "b": [1, 2],
        "wins_a": [1.0, 2.0],
        "wins_b": [0.0, 1.0],
        "ties": [0.0, 0.0],
    }
    arrays["n_models"] = 3
    arrays.update(change)

    with pytest.raises(ValueError, match=message):
        PairCounts.from_arrays(**arrays)  # type: ignore[arg-type]


def test_bootstrap_rejects_fractional_counts() -> None:
    counts = counts_of([(0, 1, 1.5, 1.0, 0.0)], n_models=2)

    with pytest.raises(ValueError, match="whole-number"):
        ratings.bootstrap(counts=counts, rounds=10, rng=np.random.default_rng(0))


def test_weights_of_the_wrong_length_are_rejected() -> None:
    counts = counts_of([(0, 1, 1.0, 1.0, 0.0)], n_models=2)

    with pytest.raises(ValueError, match="one entry per row"):
        ratings.fit_bradley_terry(counts=counts, weights=np.ones(3))


def test_rank_ub_rejects_bounds_in_the_wrong_order() -> None:
    with pytest.raises(ValueError, match="at most its upper"):
        ratings.rank_ub(lower=np.array([2.0, 0.0]), upper=np.array([1.0, 1.0]))
