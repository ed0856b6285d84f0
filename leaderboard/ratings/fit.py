"""The Bradley-Terry fit (damped Newton on aggregated counts) and the display scale."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy.linalg import cho_factor, cho_solve
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components
from scipy.special import expit

from leaderboard.ratings.counts import Floats, Ints, PairCounts, battles_per_model, components


class ConvergenceError(RuntimeError):
    """Raised when an iterative fit does not reach its tolerance."""


def bradley_terry_loss(
    *,
    counts: PairCounts,
    log_strengths: ArrayLike,
    weights: ArrayLike | None = None,
    l2_prior: float = 0.0,
) -> float:
    """Negative (weighted, penalised) Bradley-Terry log-likelihood, ties as half a win each."""
    problem = Problem.build(counts=counts, weights=weights)
    theta = checked_log_strengths(log_strengths, counts.n_models)[problem.models]
    return problem.loss(theta, l2_prior)


def bradley_terry_gradient(
    *,
    counts: PairCounts,
    log_strengths: ArrayLike,
    weights: ArrayLike | None = None,
    l2_prior: float = 0.0,
) -> Floats:
    """Gradient of ``bradley_terry_loss`` with respect to every model's log-strength."""
    problem = Problem.build(counts=counts, weights=weights)
    theta = checked_log_strengths(log_strengths, counts.n_models)[problem.models]
    gradient = np.zeros(counts.n_models)
    gradient[problem.models] = problem.gradient(theta, l2_prior)
    return gradient


def fit_bradley_terry(
    *,
    counts: PairCounts,
    weights: ArrayLike | None = None,
    l2_prior: float = 1e-4,
    tol: float = 1e-10,
    max_iter: int = 100,
) -> Floats:
    """Maximum-likelihood Bradley-Terry log-strengths (NaN for models without battles)."""
    # l2_prior adds l2_prior / 2 * sum(theta**2) to the loss, i.e. a Gaussian prior with a
    # standard deviation of 100 log-units at the default: far too wide to move ordinary ratings
    # (shifts are about l2_prior * theta / battles, well under 0.001 display points), but it keeps
    # the estimate finite when a model won or lost every battle, where the MLE is at infinity.
    # Set it to 0.0 for the exact MLE; separable data then raises ConvergenceError.
    if l2_prior < 0:
        raise ValueError(f"l2_prior must be non-negative, got {l2_prior}")
    problem = Problem.build(counts=counts, weights=weights)
    if l2_prior == 0.0 and not problem.mle_is_finite:
        # Decided from the graph, not from Newton running out of steps: on separable data the
        # steps shrink into rounding at a rate that depends on the BLAS, so "did not converge"
        # alone was a different answer on different machines.
        raise ConvergenceError(
            "Bradley-Terry MLE is infinite: some set of models won or lost all its battles against"
            " the rest of its group (use bounds.evidence to find it, or a positive l2_prior)"
        )
    theta = newton(
        problem=problem, theta=np.zeros(problem.size), l2_prior=l2_prior, tol=tol, max_iter=max_iter
    )
    return problem.expand(theta)


def to_display(
    *,
    log_strengths: ArrayLike,
    scale: float = 400.0,
    base: float = 10.0,
    init: float = 1000.0,
    anchor: int | None = None,
    anchor_rating: float | None = None,
) -> Floats:
    """Ratings ``init + scale * log_base(strength)``, centred on the mean or anchored to a model."""
    theta = np.asarray(log_strengths, dtype=np.float64)
    points = theta * (scale / float(np.log(base)))
    return points + _display_offset(
        points=points, init=init, anchor=anchor, anchor_rating=anchor_rating
    )


def intervals_to_display(
    *,
    log_strengths: ArrayLike,
    lower: ArrayLike,
    upper: ArrayLike,
    scale: float = 400.0,
    base: float = 10.0,
    init: float = 1000.0,
    anchor: int | None = None,
    anchor_rating: float | None = None,
) -> tuple[Floats, Floats]:
    """Convert log-strength interval bounds to display points, shifted as ``to_display`` shifts."""
    theta = np.asarray(log_strengths, dtype=np.float64)
    points_per_log = scale / np.log(base)
    offset = _display_offset(
        points=theta * points_per_log, init=init, anchor=anchor, anchor_rating=anchor_rating
    )
    low = np.asarray(lower, dtype=np.float64) * points_per_log + offset
    high = np.asarray(upper, dtype=np.float64) * points_per_log + offset
    return low, high


