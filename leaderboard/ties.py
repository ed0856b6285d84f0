"""Davidson's tie model, an option beside Bradley-Terry with ties counted as half a win.

Pure numerical code (numpy and scipy only). Davidson (1970): with strengths pi = exp(theta),

    P(i wins) = pi_i / D,   P(j wins) = pi_j / D,   P(tie) = nu * sqrt(pi_i pi_j) / D,
    D = pi_i + pi_j + nu * sqrt(pi_i pi_j).

Note on the scale. Given that a battle was decided, P(i wins | no tie) = sigmoid(theta_i -
theta_j), exactly Bradley-Terry's law, so Davidson log-strengths sit on the same logit scale as
a Bradley-Terry fit of the decisive battles. LMArena counts a tie as half a win for each side;
when ties happen whatever the strengths, that pulls every expected score towards one half and
shrinks the gaps (to about 0.8 times with one battle in five tied). A Davidson board is therefore
wider than the default board and must not be compared with LMArena's numbers point for point;
the default board stays the half-win one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from leaderboard import ratings
from leaderboard.ratings import ConvergenceError, PairCounts

Floats = NDArray[np.float64]


@dataclass(frozen=True)
class DavidsonFit:
    """Log-strengths (each group mean zero, NaN for models without battles) and the tie
    parameter nu (> 0; the chance of a tie between equals is nu / (2 + nu))."""

    log_strengths: Floats
    nu: float


def fit_davidson(
    *, counts: PairCounts, l2_prior: float = 1e-4, tol: float = 1e-10, max_iter: int = 500
) -> DavidsonFit:
    """Maximum-likelihood Davidson fit of the counts; raise ConvergenceError on failure."""
    if l2_prior < 0:
        raise ValueError(f"l2_prior must be non-negative, got {l2_prior}")
    n = counts.n_models
    battles = counts.battles
    played_rows = battles > 0
    per_model = np.bincount(counts.a, battles, n) + np.bincount(counts.b, battles, n)
    models = np.flatnonzero(per_model > 0)
    renumber = np.full(n, -1)
    renumber[models] = np.arange(models.size)
    a, b = renumber[counts.a[played_rows]], renumber[counts.b[played_rows]]
    wins_a, wins_b = counts.wins_a[played_rows], counts.wins_b[played_rows]
    ties, total = counts.ties[played_rows], battles[played_rows]
    m = models.size
    if m == 0:
        return DavidsonFit(log_strengths=np.full(n, np.nan), nu=float("nan"))
    if ties.sum() == 0:
        raise ValueError("a Davidson fit needs at least one tie (with none, nu's MLE is 0)")

    def objective(x: Floats) -> tuple[float, Floats]:
        theta, log_nu = x[:m], x[m]
        half = 0.5 * (theta[a] - theta[b])
        # log D - (theta_a + theta_b) / 2 = log(e^h + e^-h + nu), computed stably.
        top = np.maximum(np.abs(half), log_nu)
        denominator = np.exp(half - top) + np.exp(-half - top) + np.exp(log_nu - top)
        log_d = top + np.log(denominator)
        loss = np.sum(total * log_d - (wins_a - wins_b) * half - ties * log_nu)
        loss += 0.5 * l2_prior * float(theta @ theta)
        share_a = np.exp(half - log_d)
        share_b = np.exp(-half - log_d)
        share_tie = np.exp(log_nu - log_d)
        per_row = 0.5 * (total * (share_a - share_b) - (wins_a - wins_b))
        gradient = np.empty(m + 1)
        gradient[:m] = np.bincount(a, per_row, m) - np.bincount(b, per_row, m) + l2_prior * theta
        gradient[m] = float(np.sum(total * share_tie - ties))
        return float(loss), gradient

    # Imported here, not with the module: scipy.optimize is a quarter of the web server's start.
    from scipy.optimize import minimize

    start = np.zeros(m + 1)
    start[m] = np.log(max(2.0 * ties.sum() / max(total.sum() - ties.sum(), 1.0), 1e-3))
    result = minimize(
        objective,
        start,
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": max_iter, "ftol": 0.0, "gtol": tol * max(total.sum(), 1.0)},
    )
    gradient_size = float(np.max(np.abs(result.jac)))
    if not np.all(np.isfinite(result.x)) or gradient_size > 1e-4 * max(total.sum(), 1.0):
        raise ConvergenceError(f"Davidson fit did not converge: {result.message}")
    theta = result.x[:m]
    # Each connected group to mean zero, the gauge every board is reported in.
    group = np.unique(ratings.components(counts)[models], return_inverse=True)[1]
    means = np.bincount(group, theta) / np.bincount(group)
    full = np.full(n, np.nan)
    full[models] = theta - means[group]
    return DavidsonFit(log_strengths=full, nu=float(np.exp(result.x[m])))


def davidson_probabilities(*, log_strengths: Floats, nu: float, a: int, b: int) -> Floats:
    """P(a wins), P(b wins), P(tie) under the Davidson model."""
    half = 0.5 * (log_strengths[a] - log_strengths[b])
    weights = np.array([np.exp(half), np.exp(-half), nu])
    return np.asarray(weights / weights.sum(), dtype=np.float64)


def davidson_ratings(*, core_counts: PairCounts, init: float = 1000.0) -> tuple[Floats, float]:
    """Davidson display ratings and nu of a board's bounded core (``core_counts``, the counts
    the half-win fit saw): points on the board's scale (400 / ln 10 per logit), centred on the mean
    of the fitted models at ``init``, NaN for the others. Without a single tie Davidson's
    likelihood is Bradley-Terry's on the decisive battles, so that fit is returned, with nu 0."""
    try:
        fitted = fit_davidson(counts=core_counts)
    except ValueError:
        theta = ratings.fit_bradley_terry(counts=core_counts)
        fitted = DavidsonFit(log_strengths=np.asarray(theta, dtype=np.float64), nu=0.0)
    theta = fitted.log_strengths
    rated = np.isfinite(theta)
    points = np.full(theta.size, np.nan)
    if rated.any():
        centred = theta[rated] - float(np.mean(theta[rated]))
        points[rated] = centred * 400.0 / float(np.log(10.0)) + init
    return points, fitted.nu
