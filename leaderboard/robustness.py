"""Votes to flip: how few votes, removed, would change a model's place on the board.

Pure numerical code (numpy and scipy only). For each model the question is the smallest number
of votes whose removal changes its Rank (UB) or swaps it with a neighbour in rating order.
Searching all subsets is hopeless beyond toy boards, so, as in the "approximate maximum
influence perturbation" literature, votes are ordered by their first-order influence on the
margin that must close, and only the number removed along that order is searched, each
candidate confirmed by a real refit of the counts and of the sandwich intervals. The answer is
therefore an upper bound that a refit has verified: removing that many votes does flip the
model, and removing one vote fewer along the same order does not.

A vote's influence: removing one vote with outcome score s (1, 0 or 1/2 for side a) from a row
(a, b) with fitted win probability p moves the log-strengths by about (p - s) H^-1 (e_a - e_b),
so a margin c^T theta moves by (p - s) (w_a - w_b) with w = H^-1 c: one solve per margin.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

# ndtri is norm.ppf, without the import of scipy.stats (a second of every start).
from scipy.special import expit, ndtri

from leaderboard import ratings
from leaderboard.ratings import PairCounts

Floats = NDArray[np.float64]
Ints = NDArray[np.int64]

NO_FLIP = -1  # no removal along the searched orders flips the model
TRIED_ORDERS = 4  # removal orders searched per model, most promising first
# Outcome scores of the three cells of a row: side a won, side b won, a tie.
CELL_SCORES = np.array([1.0, 0.0, 0.5])


@dataclass(frozen=True)
class _Board:
    """One fit of (possibly reduced) counts: log-strengths, half-widths and Rank (UB)."""

    theta: Floats
    half: Floats
    rank: Ints
    group: Ints


@dataclass
class _Refitter:
    """Refits the counts with some votes removed, warm-started from the full fit."""

    a: Ints
    b: Ints
    group: Ints
    projector: Floats
    theta: Floats
    l2_prior: float
    ridge: float
    z: float
    anchor: int | None
    refits: int = 0
    # Filled by prepare(): the full fit's inverse Hessian and the Laplacian's bin indices.
    inverse: Floats | None = None
    flat: Ints | None = None

    def prepare(self, cells: Floats) -> None:
        m = self.theta.size
        self.flat = np.concatenate(
            [self.a * (m + 1), self.b * (m + 1), self.a * m + self.b, self.b * m + self.a]
        )
        p = expit(self.theta[self.a] - self.theta[self.b])
        hessian = self.laplacian(cells.sum(axis=1) * p * (1 - p))
        self.inverse = np.asarray(
            np.linalg.inv(hessian + self.l2_prior * np.eye(m) + self.projector), dtype=np.float64
        )

    def laplacian(self, per_row: Floats) -> Floats:
        m = self.theta.size
        assert self.flat is not None
        values = np.concatenate((per_row, per_row, -per_row, -per_row))
        return np.asarray(np.bincount(self.flat, values, m * m).reshape(m, m), dtype=np.float64)

    def fit(self, cells: Floats) -> Floats:
        """The log-strengths refitted to ``cells``."""
        assert self.inverse is not None
        self.refits += 1
        m = self.theta.size
        battles = cells.sum(axis=1)
        score = cells[:, 0] + 0.5 * cells[:, 2]
        theta = self.theta.copy()
        # Simplified Newton with the full fit's Hessian: a few removed votes change it little,
        # so steps shrink fast and each costs one pass over the rows and one small product.
        previous = np.inf
        for _ in range(60):
            p = expit(theta[self.a] - theta[self.b])
            gradient = _scatter(self.a, self.b, battles * p - score, m) + self.l2_prior * theta
            step = self.inverse @ gradient
            theta -= step
            size = float(np.max(np.abs(step)))
            if size < 1e-10:
                return theta - self.projector @ theta
            if size > 0.5 * previous:
                break  # this removal changed the Hessian too much: full Newton below
            previous = size
        theta = self._newton(theta, battles, score)
        return theta - self.projector @ theta

    def board(self, cells: Floats, theta: Floats) -> _Board:
        """Sandwich half-widths and Rank (UB) of a fit of ``cells``."""
        m = theta.size
        wins_a, wins_b, ties = cells[:, 0], cells[:, 1], cells[:, 2]
        p = expit(theta[self.a] - theta[self.b])
        meat = self.laplacian(wins_a * (1 - p) ** 2 + wins_b * p**2 + ties * (0.5 - p) ** 2)
        bread = self.laplacian((wins_a + wins_b + ties) * p * (1 - p))
        inverse = np.linalg.inv(bread + self.ridge * np.eye(m) + self.projector)
        covariance = inverse @ meat @ inverse
        variance = np.diag(covariance).copy()
        if self.anchor is not None:
            variance += covariance[self.anchor, self.anchor] - 2.0 * covariance[:, self.anchor]
        half = self.z * np.sqrt(np.clip(variance, 0.0, None))
        return _Board(theta=theta, half=half, rank=_rank(theta, half, self.group), group=self.group)

    def _newton(self, theta: Floats, battles: Floats, score: Floats) -> Floats:
        m = theta.size
        for _ in range(100):
            p = expit(theta[self.a] - theta[self.b])
            gradient = _scatter(self.a, self.b, battles * p - score, m) + self.l2_prior * theta
            hessian = self.laplacian(battles * p * (1 - p))
            step = -np.linalg.solve(hessian + self.l2_prior * np.eye(m) + self.projector, gradient)
            theta = theta + step
            if np.max(np.abs(step)) < 1e-10:
                return theta
        raise ratings.ConvergenceError("votes to flip: a refit did not converge")


def votes_to_flip(
    *,
    counts: PairCounts,
    log_strengths: ArrayLike,
    anchor: int | None = None,
    level: float = 0.95,
    l2_prior: float = 1e-4,
    hessian_ridge: float = 1e-5,
    max_refits_per_model: int = 8,
) -> Ints:
    """For each model with battles in ``counts``, the fewest votes found whose removal changes
    its Rank (UB) (sandwich intervals at ``level``, relative to ``anchor`` if given) or swaps
    it with its neighbour above or below in its group; NO_FLIP where none was found, and for
    models without battles. ``counts`` should be the bounded core (bounds.core_counts) and
    ``log_strengths`` its fit (NaN outside it)."""
    theta_full = np.asarray(log_strengths, dtype=np.float64)
    n = counts.n_models
    result = np.full(n, NO_FLIP, dtype=np.int64)
    played = np.flatnonzero(
        (np.bincount(counts.a, counts.battles, n) + np.bincount(counts.b, counts.battles, n)) > 0
    )
    if played.size < 2:
        return result
    renumber = np.full(n, -1)
    renumber[played] = np.arange(played.size)
    rows = counts.battles > 0
    a, b = renumber[counts.a[rows]], renumber[counts.b[rows]]
    cells = np.column_stack([counts.wins_a[rows], counts.wins_b[rows], counts.ties[rows]])
    group = np.unique(ratings.components(counts)[played], return_inverse=True)[1]
    m = played.size
    indicator = np.zeros((m, int(group.max()) + 1))
    indicator[np.arange(m), group] = 1.0
    projector = (indicator / indicator.sum(axis=0)) @ indicator.T
    local_anchor = None if anchor is None else int(renumber[anchor])
    if local_anchor is not None and local_anchor < 0:
        raise ValueError(f"anchor {anchor} has no battles in these counts")
    refitter = _Refitter(
        a=a,
        b=b,
        group=np.asarray(group, dtype=np.int64),
        projector=projector,
        theta=theta_full[played] - projector @ theta_full[played],
        l2_prior=l2_prior,
        ridge=hessian_ridge * float(cells.sum()),
        z=float(ndtri(0.5 + level / 2.0)),
        anchor=local_anchor,
    )
    refitter.prepare(cells)
    base = refitter.board(cells, refitter.fit(cells))
    refitter.theta = base.theta
    inverse = refitter.inverse
    assert inverse is not None
    p = expit(base.theta[a] - base.theta[b])
    # Per removed vote, the change of every log-strength difference is (p - s) (w_a - w_b).
    per_vote = p[:, None] - CELL_SCORES[None, :]  # rows x 3
    for i in range(m):
        targets = _targets(i, base)
        best = NO_FLIP
        ordered = []
        for direction, margin in targets:
            w = inverse @ direction
            effect = per_vote * (w[a] - w[b])[:, None]  # change of the margin per removed vote
            order, k = _predicted(effect, cells, margin)
            if k is not None:
                ordered.append((k, order))
        ordered.sort(key=lambda item: item[0])
        budget = max_refits_per_model
        for predicted, order in ordered[:TRIED_ORDERS]:
            if best != NO_FLIP and predicted >= best:
                break
            found, used = _search(refitter, base, cells, order, predicted, i, budget)
            budget -= used
            if found != NO_FLIP and (best == NO_FLIP or found < best):
                best = found
            if budget <= 0:
                break
        result[played[i]] = best
    return result


def flipped(before: _Board, after: _Board, model: int) -> bool:
    """Whether ``model`` changed Rank (UB) or swapped with a neighbour of ``before``."""
    return bool(after.rank[model] != before.rank[model]) or _swapped(
        before.theta, after.theta, model, before
    )


def _swapped(theta_before: Floats, theta_a: Floats, model: int, before: _Board) -> bool:
    """Whether ``model`` and a neighbour of ``before`` changed order."""
    above, below = _neighbours(model, before)
    if above is not None and theta_a[above] - theta_a[model] < 0:
        return True
    return below is not None and theta_a[model] - theta_a[below] < 0


# Internals -------------------------------------------------------------------------------------


def _neighbours(model: int, board: _Board) -> tuple[int | None, int | None]:
    """The models just above and just below ``model`` in rating order within its group."""
    theta = board.theta
    same = np.flatnonzero(board.group == board.group[model])
    others = same[same != model]
    higher = others[theta[others] > theta[model]]
    lower = others[theta[others] <= theta[model]]
    above = int(higher[np.argmin(theta[higher])]) if higher.size else None
    below = int(lower[np.argmax(theta[lower])]) if lower.size else None
    return above, below


def _targets(model: int, board: _Board) -> list[tuple[Floats, float]]:
    """Margins (direction c, value c^T theta > 0 to be pushed to 0) whose closing flips the
    model: the swaps with each neighbour, and the nearest bound crossings for Rank (UB)."""
    theta, half = board.theta, board.half
    m = theta.size
    above, below = _neighbours(model, board)
    targets = []

    def unit(i: int, j: int) -> Floats:
        c = np.zeros(m)
        c[i] += 1.0
        c[j] -= 1.0
        return c

    if above is not None:
        targets.append((unit(above, model), float(theta[above] - theta[model])))
    if below is not None:
        targets.append((unit(model, below), float(theta[model] - theta[below])))
    group = board.group
    others = np.flatnonzero((group == group[model]) & (np.arange(m) != model))
    if others.size:
        gap = (theta[others] - half[others]) - (theta[model] + half[model])
        beating = others[gap > 0]
        if beating.size:  # the nearest model surely above: if it stops being, the rank improves
            j = int(beating[np.argmin(gap[gap > 0])])
            targets.append((unit(j, model), float(np.min(gap[gap > 0]))))
        close = others[gap <= 0]
        if close.size:  # the nearest model not surely above: if it becomes so, the rank worsens
            j = int(close[np.argmax(gap[gap <= 0])])
            targets.append((unit(model, j), float(-np.max(gap[gap <= 0]))))
    return targets


def _predicted(
    effect: Floats, cells: Floats, margin: float
) -> tuple[NDArray[np.int64], int | None]:
    """Cells (flat indices into rows x 3) in order of how much one removed vote closes the
    margin, and the first-order number of votes to close it (None if it cannot)."""
    flat_effect = effect.ravel()
    available = cells.ravel()
    usable = np.flatnonzero((flat_effect < 0) & (available > 0))
    # Usually a handful of cells close the margin: sort the strongest few first, and all of
    # them only when those are not enough (with room to spare for the search beyond).
    for take in (64, usable.size):
        if take < usable.size:
            head = usable[np.argpartition(flat_effect[usable], take)[:take]]
        else:
            head = usable
        order = head[np.argsort(flat_effect[head], kind="stable")]
        gains = -flat_effect[order] * available[order]
        reached = np.cumsum(gains)
        if take >= usable.size or (reached.size and reached[-1] >= 2.0 * margin):
            break
    full = int(np.searchsorted(reached, margin, side="left"))
    if full >= order.size:
        return order, None
    before = float(reached[full - 1]) if full else 0.0
    partial = int(np.ceil((margin - before) / -flat_effect[order[full]]))
    return order, int(available[order[:full]].sum()) + max(partial, 1)


def _removed(cells: Floats, order: NDArray[np.int64], k: int) -> Floats:
    """The counts with the first k votes along ``order`` removed."""
    flat = cells.ravel().copy()
    taken = np.minimum(np.cumsum(flat[order]), k)
    per_cell = np.diff(np.concatenate([[0.0], taken]))
    flat[order] -= per_cell
    return flat.reshape(cells.shape)


def _search(
    refitter: _Refitter,
    base: _Board,
    cells: Floats,
    order: NDArray[np.int64],
    predicted: int,
    model: int,
    budget: int,
) -> tuple[int, int]:
    """The smallest k along ``order`` whose removal flips ``model``, searched from the
    first-order prediction within ``budget`` refits, and the refits used. A returned k always
    flips (a refit said so); it is the minimum along the order when k - 1 was refitted too,
    which the budget allows whenever the prediction is off by a few votes or less."""
    limit = int(cells.ravel()[order].sum())
    start = refitter.refits

    def flips(k: int) -> bool:
        removed = _removed(cells, order, k)
        theta = refitter.fit(removed)
        if _swapped(base.theta, theta, model, base):
            return True  # a swap needs no intervals
        return bool(refitter.board(removed, theta).rank[model] != base.rank[model])

    def spent() -> bool:
        return refitter.refits - start >= budget

    low, k = 0, min(max(predicted, 1), limit)
    while not flips(k):
        if k >= limit or spent():
            return NO_FLIP, refitter.refits - start
        low, k = k, min(limit, max(k + 1, int(np.ceil(k * 1.5))))
    high = k
    probe = high - 1  # a good prediction is exact or one vote off: try just below first
    while high - low > 1 and not spent():
        if flips(probe):
            high = probe
        else:
            low = probe
        probe = (low + high) // 2
    return high, refitter.refits - start


def _rank(theta: Floats, half: Floats, group: Ints) -> Ints:
    lower, upper = theta - half, theta + half
    same = group[:, None] == group[None, :]
    return np.asarray(1 + np.sum(same & (lower[None, :] > upper[:, None]), axis=1), np.int64)


def _scatter(a: Ints, b: Ints, per_row: Floats, m: int) -> Floats:
    return np.asarray(np.bincount(a, per_row, m) - np.bincount(b, per_row, m), dtype=np.float64)
