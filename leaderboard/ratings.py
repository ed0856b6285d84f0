"""Bradley-Terry ratings and their uncertainty, computed from aggregated pair counts.

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

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.linalg import cho_factor, cho_solve
from scipy.sparse import coo_matrix, csr_matrix
from scipy.sparse.csgraph import connected_components
from scipy.special import expit
from scipy.stats import norm

Floats = NDArray[np.float64]
Ints = NDArray[np.int64]


class ConvergenceError(RuntimeError):
    """Raised when an iterative fit does not reach its tolerance."""


@dataclass(frozen=True)
class PairCounts:
    """Battle outcomes aggregated per (model a, model b) row; build with ``from_arrays``."""

    a: Ints
    b: Ints
    wins_a: Floats
    wins_b: Floats
    ties: Floats
    n_models: int

    def __post_init__(self) -> None:
        # Validating here, not only in from_arrays, means no invalid PairCounts can exist.
        if not isinstance(self.n_models, (int, np.integer)) or self.n_models < 1:
            raise ValueError(f"n_models must be a positive integer, got {self.n_models!r}")
        arrays = {
            "a": self.a,
            "b": self.b,
            "wins_a": self.wins_a,
            "wins_b": self.wins_b,
            "ties": self.ties,
        }
        for name, values in arrays.items():
            if not isinstance(values, np.ndarray) or values.ndim != 1:
                raise ValueError(f"{name} must be a one-dimensional numpy array")
        lengths = {name: values.shape[0] for name, values in arrays.items()}
        if len(set(lengths.values())) != 1:
            raise ValueError(
                f"a, b, wins_a, wins_b and ties must have the same length, got {lengths}"
            )
        for name in ("a", "b"):
            if arrays[name].dtype != np.int64:
                raise ValueError(f"{name} must have dtype int64, got {arrays[name].dtype}")
        for name in ("wins_a", "wins_b", "ties"):
            values = arrays[name]
            if values.dtype != np.float64:
                raise ValueError(f"{name} must have dtype float64, got {values.dtype}")
            if not np.all(np.isfinite(values)):
                raise ValueError(f"{name} must be finite")
            if np.any(values < 0):
                raise ValueError(f"{name} must be non-negative, found {values.min()}")
        for name in ("a", "b"):
            values = arrays[name]
            if values.size and (values.min() < 0 or values.max() >= self.n_models):
                raise ValueError(
                    f"{name} must hold model indices in [0, {self.n_models}),"
                    f" found {values.min()}..{values.max()}"
                )
        same = np.flatnonzero(self.a == self.b)
        if same.size:
            raise ValueError(f"a model cannot battle itself: a == b in row {int(same[0])}")

    @classmethod
    def from_arrays(
        cls,
        *,
        a: ArrayLike,
        b: ArrayLike,
        wins_a: ArrayLike,
        wins_b: ArrayLike,
        ties: ArrayLike,
        n_models: int,
    ) -> PairCounts:
        """Validate and copy array-likes into read-only PairCounts; raise ValueError if invalid."""
        index_a, index_b = np.asarray(a), np.asarray(b)
        for name, values in (("a", index_a), ("b", index_b)):
            if values.size and not np.issubdtype(values.dtype, np.integer):
                raise ValueError(
                    f"{name} must hold integer model indices, got dtype {values.dtype}"
                )

        return cls(
            a=_read_only(index_a, np.int64),
            b=_read_only(index_b, np.int64),
            wins_a=_read_only(wins_a, np.float64),
            wins_b=_read_only(wins_b, np.float64),
            ties=_read_only(ties, np.float64),
            n_models=int(n_models),
        )

    @property
    def battles(self) -> Floats:
        """Battles per row."""
        return self.wins_a + self.wins_b + self.ties


def aggregate_votes(*, a: ArrayLike, b: ArrayLike, outcome: ArrayLike, n_models: int) -> PairCounts:
    """Aggregate votes (outcome 1 a wins, 0 b wins, 0.5 tie) into one row per unordered pair."""
    side_a = np.asarray(a, dtype=np.int64)
    side_b = np.asarray(b, dtype=np.int64)
    result = np.asarray(outcome, dtype=np.float64)
    if not (side_a.shape == side_b.shape == result.shape) or side_a.ndim != 1:
        raise ValueError("a, b and outcome must be one-dimensional arrays of the same length")
    if not np.all((result == 0.0) | (result == 0.5) | (result == 1.0)):
        raise ValueError("outcome must be 1.0 (a wins), 0.0 (b wins) or 0.5 (tie)")
    if side_a.size and (
        min(side_a.min(), side_b.min()) < 0 or max(side_a.max(), side_b.max()) >= n_models
    ):
        raise ValueError(f"model indices must lie in [0, {n_models})")
    # One row per unordered pair keeps at most n(n-1)/2 rows, whatever side each model sat on.
    low, high = np.minimum(side_a, side_b), np.maximum(side_a, side_b)
    score_low = np.where(side_a <= side_b, result, 1.0 - result)
    key = low * n_models + high
    size = n_models * n_models
    battles = np.bincount(key, minlength=size)
    wins_low = np.bincount(key, weights=(score_low == 1.0), minlength=size)
    ties = np.bincount(key, weights=(score_low == 0.5), minlength=size)
    rows = np.flatnonzero(battles)
    return PairCounts.from_arrays(
        a=rows // n_models,
        b=rows % n_models,
        wins_a=wins_low[rows],
        wins_b=battles[rows] - wins_low[rows] - ties[rows],
        ties=ties[rows],
        n_models=n_models,
    )


def models_without_battles(counts: PairCounts) -> Ints:
    """Indices of models that appear in no battle (their strength cannot be estimated)."""
    return np.flatnonzero(_battles_per_model(counts) == 0).astype(np.int64)


def components(counts: PairCounts) -> Ints:
    """Connected-component label of each model in the comparison graph (unplayed models alone)."""
    played = counts.battles > 0
    graph = coo_matrix(
        (np.ones(int(played.sum())), (counts.a[played], counts.b[played])),
        shape=(counts.n_models, counts.n_models),
    )
    _, labels = connected_components(graph, directed=False)
    return np.asarray(labels, dtype=np.int64)


def inverse_pair_frequency_weights(*, counts: PairCounts, min_pair_count: float = 50.0) -> Floats:
    """Per-row weights 1 / max(battles of the pair, min_pair_count), LMArena's reweighting."""
    low = np.minimum(counts.a, counts.b)
    high = np.maximum(counts.a, counts.b)
    key = low * counts.n_models + high
    pair_total = np.bincount(key, weights=counts.battles, minlength=counts.n_models**2)[key]
    # The floor stops rarely sampled pairs from dominating the fit through huge weights.
    return np.asarray(1.0 / np.maximum(pair_total, min_pair_count), dtype=np.float64)


