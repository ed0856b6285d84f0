"""Extending bootstrap resamples to grown counts: the result must be an exact multinomial draw."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy.stats import chi2

from leaderboard import ratings
from leaderboard.ratings import PairCounts, resampling

ROUNDS = 40_000
# Chi-square tests with fixed seeds are deterministic; a correct sampler passes with p far above
# this, a sampler with the wrong law (see the power check) falls far below it.
P_VALUE_FLOOR = 1e-3
INTERVAL_WIDTH_RTOL = 0.1  # two 2000-round bootstraps of the same counts, Monte Carlo noise only


def multinomial_pmf(counts: tuple[int, ...], probabilities: np.ndarray) -> float:
    total = sum(counts)
    coefficient = math.factorial(total)
    for count in counts:
        coefficient //= math.factorial(count)
    return coefficient * float(np.prod(probabilities ** np.array(counts)))


def chi_square_p_value(draws: np.ndarray, cells: np.ndarray) -> float:
    """Goodness of fit of whole rounds (joint outcomes) to Multinomial(sum, cells / sum); outcomes
    expected fewer than 5 times are pooled into one class."""
    total = int(cells.sum())
    probabilities = cells / total
    support = [i for i in range(cells.size) if cells[i] > 0]
    assert np.all(draws[:, cells == 0] == 0)
    observed: dict[tuple[int, ...], int] = {}
    for row in draws[:, support]:
        key = tuple(int(v) for v in row)
        observed[key] = observed.get(key, 0) + 1
    outcomes = [
        combo
        for combo in itertools.product(range(total + 1), repeat=len(support))
        if sum(combo) == total
    ]
    assert set(observed) <= set(outcomes), "a round does not sum to the total"
    expected = {o: draws.shape[0] * multinomial_pmf(o, probabilities[support]) for o in outcomes}
    statistic, classes, pooled_observed, pooled_expected = 0.0, 0, 0, 0.0
    for outcome, expect in expected.items():
        if expect < 5:
            pooled_observed += observed.get(outcome, 0)
            pooled_expected += expect
            continue
        statistic += (observed.get(outcome, 0) - expect) ** 2 / expect
        classes += 1
    if pooled_expected > 0:
        statistic += (pooled_observed - pooled_expected) ** 2 / pooled_expected
        classes += 1
    return float(chi2.sf(statistic, classes - 1))


def extend(draws: np.ndarray, old: list[int], new: list[int], seed: int) -> np.ndarray:
    return resampling._extend_draws(
        draws,
        old_cells=np.array(old, dtype=np.int64),
        new_cells=np.array(new, dtype=np.int64),
        rng=np.random.default_rng(seed),
    )


def fresh(cells: list[int], seed: int) -> np.ndarray:
    return resampling._fresh_draws(
        np.array(cells, dtype=np.int64), rounds=ROUNDS, rng=np.random.default_rng(seed)
    )


def test_an_extended_round_is_an_exact_multinomial_draw_of_the_new_counts() -> None:
    old, new = [3, 1, 2, 0], [4, 1, 3, 2]  # one cell new, one unchanged

    extended = extend(fresh(old, seed=1), old, new, seed=2)

    assert np.all(extended.sum(axis=1) == sum(new))
    assert chi_square_p_value(extended, np.array(new)) > P_VALUE_FLOOR


def test_a_chain_of_extensions_stays_exact() -> None:
    steps = [[2, 1, 0, 1], [3, 1, 1, 1], [3, 2, 1, 2], [4, 2, 3, 3]]

    draws = fresh(steps[0], seed=3)
    for seed, (old, new) in enumerate(itertools.pairwise(steps), start=4):
        draws = extend(draws, old, new, seed=seed)

    assert chi_square_p_value(draws, np.array(steps[-1])) > P_VALUE_FLOOR


def test_the_chi_square_check_rejects_a_plausible_but_wrong_extension() -> None:
    # Power check: adding the new battles' draws on top, without moving any old draw, keeps every
    # round's total right and its mean nearly right, yet it is not a multinomial draw.
    old, new = [3, 1, 2, 0], [4, 1, 3, 2]
    rng = np.random.default_rng(5)
    delta = np.array(new) - np.array(old)
    naive = fresh(old, seed=1) + rng.multinomial(delta.sum(), delta / delta.sum(), size=ROUNDS)

    assert chi_square_p_value(naive, np.array(new)) < 1e-12


def counts_of(rows: list[tuple[int, int, float, float, float]], n_models: int) -> PairCounts:
    a, b, wins_a, wins_b, ties = zip(*rows, strict=True)
    return PairCounts.from_arrays(
        a=a, b=b, wins_a=wins_a, wins_b=wins_b, ties=ties, n_models=n_models
    )


def test_a_new_row_and_a_new_model_are_taken_into_extended_rounds() -> None:
    before = counts_of([(0, 1, 3.0, 2.0, 1.0)], n_models=2)
    after = counts_of([(0, 1, 3.0, 3.0, 1.0), (1, 2, 1.0, 0.0, 1.0)], n_models=3)
    first = ratings.bootstrap(counts=before, rounds=ROUNDS, rng=np.random.default_rng(6))
    # Model indices are the caller's to keep: the two old models keep theirs among three.
    previous = first.resamples.renumbered([0, 1], n_models=3)

    second = ratings.bootstrap(
        counts=after, rounds=200, rng=np.random.default_rng(7), previous=previous
    )
    assert not second.extended  # 200 rounds asked for, 40,000 kept

    # The same previous rounds laid out on the new rows and extended, without the refits (many
    # of these tiny resamples leave model 2 without battles, and each such round is fitted alone).
    rows = np.array([[0, 1], [1, 2]])
    cells = np.array([3, 1, 3, 0, 1, 1])  # wins_a, wins_b and ties blocks
    aligned = resampling._extendable(previous, rows=rows, cells=cells, n_models=3)
    assert aligned is not None
    old_cells, old_draws = aligned
    np.testing.assert_array_equal(old_cells, [3, 0, 2, 0, 1, 0])
    draws = resampling._extend_draws(
        old_draws, old_cells=old_cells, new_cells=cells, rng=np.random.default_rng(7)
    )
    assert chi_square_p_value(draws, cells) > P_VALUE_FLOOR

    third = ratings.bootstrap(
        counts=after,
        rounds=200,
        rng=np.random.default_rng(8),
        previous=ratings.bootstrap(
            counts=before, rounds=200, rng=np.random.default_rng(9)
        ).resamples.renumbered([0, 1], n_models=3),
    )
    assert third.extended
    np.testing.assert_array_equal(third.resamples.rows, rows)


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"wins_a": [2.0]}, "a count shrank"),
        ({"rounds": 50}, "the number of rounds changed"),
        ({"wins_a": [500.0]}, "more battles added than fresh draws would cost"),
    ],
)
def test_resamples_are_drawn_afresh_when_they_cannot_be_extended(change: dict, why: str) -> None:
    base = counts_of([(0, 1, 3.0, 2.0, 1.0)], n_models=2)
    first = ratings.bootstrap(counts=base, rounds=40, rng=np.random.default_rng(8))
    rows = {"a": [0], "b": [1], "wins_a": [3.0], "wins_b": [3.0], "ties": [1.0]}
    rounds = change.pop("rounds", 40)
    rows.update(change)
    grown = PairCounts.from_arrays(**rows, n_models=2)  # type: ignore[arg-type]

    result = ratings.bootstrap(
        counts=grown, rounds=rounds, rng=np.random.default_rng(9), previous=first.resamples
    )

    assert not result.extended, why
    assert np.all(result.resamples.draws.sum(axis=1) == grown.battles.sum())


def test_extended_bounds_agree_with_fresh_bounds_on_the_same_counts() -> None:
    rng = np.random.default_rng(10)
    strengths = rng.normal(0.0, 0.7, size=8)

    def votes(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        a = rng.integers(0, 8, size=n)
        b = (a + rng.integers(1, 8, size=n)) % 8
        wins = rng.random(n) < 1.0 / (1.0 + np.exp(strengths[b] - strengths[a]))
        return a, b, np.where(rng.random(n) < 0.2, 0.5, wins.astype(float))

    old = votes(100_000)
    new = tuple(np.concatenate(pair) for pair in zip(old, votes(10), strict=True))
    before = ratings.aggregate_votes(a=old[0], b=old[1], outcome=old[2], n_models=8)
    after = ratings.aggregate_votes(a=new[0], b=new[1], outcome=new[2], n_models=8)

    first = ratings.bootstrap(counts=before, rounds=2000, rng=np.random.default_rng(11))
    extended = ratings.bootstrap(
        counts=after, rounds=2000, rng=np.random.default_rng(12), previous=first.resamples
    )
    afresh = ratings.bootstrap(counts=after, rounds=2000, rng=np.random.default_rng(13))

    assert extended.extended and not afresh.extended
    width_extended = extended.upper - extended.lower
    width_afresh = afresh.upper - afresh.lower
    assert np.max(np.abs(width_extended / width_afresh - 1.0)) < INTERVAL_WIDTH_RTOL
    # The refits of extended rounds are real fits of those rounds, not their old solutions.
    draws = np.asarray(extended.resamples.draws[0], dtype=float)
    wins_a, wins_b, ties = np.split(draws, 3)
    resampled = PairCounts.from_arrays(
        a=after.a, b=after.b, wins_a=wins_a, wins_b=wins_b, ties=ties, n_models=8
    )
    refit = ratings.fit_bradley_terry(counts=resampled)
    assert np.max(np.abs(extended.samples[0] - refit)) < 1e-5


def test_fresh_rounds_are_the_same_whatever_the_number_of_threads() -> None:
    cells = np.array([30, 1, 12, 7, 0, 50], dtype=np.int64)

    one = resampling._fresh_draws(cells, rounds=300, rng=np.random.default_rng(15), threads=1)
    three = resampling._fresh_draws(cells, rounds=300, rng=np.random.default_rng(15), threads=3)

    np.testing.assert_array_equal(one, three)
    assert np.all(one.sum(axis=1) == cells.sum()) and np.all(one[:, 4] == 0)
    assert len({row.tobytes() for row in one}) > 250  # chunks do not repeat each other


def test_renumbered_rejects_indices_outside_the_new_models() -> None:
    first = ratings.bootstrap(
        counts=counts_of([(0, 1, 3.0, 2.0, 1.0)], n_models=2),
        rounds=10,
        rng=np.random.default_rng(14),
    )

    with pytest.raises(ValueError, match="must lie in"):
        first.resamples.renumbered([0, 3], n_models=3)
