"""Bradley-Terry ratings and their uncertainty, computed from aggregated pair counts.

One module per concern: ``counts`` (the input), ``fit`` (the Bradley-Terry fit and the display
scale), ``intervals`` (sandwich intervals, rank by interval), ``resampling`` (bootstrap),
``matrices`` (heatmaps) and ``elo`` (online Elo); their public names are all here
(``leaderboard.board`` computes a whole board from them).

Pure numerical code: numpy and scipy only, arrays in and arrays out, an explicit
``rng`` wherever randomness is used, no Django, no settings, no module state.

Conventions (ARCHITECTURE.md, section 4):

* Log-strengths ``theta`` are on the natural-log scale; P(i beats j) = sigmoid(theta_i - theta_j).
* A tie counts as half a win for each side, so a row of counts enters the likelihood only
  through its battle total ``n`` and the score of side a, ``s = wins_a + ties / 2``.
* The gauge is fixed by giving every connected part of the comparison graph mean zero.
  Models without battles are not estimable: they come back as NaN.
* Display ratings are ``init + scale * log_base(strength)``; every constant is a parameter.
"""

from leaderboard.ratings.counts import Floats, Ints, PairCounts, aggregate_votes, components
from leaderboard.ratings.elo import elo_change, online_elo
from leaderboard.ratings.fit import (
    ConvergenceError,
    bradley_terry_gradient,
    bradley_terry_loss,
    fit_bradley_terry,
    intervals_to_display,
    to_display,
)
from leaderboard.ratings.intervals import rank_ub, sandwich_intervals
from leaderboard.ratings.matrices import battle_count_matrix, predicted_win_matrix, win_rate_matrix
from leaderboard.ratings.resampling import Bootstrap, Resamples, bootstrap

__all__ = [
    "Bootstrap",
    "ConvergenceError",
    "Floats",
    "Ints",
    "PairCounts",
    "Resamples",
    "aggregate_votes",
    "battle_count_matrix",
    "bootstrap",
    "bradley_terry_gradient",
    "bradley_terry_loss",
    "components",
    "elo_change",
    "fit_bradley_terry",
    "intervals_to_display",
    "online_elo",
    "predicted_win_matrix",
    "rank_ub",
    "sandwich_intervals",
    "to_display",
    "win_rate_matrix",
]