def bradley_terry_loss(
    *,
    counts: PairCounts,
    log_strengths: ArrayLike,
    weights: ArrayLike | None = None,
    l2_prior: float = 0.0,
) -> float:
    """Negative (weighted, penalised) Bradley-Terry log-likelihood, ties as half a win each."""
    problem = _Problem.build(counts=counts, weights=weights)
    theta = _checked_log_strengths(log_strengths, counts.n_models)[problem.models]
    return problem.loss(theta, l2_prior)


def bradley_terry_gradient(
    *,
    counts: PairCounts,
    log_strengths: ArrayLike,
    weights: ArrayLike | None = None,
    l2_prior: float = 0.0,
) -> Floats:
    """Gradient of ``bradley_terry_loss`` with respect to every model's log-strength."""
    problem = _Problem.build(counts=counts, weights=weights)
    theta = _checked_log_strengths(log_strengths, counts.n_models)[problem.models]
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
    problem = _Problem.build(counts=counts, weights=weights)
    theta = _newton(
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


def sandwich_intervals(
    *,
    counts: PairCounts,
    log_strengths: ArrayLike,
    weights: ArrayLike | None = None,
    level: float = 0.95,
    hessian_ridge: float = 1e-5,
) -> tuple[Floats, Floats]:
    """Normal intervals from the robust covariance H^-1 J H^-1, in log-strength units."""
    # H is the Hessian of the weighted loss, J the sum over battles of each battle's score outer
    # product: the same definition as LMArena's arena-rank. Like arena-rank we add
    # hessian_ridge * (total battles, or 1 when weighted) to H's diagonal. The all-ones direction
    # of each component has zero score variance, so the ridge only fixes the gauge there; elsewhere
    # it shrinks variances by about ridge / (per-battle information), roughly 0.1 % of a width.
    # hessian_ridge=0.0 gives the exact mean-zero-gauge covariance H^+ J H^+.
    _check_level(level)
    problem = _Problem.build(counts=counts, weights=weights)
    theta = _checked_log_strengths(log_strengths, counts.n_models)[problem.models]
    if not np.all(np.isfinite(theta)):
        raise ValueError("log_strengths must be finite for every model that has battles")
    unweighted = weights is None or bool(np.allclose(problem.weights, 1.0))
    ridge = hessian_ridge * (float(problem.battles.sum()) if unweighted else 1.0)
    win_prob = expit(problem.difference(theta))
    score_variance = problem.weights**2 * (
        problem.wins_a * (1.0 - win_prob) ** 2
        + problem.wins_b * win_prob**2
        + problem.ties * (0.5 - win_prob) ** 2
    )
    meat = problem.laplacian(score_variance)
    bread = problem.laplacian(problem.weighted_battles * win_prob * (1.0 - win_prob))
    # Adding the component projector makes the bread invertible without changing the result:
    # it acts only on the all-ones directions, which the meat annihilates.
    bread_inverse = np.linalg.inv(bread + ridge * np.eye(problem.size) + problem.gauge_projector)
    covariance = bread_inverse @ meat @ bread_inverse
    half_width = norm.ppf(0.5 + level / 2.0) * np.sqrt(np.clip(np.diag(covariance), 0.0, None))
    return problem.expand(theta - half_width), problem.expand(theta + half_width)


@dataclass(frozen=True)
class Resamples:
    """Multinomial resamples of a board's outcome cells, kept so a later refresh can extend them.

    The cells are the wins of a, the wins of b and the ties of each row of ``rows`` (model index
    pairs a, b), as three blocks of ``len(rows)``. Each line of ``draws`` is one round: a
    multinomial draw of ``cells.sum()`` battles with probabilities ``cells / cells.sum()``.
    ``samples`` holds each round's refitted log-strengths (NaN for a model without battles in that
    round), which the next refit starts from.
    """

    rows: Ints
    cells: Ints
    draws: NDArray[np.signedinteger[Any]]
    samples: Floats

    @property
    def rounds(self) -> int:
        return int(self.draws.shape[0])

    def renumbered(self, new_index: ArrayLike, n_models: int) -> Resamples:
        """The same resamples with model i renamed ``new_index[i]``, among ``n_models`` models."""
        mapping = np.asarray(new_index, dtype=np.int64)
        if mapping.shape != (self.samples.shape[1],):
            raise ValueError(
                f"new_index needs one entry per model ({self.samples.shape[1]}),"
                f" got shape {mapping.shape}"
            )
        if mapping.size and (mapping.min() < 0 or mapping.max() >= n_models):
            raise ValueError(f"new indices must lie in [0, {n_models})")
        samples = np.full((self.rounds, n_models), np.nan)
        samples[:, mapping] = self.samples
        return Resamples(
            rows=mapping[self.rows], cells=self.cells, draws=self.draws, samples=samples
        )


@dataclass(frozen=True)
class Bootstrap:
    """Percentile bounds in log-strength units, the resamples behind them, and whether those
    resamples extended earlier ones (True) or were drawn afresh (False)."""

    lower: Floats
    upper: Floats
    resamples: Resamples
    extended: bool

    @property
    def samples(self) -> Floats:
        return self.resamples.samples


def bootstrap(
    *,
    counts: PairCounts,
    rounds: int = 1000,
    rng: np.random.Generator,
    level: float = 0.95,
    weights: ArrayLike | None = None,
    log_strengths: ArrayLike | None = None,
    l2_prior: float = 1e-4,
    tol: float = 1e-6,
    max_iter: int = 100,
    previous: Resamples | None = None,
    threads: int = 1,
) -> Bootstrap:
    """Percentile intervals from multinomial resamples of the counts, refitted round by round.

    With ``previous`` (the resamples of an earlier call, in this call's model numbering) whose
    counts have only grown since, the earlier rounds are extended to the new counts instead of
    drawn again, which costs a few draws per new battle instead of one per cell. The extension is
    exact: each extended round is a multinomial draw from the new counts, as a fresh one is. Each
    of the N old draws of a round was uniform over the N old battles; re-pointing each one, with
    probability m / (N + m), to a uniform choice among the m new battles makes it uniform over
    all N + m, and m more uniform draws complete the round. Rounds are still independent of each
    other, but successive boards share most of their draws, so their bounds move smoothly instead
    of jumping by Monte Carlo noise at every refresh. Without ``previous``, when counts shrank,
    rows vanished or the number of rounds changed, or when so many battles were added that fresh
    draws are cheaper, the rounds are drawn afresh, in ``threads`` threads (the draws do not
    depend on how many).
    """
    # Each refit starts from the round's previous solution when there is one, else from the point
    # estimate, and takes simplified-Newton steps with the point estimate's Hessian, factorised
    # once: resamples stay near the data, so that Hessian is close to each round's own, and a step
    # is one matrix product across all rounds. A round whose steps stop shrinking fast (its graph
    # changed, or a model won everything) is refitted on its own with the full Newton fit. tol is
    # looser than the fit's because percentiles of resamples carry Monte Carlo error far above it:
    # 1e-6 log-units is 0.0002 display points, while 1000 rounds leave the bounds uncertain by
    # about a tenth of an interval's half-width.
    _check_level(level)
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    problem = _Problem.build(counts=counts, weights=weights)
    cells_float = np.concatenate([problem.wins_a, problem.wins_b, problem.ties])
    if not np.array_equal(cells_float, np.round(cells_float)):
        raise ValueError("bootstrap resampling needs whole-number counts")
    cells = cells_float.astype(np.int64)
    rows = np.column_stack([problem.models[problem.index_a], problem.models[problem.index_b]])
    total = int(cells.sum())
    if log_strengths is None:
        point = _newton(
            problem=problem,
            theta=np.zeros(problem.size),
            l2_prior=l2_prior,
            tol=tol,
            max_iter=max_iter,
        )
    else:
        point = _checked_log_strengths(log_strengths, counts.n_models)[problem.models]
    samples = np.full((rounds, counts.n_models), np.nan)
    if total == 0:
        empty = Resamples(
            rows=rows, cells=cells, draws=np.zeros((rounds, 0), np.int32), samples=samples
        )
        return Bootstrap(lower=samples[0], upper=samples[0], resamples=empty, extended=False)

    aligned = None
    if previous is not None and previous.rounds == rounds:
        aligned = _extendable(previous, rows=rows, cells=cells, n_models=counts.n_models)
    extended = aligned is not None
    if previous is not None and aligned is not None:
        old_cells, old_draws = aligned
        draws = _extend_draws(old_draws, old_cells=old_cells, new_cells=cells, rng=rng)
        start = previous.samples[:, problem.models]
        start = np.where(np.isnan(start), point, start)
    else:
        draws = _fresh_draws(cells, rounds=rounds, rng=rng, threads=threads)
        start = np.broadcast_to(point, (rounds, problem.size))

    win_prob = expit(problem.difference(point))
    hessian = problem.laplacian(problem.weighted_battles * win_prob * (1.0 - win_prob))
    projector = problem.gauge_projector
    inverse = np.asarray(
        np.linalg.inv(hessian + l2_prior * np.eye(problem.size) + projector), dtype=np.float64
    )
    incidence = problem.incidence
    played_by = abs(incidence).T.tocsr()
    n_rows = problem.rows
    weighted = not np.all(problem.weights == 1.0)
    row_weights = problem.weights[:, None]
    # Rounds go in chunks so the rows x rounds temporaries stay in cache.
    for first in range(0, rounds, 128):
        chunk = draws[first : first + 128]
        wins_a, wins_b, ties = (
            chunk[:, :n_rows],
            chunk[:, n_rows : 2 * n_rows],
            chunk[:, 2 * n_rows :],
        )
        # Integer sums, then one pass that converts and transposes to rows x rounds.
        battles = np.array((wins_a + wins_b + ties).T, dtype=np.float64, order="C")
        score = np.array((2 * wins_a + ties).T, dtype=np.float64, order="C")
        score *= 0.5
        if weighted:
            battles *= row_weights
            score *= row_weights
        if l2_prior > 0:
            # A model left without battles is pinned only by the prior; fit such rounds alone.
            own_fit = np.any(played_by @ battles == 0, axis=0)
        else:
            # Without a prior a resample that loses a row may split the graph, leaving an offset
            # between the parts that the batched steps cannot see; fit such rounds alone.
            own_fit = np.any(battles == 0, axis=0)
        theta = _batched_simplified_newton(
            start=start[first : first + chunk.shape[0]].T,
            inverse=inverse,
            incidence=incidence,
            projector=projector,
            battles=battles,
            score=score,
            skip=own_fit,
            l2_prior=l2_prior,
            tol=tol,
            max_iter=max_iter,
        )
        samples[first : first + theta.shape[0], problem.models] = theta
        for offset in np.flatnonzero(np.isnan(theta[:, 0])):
            resampled = PairCounts.from_arrays(
                a=rows[:, 0],
                b=rows[:, 1],
                wins_a=wins_a[offset],
                wins_b=wins_b[offset],
                ties=ties[offset],
                n_models=counts.n_models,
            )
            samples[first + offset] = fit_bradley_terry(
                counts=resampled,
                weights=problem.weights,
                l2_prior=l2_prior,
                tol=tol,
                max_iter=max_iter,
            )
    tail = (1.0 - level) / 2.0
    fitted = samples[:, problem.models]
    if np.isnan(fitted).any():
        # NaN marks a model a resample left without battles; the percentiles use the other rounds.
        bounds = np.nanquantile(fitted, [tail, 1.0 - tail], axis=0)
    else:
        bounds = np.quantile(fitted, [tail, 1.0 - tail], axis=0)
    resamples = Resamples(rows=rows, cells=cells, draws=draws, samples=samples)
    return Bootstrap(
        lower=problem.expand(bounds[0]),
        upper=problem.expand(bounds[1]),
        resamples=resamples,
        extended=extended,
    )


def rank_ub(*, lower: ArrayLike, upper: ArrayLike) -> Ints:
    """Rank (UB): 1 + the number of models whose lower bound is above this model's upper bound."""
    low = np.asarray(lower, dtype=np.float64)
    high = np.asarray(upper, dtype=np.float64)
    if low.shape != high.shape or low.ndim != 1:
        raise ValueError("lower and upper must be one-dimensional arrays of the same length")
    if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
        raise ValueError("bounds must be finite; leave out models without battles")
    if np.any(low > high):
        raise ValueError("every lower bound must be at most its upper bound")
    above = low.size - np.searchsorted(np.sort(low), high, side="right")
    return np.asarray(1 + above, dtype=np.int64)


def online_elo(
    *,
    a: ArrayLike,
    b: ArrayLike,
    outcome: ArrayLike,
    n_models: int,
    k: float = 4.0,
    scale: float = 400.0,
    base: float = 10.0,
    init: float = 1000.0,
) -> Floats:
    """Sequential Elo over votes in order (outcome 1 a wins, 0 b wins, 0.5 tie), for comparison."""
    side_a = np.asarray(a, dtype=np.int64)
    side_b = np.asarray(b, dtype=np.int64)
    result = np.asarray(outcome, dtype=np.float64)
    if not (side_a.shape == side_b.shape == result.shape) or side_a.ndim != 1:
        raise ValueError("a, b and outcome must be one-dimensional arrays of the same length")
    if side_a.size and (
        min(side_a.min(), side_b.min()) < 0 or max(side_a.max(), side_b.max()) >= n_models
    ):
        raise ValueError(f"model indices must lie in [0, {n_models})")
    ratings = [init] * n_models
    # Each update depends on the previous one, so this loop cannot be vectorised; plain Python
    # floats are several times faster than numpy scalars here.
    for i, j, won in zip(side_a.tolist(), side_b.tolist(), result.tolist(), strict=True):
        change = elo_change(
            rating_a=ratings[i], rating_b=ratings[j], outcome=won, k=k, scale=scale, base=base
        )
        ratings[i] += change
        ratings[j] -= change
    return np.asarray(ratings, dtype=np.float64)


def elo_change(
    *,
    rating_a: float,
    rating_b: float,
    outcome: float,
    k: float = 4.0,
    scale: float = 400.0,
    base: float = 10.0,
) -> float:
    """One online Elo step: what side a gains (side b loses the same) for one vote's outcome."""
    expected = 1.0 / (1.0 + float(base) ** ((rating_b - rating_a) / scale))
    return float(k * (outcome - expected))


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


# Internals -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Problem:
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
    def build(cls, *, counts: PairCounts, weights: ArrayLike | None) -> _Problem:
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
        models = np.flatnonzero(_battles_per_model(counts) > 0).astype(np.int64)
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


def _newton(
    *, problem: _Problem, theta: Floats, l2_prior: float, tol: float, max_iter: int
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
        step = -cho_solve(cho_factor(hessian), gradient)
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


def _batched_simplified_newton(
    *,
    start: Floats,
    inverse: Floats,
    incidence: Any,
    projector: Floats,
    battles: Floats,
    score: Floats,
    skip: NDArray[np.bool_],
    l2_prior: float,
    tol: float,
    max_iter: int,
) -> Floats:
    """Refit resamples (rows x rounds) from start (models x rounds) with the point estimate's
    inverse Hessian; failures NaN."""
    rounds = battles.shape[1]
    # Models x rounds, so that the sparse products and the exponentials run over contiguous memory.
    theta = np.array(start, dtype=np.float64, order="C")
    incidence_t = incidence.T.tocsr()
    previous = np.full(rounds, np.inf)
    converged = np.zeros(rounds, dtype=bool)
    failed = skip.copy()
    with np.errstate(over="ignore", invalid="ignore"):
        for iteration in range(max_iter):
            # In-place logistic: several times faster than scipy's expit on large blocks.
            win_prob = np.negative(incidence @ theta)
            np.exp(win_prob, out=win_prob)
            win_prob += 1.0
            np.reciprocal(win_prob, out=win_prob)
            win_prob *= battles
            win_prob -= score
            step = -(inverse @ (incidence_t @ win_prob + l2_prior * theta))
            size = np.max(np.abs(step), axis=0)
            ratio = size / previous
            running = ~(converged | failed)
            theta[:, running] += step[:, running]
            # The fixed Hessian makes convergence linear with a small ratio q between successive
            # steps, and the error left after a step of size s is then about s * q / (1 - q).
            # A ratio above one half means this round's own Hessian differs too much (its graph
            # changed, or a model won everything), so a small step would not mean a small error.
            settled = (ratio < 0.5) & (size * ratio < tol * (1.0 - ratio))
            small = settled | (size < 1e-3 * tol)
            converged |= running & small & (iteration >= 1)
            failed |= running & ~converged & (iteration >= 2) & ~(ratio < 0.5)
            previous = size
            if np.all(converged | failed):
                break
    theta[:, ~converged] = np.nan
    # Steps keep each component's mean at zero in exact arithmetic; this removes rounding drift
    # (NaN rounds stay NaN).
    return np.asarray((theta - projector @ theta).T, dtype=np.float64)


def _fresh_draws(
    cells: Ints, *, rounds: int, rng: np.random.Generator, threads: int = 1
) -> NDArray[Any]:
    """rounds multinomial draws of cells.sum() battles over the cells, one round per line."""
    total = int(cells.sum())
    probabilities = cells / total
    draws = np.empty((rounds, cells.size), dtype=np.int32 if total < 2**31 else np.int64)
    # In chunks of 128 rounds, so numpy's int64 result for all rounds never exists at once. Each
    # chunk has a generator of its own, spawned from rng, so the draws are the same whatever the
    # number of threads; numpy releases the GIL while it draws, so threads run in parallel.
    starts = range(0, rounds, 128)
    generators = rng.spawn(len(starts))

    def fill(first: int, generator: np.random.Generator) -> None:
        size = min(128, rounds - first)
        draws[first : first + size] = generator.multinomial(total, probabilities, size=size)

    if threads > 1 and len(starts) > 1:
        with ThreadPoolExecutor(max_workers=min(threads, len(starts))) as pool:
            list(pool.map(fill, starts, generators))
    else:
        for first, generator in zip(starts, generators, strict=True):
            fill(first, generator)
    return draws


def _extendable(
    previous: Resamples, *, rows: Ints, cells: Ints, n_models: int
) -> tuple[Ints, NDArray[Any]] | None:
    """previous's cells and draws laid out on these rows, when extending previous to these
    cells is possible and cheaper than fresh draws; else None."""
    if previous.samples.shape[1] != n_models or previous.draws.shape[1] != previous.cells.size:
        return None
    n_old, n_new = previous.rows.shape[0], rows.shape[0]
    new_keys = rows[:, 0] * n_models + rows[:, 1]
    old_keys = previous.rows[:, 0] * n_models + previous.rows[:, 1]
    order = np.argsort(new_keys)
    found = np.searchsorted(new_keys, old_keys, sorter=order)
    if np.any(found >= n_new):
        return None
    position = order[found]
    if not np.array_equal(new_keys[position], old_keys):
        return None  # a row vanished: its battles were taken away
    columns = np.concatenate([position + block * n_new for block in range(3)])
    old_cells = np.zeros_like(cells)
    old_cells[columns] = previous.cells
    added = int(cells.sum() - old_cells.sum())
    # Extending costs about three draws per round per added battle, a fresh round one binomial
    # draw per cell, several times dearer than a uniform draw (bench_ratings.py measures both).
    if np.any(old_cells > cells) or old_cells.sum() == 0 or 2 * added > cells.size:
        return None
    if n_old == n_new and np.array_equal(position, np.arange(n_new)):
        draws = previous.draws
    else:
        draws = np.zeros((previous.rounds, cells.size), dtype=previous.draws.dtype)
        draws[:, columns] = previous.draws
    return old_cells, draws


def _extend_draws(
    draws: NDArray[Any], *, old_cells: Ints, new_cells: Ints, rng: np.random.Generator
) -> NDArray[Any]:
    """Multinomial rounds over old_cells extended to rounds over new_cells (>= old_cells).

    Battles are numbered cell by cell, and so are a round's draws; a draw falls in the cell whose
    battles it picked. Per round, k ~ Binomial(N, m / (N + m)) of its N draws, a uniform random
    subset, move to uniform choices among the m new battles, and m more draws pick uniformly
    among all N + m battles.
    """
    rounds, n_cells = draws.shape
    old_total, new_total = int(old_cells.sum()), int(new_cells.sum())
    added = new_total - old_total
    # A copy, widened if the new totals no longer fit the old integer type.
    draws = draws.astype(np.int64 if new_total >= 2**31 else draws.dtype)
    if added == 0:
        return draws
    moved = np.asarray(rng.binomial(old_total, added / new_total, size=rounds), dtype=np.int64)
    round_of_moved = np.repeat(np.arange(rounds, dtype=np.int64), moved)
    # Distinct positions among each round's draws, as round * N + position, in sorted order.
    keys = round_of_moved * old_total + rng.integers(0, old_total, size=round_of_moved.size)
    while True:
        order = np.argsort(keys)
        ordered = keys[order]
        repeats = np.flatnonzero(ordered[1:] == ordered[:-1]) + 1
        if repeats.size == 0:
            break
        again = order[repeats]
        keys[again] = round_of_moved[again] * old_total + rng.integers(
            0, old_total, size=again.size
        )
    # Sorted keys group by round in round order, as round_of_moved does.
    cumulative = np.cumsum(draws, axis=1, dtype=draws.dtype)
    ends = np.cumsum(moved).tolist()
    positions = (ordered - round_of_moved * old_total).astype(cumulative.dtype)
    removed = np.empty(ordered.size, dtype=np.int64)
    first = 0
    for r, last in enumerate(ends):
        if last > first:
            removed[first:last] = np.searchsorted(
                cumulative[r], positions[first:last], side="right"
            )
        first = last
    removed += round_of_moved * n_cells
    changed = np.flatnonzero(new_cells - old_cells)
    repointed = changed[
        _shuffled_categorical(new_cells[changed] - old_cells[changed], int(moved.sum()), rng)
    ]
    extra = _shuffled_categorical(new_cells, rounds * added, rng)
    flat = draws.reshape(-1)
    _add_to(
        flat,
        np.concatenate(
            [
                repointed + round_of_moved * n_cells,
                extra + np.repeat(np.arange(rounds, dtype=np.int64), added) * n_cells,
            ]
        ),
        1,
    )
    _add_to(flat, removed, -1)
    return draws


def _shuffled_categorical(weights: Ints, size: int, rng: np.random.Generator) -> Ints:
    """size independent draws of an index with probability weights / weights.sum(), in random
    order: the counts per index are one multinomial draw, then the order is shuffled."""
    per_index = rng.multinomial(size, weights / weights.sum())
    return np.asarray(
        rng.permutation(np.repeat(np.arange(weights.size, dtype=np.int64), per_index)),
        dtype=np.int64,
    )


def _add_to(flat: NDArray[Any], indices: Ints, sign: int) -> None:
    """flat[i] += sign once for every occurrence of i in indices (repeats accumulate)."""
    if indices.size == 0:
        return
    ordered = np.sort(indices)
    starts = np.flatnonzero(np.concatenate([[True], ordered[1:] != ordered[:-1]]))
    repeats = np.diff(np.append(starts, ordered.size))
    flat[ordered[starts]] += (sign * repeats).astype(flat.dtype)


def _battles_per_model(counts: PairCounts) -> Floats:
    battles = counts.battles
    return np.asarray(
        np.bincount(counts.a, battles, counts.n_models)
        + np.bincount(counts.b, battles, counts.n_models),
        dtype=np.float64,
    )


def _read_only(values: ArrayLike, dtype: type[np.generic]) -> NDArray[Any]:
    copy = np.array(values, dtype=dtype, copy=True)
    copy.setflags(write=False)
    return copy


def _checked_log_strengths(log_strengths: ArrayLike, n_models: int) -> Floats:
    theta = np.asarray(log_strengths, dtype=np.float64)
    if theta.shape != (n_models,):
        raise ValueError(f"log_strengths must have shape ({n_models},), got {theta.shape}")
    return theta


def _check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie strictly between 0 and 1, got {level}")


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
