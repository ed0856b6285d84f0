"""The pure board computation behind a snapshot (leaderboard.board: no database)."""

from __future__ import annotations

import numpy as np
import pytest

from leaderboard import board, bounds, ratings, robustness

TOL = 1e-6
PPL = bounds.POINTS_PER_LOG


def counts_of(rows: list[tuple[int, int, float, float, float]], n: int) -> ratings.PairCounts:
    return ratings.PairCounts.from_arrays(
        a=[r[0] for r in rows],
        b=[r[1] for r in rows],
        wins_a=[r[2] for r in rows],
        wins_b=[r[3] for r in rows],
        ties=[r[4] for r in rows],
        n_models=n,
    )


# Models 0 and 1 are bounded (60-40); model 2 lost all 20 battles to model 0 (open below).
WITH_OPEN = counts_of([(0, 1, 60, 40, 0), (0, 2, 20, 0, 0)], 3)


def test_two_models_are_centred_on_1000_at_the_log_odds_of_their_record() -> None:
    computed = board.compute_board(counts=counts_of([(0, 1, 55, 45, 0)], 2))
    gap = np.log(55 / 45) * PPL  # the maximum-likelihood log-odds, in display points
    shown = computed.shown_board
    assert shown.rating[0] == pytest.approx(1000 + gap / 2, abs=1e-3)
    assert shown.rating[1] == pytest.approx(1000 - gap / 2, abs=1e-3)
    assert computed.win_rate.tolist() == pytest.approx([0.55, 0.45])
    assert computed.votes.tolist() == [100.0, 100.0]
    assert computed.rank.tolist() == [1, 1]  # 55-45 over 100 votes does not separate them
    clear = board.compute_board(counts=counts_of([(0, 1, 75, 25, 0)], 2))
    assert clear.rank.tolist() == [1, 2]


def test_an_open_model_gets_an_open_interval_and_moves_no_one() -> None:
    computed = board.compute_board(counts=WITH_OPEN)
    alone = board.compute_board(counts=counts_of([(0, 1, 60, 40, 0)], 2))
    shown = computed.shown_board
    assert shown.status.tolist() == [bounds.BOUNDED, bounds.BOUNDED, bounds.BELOW]
    assert np.isnan(shown.rating[2]) and shown.lower[2] == -np.inf
    np.testing.assert_allclose(shown.rating[:2], alone.shown_board.rating, atol=TOL)
    assert np.isnan(computed.log_strengths[2])  # only the core is fitted
    assert computed.core_counts.battles.sum() == 100  # the open model's votes left the fit
    assert computed.provisional[2]  # an open interval is always provisional


def test_a_bounded_anchor_pins_the_board_and_an_unbounded_one_is_ignored() -> None:
    pinned = board.compute_board(counts=WITH_OPEN, anchor=1, anchor_rating=1200.0)
    assert pinned.anchor == 1
    assert pinned.shown_board.rating[1] == pytest.approx(1200.0)
    assert pinned.shown_board.rating[0] == pytest.approx(1200.0 + np.log(1.5) * PPL, abs=1e-3)
    ignored = board.compute_board(counts=WITH_OPEN, anchor=2, anchor_rating=1200.0)
    assert ignored.anchor is None
    assert np.nanmean(ignored.shown_board.rating) == pytest.approx(1000.0)


def test_the_provisional_rule_needs_both_a_narrow_interval_and_enough_votes() -> None:
    pairs = counts_of([(0, 1, 600, 400, 0), (1, 2, 500, 500, 0), (2, 3, 150, 150, 0)], 4)
    strict = board.compute_board(counts=pairs, min_votes=500, max_half_width=1.0)
    assert strict.provisional.all()  # no interval is within +-1 point
    loose = board.compute_board(counts=pairs, min_votes=500, max_half_width=1e6)
    assert loose.provisional.tolist() == [False, False, False, True]  # model 3: 300 votes


def test_a_category_board_hides_models_below_the_minimum_and_ranks_the_rest() -> None:
    pairs = counts_of([(0, 1, 600, 400, 0), (1, 2, 500, 500, 0), (2, 3, 150, 150, 0)], 4)
    hidden = board.compute_board(counts=pairs, min_votes=500, hide_below_min=True)
    assert hidden.shown.tolist() == [0, 1, 2] and hidden.rank.size == 3
    assert hidden.rank[0] == 1 and hidden.rank[1] == 2  # 600-400 separates models 0 and 1
    overall = board.compute_board(counts=pairs, min_votes=500)
    assert overall.shown.tolist() == [0, 1, 2, 3] and overall.rank.size == 4


def test_bootstrap_boards_need_an_rng_are_reproducible_from_it_and_return_their_rounds() -> None:
    with pytest.raises(ValueError, match="rng"):
        board.compute_board(counts=WITH_OPEN, intervals="bootstrap")
    runs = [
        board.compute_board(
            counts=WITH_OPEN, intervals="bootstrap", rng=np.random.default_rng(3), rounds=50
        )
        for _ in range(2)
    ]
    assert runs[0].resamples is not None and runs[0].resamples.rounds == 50
    assert not runs[0].extended
    np.testing.assert_array_equal(runs[0].shown_board.lower, runs[1].shown_board.lower)
    extended = board.compute_board(
        counts=WITH_OPEN,
        intervals="bootstrap",
        rng=np.random.default_rng(4),
        rounds=50,
        previous=runs[0].resamples,
    )
    assert extended.extended


def test_an_unknown_interval_method_is_refused() -> None:
    with pytest.raises(ValueError, match="intervals"):
        board.compute_board(counts=WITH_OPEN, intervals="jackknife")


def test_the_style_board_fits_only_the_cores_votes_and_sees_the_side_bias() -> None:
    rng = np.random.default_rng(0)
    n = 400
    left = rng.integers(0, 2, n)
    # Two equal models; the left image wins 70% of the time; 10 more votes involve model 2.
    rows = [
        [lft, 1 - lft, float(rng.random() < 0.7), 512, 512, 1000, 512, 512, 1000] for lft in left
    ]
    rows += [[0, 2, 1.0, 512, 512, 1000, 512, 512, 1000]] * 10
    computed = board.compute_board(counts=WITH_OPEN, style_votes=np.array(rows, dtype=float))
    assert computed.style is not None
    assert computed.style.summary["votes"] == n  # model 2 is open: its votes are left out
    coefficients = computed.style.summary["coefficients"]
    assert isinstance(coefficients, list)
    side = next(c for c in coefficients if c["covariate"] == "side_left")
    assert side["lower"] > 0  # the side bias is found, with an interval clear of zero
    assert np.isnan(computed.style.controlled[2])
    assert board.compute_board(counts=WITH_OPEN, style_votes=np.zeros((0, 9))).style is None


def test_votes_to_flip_of_a_board_refit_its_core_relative_to_its_anchor() -> None:
    pairs = counts_of([(0, 1, 30, 20, 2), (1, 2, 25, 22, 1), (0, 2, 28, 20, 0), (0, 3, 9, 0, 0)], 4)
    computed = board.compute_board(counts=pairs, anchor=1)
    flips = board.votes_to_flip(computed)
    expected = robustness.votes_to_flip(
        counts=computed.core_counts, log_strengths=computed.log_strengths, anchor=1
    )
    assert flips.tolist() == expected.tolist()
    assert flips[3] == robustness.NO_FLIP  # open: not fitted, nothing to flip
    assert (flips[:3] > 0).all()