@dataclass(frozen=True)
class Problem:
    """The fit's view of the counts: models with battles renumbered 0..size-1, no empty rows."""

    models: Ints  # original index of each estimable model
    index_a: Ints  # per row, renumbered
    index_b: Ints
    wins_a: Floats
    wins_b: Floats
    ties: Floats
    weights: Floats
    component: Ints  # per estimable model
    n_models: int

    @classmethod
    def build(cls, *, counts: PairCounts, weights: ArrayLike | None) -> Problem:
        if weights is None:
            row_weights = np.ones(counts.a.shape[0])
        else:
            row_weights = np.asarray(weights, dtype=np.float64)
            if row_weights.shape != counts.a.shape:
                raise ValueError(
                    f"weights must have one entry per row ({counts.a.shape[0]}),"
                    f" got shape {row_weights.shape}"
                )
            if not np.all(np.isfinite(row_weights)) or np.any(row_weights <= 0):
                raise ValueError("weights must be finite and positive")
        played = counts.battles > 0
        models = np.flatnonzero(battles_per_model(counts) > 0).astype(np.int64)
        renumber = np.full(counts.n_models, -1, dtype=np.int64)
        renumber[models] = np.arange(models.size)
        labels = components(counts)[models]
        _, component = np.unique(labels, return_inverse=True)
        return cls(
            models=models,
            index_a=renumber[counts.a[played]],
            index_b=renumber[counts.b[played]],
            wins_a=counts.wins_a[played],
            wins_b=counts.wins_b[played],
            ties=counts.ties[played],
            weights=row_weights[played],
            component=np.asarray(component, dtype=np.int64),
            n_models=counts.n_models,
        )

    @property
    def size(self) -> int:
        return int(self.models.size)

    @property
    def rows(self) -> int:
        return int(self.index_a.size)

    @property
    def battles(self) -> Floats:
        return self.wins_a + self.wins_b + self.ties

    @property
    def weighted_battles(self) -> Floats:
        return self.weights * self.battles

    @property
    def weighted_score(self) -> Floats:
        return self.weights * (self.wins_a + 0.5 * self.ties)

    @property
    def incidence(self) -> Any:
        """Sparse rows x models matrix, +1 for side a and -1 for side b: incidence @ theta is d."""
        rows = np.arange(self.rows)
        return csr_matrix(
            (
                np.repeat([1.0, -1.0], self.rows),
                (np.tile(rows, 2), np.concatenate([self.index_a, self.index_b])),
            ),
            shape=(self.rows, self.size),
        )

    @property
    def gauge_projector(self) -> Floats:
        """Sum over components of the projector onto that component's all-ones direction."""
        indicator = np.zeros((self.size, int(self.component.max(initial=-1)) + 1))
        indicator[np.arange(self.size), self.component] = 1.0
        return np.asarray((indicator / indicator.sum(axis=0)) @ indicator.T, dtype=np.float64)

    @property
    def mle_is_finite(self) -> bool:
        """Whether the unpenalised MLE exists: in every connected group, each model reaches each
        other through a chain of "scored against" (won or tied) edges (Zermelo's condition)."""
        forward = self.wins_a + self.ties > 0
        backward = self.wins_b + self.ties > 0
        src = np.concatenate([self.index_a[forward], self.index_b[backward]])
        dst = np.concatenate([self.index_b[forward], self.index_a[backward]])
        graph = csr_matrix((np.ones(src.size), (src, dst)), shape=(self.size, self.size))
        strong, _ = connected_components(graph, directed=True, connection="strong")
        return int(strong) == int(self.component.max(initial=-1)) + 1

    def difference(self, theta: Floats) -> Floats:
        return theta[self.index_a] - theta[self.index_b]

    def loss(self, theta: Floats, l2_prior: float) -> float:
        d = self.difference(theta)
        value = np.sum(self.weighted_battles * np.logaddexp(0.0, d) - self.weighted_score * d)
        return float(value + 0.5 * l2_prior * np.dot(theta, theta))

    def gradient(self, theta: Floats, l2_prior: float) -> Floats:
        per_row = self.weighted_battles * expit(self.difference(theta)) - self.weighted_score
        return self.scatter(per_row) + l2_prior * theta

    def scatter(self, per_row: Floats) -> Floats:
        """Add each row's value to model a and subtract it from model b."""
        return np.asarray(
            np.bincount(self.index_a, per_row, self.size)
            - np.bincount(self.index_b, per_row, self.size),
            dtype=np.float64,
        )

    def laplacian(self, per_row: Floats) -> Floats:
        """Sum over rows of value * (e_a - e_b)(e_a - e_b)^T, the shape of both H and J."""
        m = self.size
        a, b = self.index_a, self.index_b
        flat = np.concatenate([a * (m + 1), b * (m + 1), a * m + b, b * m + a])
        values = np.concatenate([per_row, per_row, -per_row, -per_row])
        return np.bincount(flat, values, m * m).reshape(m, m).astype(np.float64)

    def expand(self, theta: Floats) -> Floats:
        """Back to one entry per model, NaN for models without battles."""
        full = np.full(self.n_models, np.nan)
        full[self.models] = theta
        return full

    def centred(self, theta: Floats) -> Floats:
        """Shift each component to mean zero, the gauge every result is reported in."""
        sizes = np.bincount(self.component)
        means = np.bincount(self.component, theta) / sizes
        return np.asarray(theta - means[self.component], dtype=np.float64)


