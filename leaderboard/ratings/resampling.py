"""Bootstrap intervals from multinomial resamples of the counts, extendable refresh to refresh."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import expit

from leaderboard.ratings.counts import Floats, Ints, PairCounts
from leaderboard.ratings.fit import Problem, checked_log_strengths, fit_bradley_terry, newton
from leaderboard.ratings.intervals import check_level


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
    check_level(level)
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    problem = Problem.build(counts=counts, weights=weights)
    cells_float = np.concatenate([problem.wins_a, problem.wins_b, problem.ties])
    if not np.array_equal(cells_float, np.round(cells_float)):
        raise ValueError("bootstrap resampling needs whole-number counts")
    cells = cells_float.astype(np.int64)
    rows = np.column_stack([problem.models[problem.index_a], problem.models[problem.index_b]])
    total = int(cells.sum())
    if log_strengths is None:
        point = newton(
            problem=problem,
            theta=np.zeros(problem.size),
            l2_prior=l2_prior,
            tol=tol,
            max_iter=max_iter,
        )
    else:
        point = checked_log_strengths(log_strengths, counts.n_models)[problem.models]
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
