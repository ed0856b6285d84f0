"""The pure board computation behind a snapshot (no database)."""

from __future__ import annotations

import numpy as np
import pytest

from leaderboard import ratings

TOL = 1e-9


def counts() -> ratings.PairCounts:
    """Model 0 beats 1 and 2 most of the time; model 3 played only 4 battles."""
    return ratings.PairCounts.from_arrays(
        a=[0, 0, 1, 2],
        b=[1, 2, 2, 3],
        wins_a=[70.0, 80.0, 55.0, 2.0],
        wins_b=[30.0, 20.0, 45.0, 1.0],
        ties=[10.0, 0.0, 5.0, 1.0],
        n_models=4,
    )


def test_a_category_board_hides_models_below_the_minimum_and_ranks_the_rest() -> None:
    board = ratings.compute_board(
        counts=counts(), intervals="sandwich", min_votes=50, hide_below_min=True
    )
    assert board.shown.tolist() == [0, 1, 2]
    assert board.rank.size == 3 and board.rank[0] == 1  # model 0 is clearly best
    assert board.provisional.tolist() == [False, False, False, True]


def test_the_overall_board_shows_thin_models_as_provisional() -> None:
    board = ratings.compute_board(
        counts=counts(), intervals="sandwich", min_votes=50, hide_below_min=False
    )
    assert board.shown.tolist() == [0, 1, 2, 3] and board.rank.size == 4
    assert board.provisional.tolist() == [False, False, False, True]
    assert board.votes.tolist() == [210.0, 215.0, 209.0, 4.0]


def test_the_board_agrees_with_the_functions_it_is_made_of() -> None:
    pairs = counts()
    board = ratings.compute_board(
        counts=pairs, intervals="sandwich", min_votes=0, hide_below_min=False, anchor=2
    )
    theta = ratings.fit_bradley_terry(counts=pairs)
    low, high = ratings.sandwich_intervals(counts=pairs, log_strengths=theta)
    lower, upper = ratings.intervals_to_display(
        log_strengths=theta, lower=low, upper=high, anchor=2
    )
    assert np.allclose(board.rating, ratings.to_display(log_strengths=theta, anchor=2), atol=TOL)
    assert board.rating[2] == pytest.approx(1000.0)
    assert np.allclose(board.lower, lower, atol=TOL) and np.allclose(board.upper, upper, atol=TOL)
    expected_win_rate = (70 + 80 + 5) / 210
    assert board.win_rate[0] == pytest.approx(expected_win_rate)


def test_bootstrap_boards_need_an_rng_and_return_their_rounds() -> None:
    with pytest.raises(ValueError, match="rng"):
        ratings.compute_board(
            counts=counts(), intervals="bootstrap", min_votes=0, hide_below_min=False
        )
    board = ratings.compute_board(
        counts=counts(),
        intervals="bootstrap",
        min_votes=0,
        hide_below_min=False,
        rng=np.random.default_rng(3),
        rounds=50,
    )
    assert board.resamples is not None and board.resamples.rounds == 50
    assert not board.extended
    assert np.all(board.lower <= board.rating) and np.all(board.rating <= board.upper)


def test_an_unknown_interval_method_is_refused() -> None:
    with pytest.raises(ValueError, match="intervals"):
        ratings.compute_board(
            counts=counts(), intervals="jackknife", min_votes=0, hide_below_min=False
        )
