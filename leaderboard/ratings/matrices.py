"""Model-by-model matrices for the heatmaps: battles, observed and predicted win rates."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import expit

from leaderboard.ratings.counts import Floats, PairCounts


def battle_count_matrix(counts: PairCounts) -> Floats:
    """Symmetric n x n matrix of battles between each pair of models."""
    matrix = np.zeros((counts.n_models, counts.n_models))
    np.add.at(matrix, (counts.a, counts.b), counts.battles)
    return matrix + matrix.T


def win_rate_matrix(counts: PairCounts) -> Floats:
    """Share of battles the row model won against the column one, ties as half; NaN if unplayed."""
    scores = np.zeros((counts.n_models, counts.n_models))
    np.add.at(scores, (counts.a, counts.b), counts.wins_a + 0.5 * counts.ties)
    np.add.at(scores, (counts.b, counts.a), counts.wins_b + 0.5 * counts.ties)
    battles = battle_count_matrix(counts)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(battles > 0, scores / battles, np.nan)


def predicted_win_matrix(log_strengths: ArrayLike) -> Floats:
    """Bradley-Terry probability that the row model beats the column model."""
    theta = np.asarray(log_strengths, dtype=np.float64)
    return np.asarray(expit(theta[:, None] - theta[None, :]), dtype=np.float64)