def newton(
    *, problem: Problem, theta: Floats, l2_prior: float, tol: float, max_iter: int
) -> Floats:
    """Damped Newton on the reduced problem; the gauge projector makes each system solvable."""
    if problem.size == 0:
        return theta
    theta = problem.centred(theta)
    projector = problem.gauge_projector
    regulariser = l2_prior * np.eye(problem.size) + projector
    step_size = np.inf
    for _ in range(max_iter):
        win_prob = expit(problem.difference(theta))
        gradient = (
            problem.scatter(problem.weighted_battles * win_prob - problem.weighted_score)
            + l2_prior * theta
        )
        hessian = (
            problem.laplacian(problem.weighted_battles * win_prob * (1.0 - win_prob)) + regulariser
        )
        try:
            step = -cho_solve(cho_factor(hessian), gradient)
        except np.linalg.LinAlgError as error:
            # Without a prior the Hessian turns singular as a model's strength runs off to
            # infinity; that is non-convergence, reported as this function documents.
            raise ConvergenceError(
                "Bradley-Terry fit met a singular Hessian: some model won or lost all its"
                " battles, so the MLE is infinite (use bounds.evidence to find it)"
            ) from error
        # Backtrack only when the full step raises the loss beyond rounding: near the optimum the
        # loss differences vanish into rounding error while Newton steps are still exact.
        current = problem.loss(theta, l2_prior)
        slack = 1e-12 * (abs(current) + 1.0)
        fraction = 1.0
        while problem.loss(theta + fraction * step, l2_prior) > current + slack and fraction > 1e-8:
            fraction *= 0.5
        theta = theta + fraction * step
        step_size = float(np.max(np.abs(fraction * step)))
        if step_size < tol:
            return problem.centred(theta)
    raise ConvergenceError(
        f"Bradley-Terry fit did not converge in {max_iter} Newton steps"
        f" (last step {step_size:.2e} > tol {tol:.0e});"
        " with l2_prior=0 this means some model won or lost all its battles, so the MLE is infinite"
    )


def checked_log_strengths(log_strengths: ArrayLike, n_models: int) -> Floats:
    theta = np.asarray(log_strengths, dtype=np.float64)
    if theta.shape != (n_models,):
        raise ValueError(f"log_strengths must have shape ({n_models},), got {theta.shape}")
    return theta


def _display_offset(
    *, points: Floats, init: float, anchor: int | None, anchor_rating: float | None
) -> float:
    """Constant added to scaled log-strengths: centre the mean on init, or pin the anchor model."""
    if anchor is None:
        if anchor_rating is not None:
            raise ValueError("anchor_rating needs an anchor model index")
        finite = points[np.isfinite(points)]
        return init - float(finite.mean()) if finite.size else init
    if not 0 <= anchor < points.size or not np.isfinite(points[anchor]):
        raise ValueError(f"anchor {anchor} is not a model with a finite rating")
    target = init if anchor_rating is None else anchor_rating
    return target - float(points[anchor])
