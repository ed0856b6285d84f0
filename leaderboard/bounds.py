"""What the data can and cannot say about each model: bounded cores, open intervals, intervals
relative to an anchor, family-wise intervals, rank confidence sets, Rank (UB) within groups.

Pure numerical code like ``leaderboard.ratings``: numpy and scipy only, arrays in and out.

Why a model can be unbounded. With ties counted as half a win, the Bradley-Terry MLE of a
connected group exists exactly when the directed graph "i scored against j" (i won or tied a
battle against j) is strongly connected. A model that never scored against the rest (it lost
every battle) has its MLE at minus infinity; one the rest never scored against sits at plus
infinity. A model with only ties has a finite MLE, but no decisive outcome to measure its
uncertainty with: its sandwich variance is zero and every bootstrap round gives the same answer.
Such ratings come from the fit's tiny L2 prior, not from the data, so they are not shown as
numbers: each group's *core* (its largest strongly connected set of models with decisive
outcomes) is fitted alone, and every other model gets an open interval, with a finite one-sided
bound where it met the core directly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

# ndtri is norm.ppf, without the import of scipy.stats (a second of every start).
from scipy.special import expit, log_expit, ndtri

from leaderboard import ratings
from leaderboard.ratings import PairCounts

Floats = NDArray[np.float64]
Ints = NDArray[np.int64]
Bools = NDArray[np.bool_]

# Why a model's interval is open; the page turns each into a plain sentence.
BOUNDED = ""
BELOW = "below"  # never scored against the core: only an upper bound
ABOVE = "above"  # the core never scored against it: only a lower bound
UNBOUNDED = "unbounded"  # only ties, or no link to a core: no bound either way
# Display scale: points per natural-log unit, as ratings.to_display's defaults.
POINTS_PER_LOG = 400.0 / float(np.log(10.0))


@dataclass(frozen=True)
class Evidence:
    """Which models the counts bound: ``core`` models are fitted; ``status`` says why the
    others are open (BELOW, ABOVE or UNBOUNDED; BOUNDED for the core and unplayed models)."""

    core: Bools
    status: NDArray[np.str_]
    group: Ints  # connected group of each model (comparison graph), as ratings.components


def evidence(counts: PairCounts) -> Evidence:
    """Find each group's core and the direction in which every other model is open."""
    n = counts.n_models
    group = ratings.components(counts)
    played = _battles_per_model(counts) > 0
    score_a = counts.wins_a + counts.ties  # side a scored against side b
    score_b = counts.wins_b + counts.ties
    decisive = counts.wins_a + counts.wins_b
    alive = played.copy()
    core = np.zeros(n, dtype=bool)
    # Removing a model with no decisive outcome can split its core, so repeat until stable.
    for _ in range(n + 1):
        keep = alive[counts.a] & alive[counts.b]
        strong = _strong_components(counts.a[keep], counts.b[keep], score_a[keep], score_b[keep], n)
        core = _largest_per_group(strong, group, alive, counts, decisive)
        inside = keep & core[counts.a] & core[counts.b]
        per_model = np.bincount(counts.a[inside], decisive[inside], n) + np.bincount(
            counts.b[inside], decisive[inside], n
        )
        tie_only = core & (per_model == 0)
        if not tie_only.any():
            break
        alive &= ~tie_only
    status = np.full(n, BOUNDED, dtype="<U10")
    outside = played & ~core
    status[outside] = UNBOUNDED
    below = _reachable(counts.a, counts.b, score_a, score_b, n, start=core, forward=True)
    above = _reachable(counts.a, counts.b, score_a, score_b, n, start=core, forward=False)
    # A model tied into the core reaches it both ways: it stays UNBOUNDED.
    status[outside & below & ~above] = BELOW
    status[outside & above & ~below] = ABOVE
    return Evidence(core=core, status=status, group=group)


def core_counts(counts: PairCounts, core: ArrayLike) -> PairCounts:
    """The counts with every row that touches a model outside ``core`` removed."""
    inside = np.asarray(core, dtype=bool)
    keep = inside[counts.a] & inside[counts.b]
    return PairCounts.from_arrays(
        a=counts.a[keep],
        b=counts.b[keep],
        wins_a=counts.wins_a[keep],
        wins_b=counts.wins_b[keep],
        ties=counts.ties[keep],
        n_models=counts.n_models,
    )


def one_sided_bounds(
    *, counts: PairCounts, evidence: Evidence, log_strengths: ArrayLike, level: float = 0.95
) -> tuple[Floats, Floats]:
    """Log-strength bounds of the open models, from their battles against the core alone.

    A model that lost all its n_j battles against core models j has, at level 1 - 2 alpha, the
    upper bound u solving prod_j (1 - p(u - theta_j))^n_j = alpha: the strength at which so
    clean a record has a chance alpha (for 95%, alpha = 2.5%, the tail of a two-sided interval).
    Mirrored for a model that won them all. Models without direct battles against the core keep
    both bounds infinite; core models get NaN (their intervals come from the fit).
    """
    theta = np.asarray(log_strengths, dtype=np.float64)
    alpha = (1.0 - level) / 2.0
    n = counts.n_models
    lower = np.full(n, -np.inf)
    upper = np.full(n, np.inf)
    lower[evidence.core] = upper[evidence.core] = np.nan
    battles = counts.battles
    open_models = np.flatnonzero((evidence.status == BELOW) | (evidence.status == ABOVE))
    # Imported here, not with the module: scipy.optimize is a quarter of the web server's start.
    from scipy.optimize import brentq

    for model in open_models.tolist():
        opponents, played = _against_core(counts, battles, evidence.core, model)
        if opponents.size == 0:
            continue
        strengths = theta[opponents]
        sign = -1.0 if evidence.status[model] == BELOW else 1.0

        def clean_record(
            x: float, s: Floats = strengths, n_j: Floats = played, sign: float = sign
        ) -> float:
            # log P(every battle goes the way it went) - log alpha; monotone in x.
            return float(np.sum(n_j * log_expit(sign * (x - s)))) - float(np.log(alpha))

        span = 50.0 + float(np.abs(strengths).max())
        bound = brentq(clean_record, -span, span, xtol=1e-10)
        if sign < 0:
            upper[model] = bound
        else:
            lower[model] = bound
    return lower, upper


def sandwich_covariance(
    *, counts: PairCounts, log_strengths: ArrayLike, hessian_ridge: float = 1e-5
) -> Floats:
    """The robust covariance H^-1 J H^-1 of the log-strengths in each group's mean-zero gauge
    (rows and columns of models without battles are NaN); as ratings.sandwich_intervals."""
    theta = np.asarray(log_strengths, dtype=np.float64)
    n = counts.n_models
    played = _battles_per_model(counts) > 0
    models = np.flatnonzero(played)
    renumber = np.full(n, -1)
    renumber[models] = np.arange(models.size)
    rows = counts.battles > 0
    a, b = renumber[counts.a[rows]], renumber[counts.b[rows]]
    wins_a, wins_b, ties = counts.wins_a[rows], counts.wins_b[rows], counts.ties[rows]
    p = expit(theta[models][a] - theta[models][b])
    m = models.size
    meat = _laplacian(a, b, wins_a * (1 - p) ** 2 + wins_b * p**2 + ties * (0.5 - p) ** 2, m)
    bread = _laplacian(a, b, (wins_a + wins_b + ties) * p * (1 - p), m)
    group = ratings.components(counts)[models]
    _, labels = np.unique(group, return_inverse=True)
    indicator = np.zeros((m, int(labels.max(initial=-1)) + 1))
    indicator[np.arange(m), labels] = 1.0
    projector = (indicator / indicator.sum(axis=0)) @ indicator.T
    ridge = hessian_ridge * float(counts.battles.sum())
    inverse = np.linalg.inv(bread + ridge * np.eye(m) + projector)
    full = np.full((n, n), np.nan)
    full[np.ix_(models, models)] = inverse @ meat @ inverse
    return full


def relative_half_widths(
    *, covariance: ArrayLike, anchor: int | None, level: float = 0.95, family: int = 1
) -> Floats:
    """Half-widths of normal intervals, from the covariance, of each model's log-strength
    relative to ``anchor`` (var_i + var_anchor - 2 cov_i,anchor), or in the mean-zero gauge
    without one. ``family`` > 1 applies Bonferroni: each interval at level 1 - (1-level)/family,
    so all ``family`` intervals hold together with probability at least ``level``."""
    z = float(ndtri(1.0 - (1.0 - level) / (2.0 * max(family, 1))))
    return np.asarray(z * relative_standard_errors(covariance=covariance, anchor=anchor))


def relative_standard_errors(*, covariance: ArrayLike, anchor: int | None) -> Floats:
    """Standard error of each model's log-strength relative to ``anchor``, or in the mean-zero
    gauge without one, from a covariance."""
    cov = np.asarray(covariance, dtype=np.float64)
    variance = np.diag(cov).copy()
    if anchor is not None:
        variance = variance + cov[anchor, anchor] - 2.0 * cov[:, anchor]
    return np.asarray(np.sqrt(np.clip(variance, 0.0, None)), dtype=np.float64)


def bootstrap_bounds(
    *,
    samples: ArrayLike,
    log_strengths: ArrayLike,
    anchor: int | None,
    level: float = 0.95,
    simultaneous: bool = False,
    scale: ArrayLike | None = None,
) -> tuple[Floats, Floats]:
    """Bootstrap bounds from resampled log-strengths (rounds x models, NaN where a round had no
    battles for a model), each round taken relative to ``anchor`` when given.

    Marginal: percentiles per model, as FastChat's per-round anchoring does. Simultaneous: the
    max-statistic bootstrap, theta_hat +- c * s with c the level-quantile over rounds of
    max_i |theta*_i - theta_hat_i| / s_i, so the intervals hold jointly. ``s`` is ``scale``
    (each model's standard error relative to the anchor, e.g. the sandwich's) when given, else
    each model's bootstrap standard deviation.

    Why ``scale`` and a conservative quantile. Studentising by the bootstrap's own standard
    deviations puts their Monte Carlo error (about 1 / sqrt(2 * rounds): 5 % with 200 rounds)
    into every width, one model at a time; c is common to all models and cannot correct it,
    and a family of 20 or 50 intervals each a little too narrow at random loses joint coverage
    (0.91 with 200 rounds at 100k votes, tests/bench/coverage.py). The analytic scale has no
    such noise, and the bootstrap still sets c, the part the normal approximation gets wrong
    for a maximum. c is the ceil(level * (rounds + 1))-th smallest maximum, the order statistic
    whose level is at least ``level`` for any number of rounds, instead of an interpolated one.
    """
    draws = np.asarray(samples, dtype=np.float64)
    theta = np.asarray(log_strengths, dtype=np.float64)
    if anchor is not None:
        draws = draws - draws[:, [anchor]]
        theta = theta - theta[anchor]
    n = theta.size
    lower, upper = np.full(n, np.nan), np.full(n, np.nan)
    has = np.isfinite(theta) & np.any(np.isfinite(draws), axis=0)
    if anchor is not None:
        has[anchor] = False
    if not has.any():
        return lower, upper
    used = draws[:, has]
    if not simultaneous:
        tail = (1.0 - level) / 2.0
        bounds = np.nanquantile(used, [tail, 1.0 - tail], axis=0)
        lower[has], upper[has] = bounds[0], bounds[1]
        return lower, upper
    if scale is None:
        spread = np.nanstd(used, axis=0, ddof=1) if used.shape[0] > 1 else np.zeros(used.shape[1])
    else:
        spread = np.asarray(scale, dtype=np.float64)[has]
    spread = np.where(np.isfinite(spread) & (spread > 0), spread, np.inf)
    worst = np.nanmax(np.abs(used - theta[has]) / spread, axis=1)
    worst = np.sort(worst[np.isfinite(worst)])
    if worst.size == 0:
        return lower, upper
    c = float(worst[min(int(np.ceil(level * (worst.size + 1))), worst.size) - 1])
    lower[has] = theta[has] - c * spread
    upper[has] = theta[has] + c * spread
    return lower, upper


def rank_ub_within_groups(*, lower: ArrayLike, upper: ArrayLike, group: ArrayLike) -> Ints:
    """Rank (UB) among the models of the same connected group: 1 + the number of models of
    that group whose lower bound is above this model's upper bound. Open bounds (+-inf) are
    allowed; a model that never met another, directly or through others, never outranks it."""
    low = np.asarray(lower, dtype=np.float64)
    high = np.asarray(upper, dtype=np.float64)
    labels = np.asarray(group)
    if not (low.shape == high.shape == labels.shape) or low.ndim != 1:
        raise ValueError("lower, upper and group must be one-dimensional and of one length")
    if np.isnan(low).any() or np.isnan(high).any():
        raise ValueError("bounds must not be NaN; leave out models without battles")
    if np.any(low > high):
        raise ValueError("every lower bound must be at most its upper bound")
    same = labels[:, None] == labels[None, :]
    above = np.sum(same & (low[None, :] > high[:, None]), axis=1)
    return np.asarray(1 + above, dtype=np.int64)


def rank_sets(*, lower: ArrayLike, upper: ArrayLike, group: ArrayLike) -> tuple[Ints, Ints]:
    """Each model's rank confidence set [best, worst] within its group, from intervals that
    hold jointly: best = 1 + models surely above, worst = group size - models surely below.
    If every interval covers its truth, every true rank lies in its set."""
    low = np.asarray(lower, dtype=np.float64)
    high = np.asarray(upper, dtype=np.float64)
    labels = np.asarray(group)
    same = labels[:, None] == labels[None, :]
    surely_above = np.sum(same & (low[None, :] > high[:, None]), axis=1)
    surely_below = np.sum(same & (high[None, :] < low[:, None]), axis=1)
    size = same.sum(axis=1)
    return (
        np.asarray(1 + surely_above, dtype=np.int64),
        np.asarray(size - surely_below, dtype=np.int64),
    )


def provisional(
    *, lower: ArrayLike, upper: ArrayLike, votes: ArrayLike, max_half_width: float, min_votes: int
) -> Bools:
    """Provisional until the interval's half-width (display points) is at most max_half_width
    and the model has at least min_votes votes; an open interval is always provisional."""
    half = (np.asarray(upper, dtype=np.float64) - np.asarray(lower, dtype=np.float64)) / 2.0
    settled = np.isfinite(half) & (half <= max_half_width)
    return np.asarray(~settled | (np.asarray(votes) < min_votes), dtype=bool)


ANCHOR = "anchor"  # the anchor's rating is fixed by definition: no interval


@dataclass(frozen=True)
class Board:
    """A board in display points, one entry per model: ``rating`` is NaN where the data bound
    the model on one side or none (see ``status``), ``lower`` and ``upper`` are -inf / +inf on
    an open side; ``rank`` is Rank (UB) within ``group``; ``rank_best`` and ``rank_worst`` the
    rank confidence set from family-wise intervals."""

    rating: Floats
    lower: Floats
    upper: Floats
    status: NDArray[np.str_]
    group: Ints
    rank: Ints
    rank_best: Ints
    rank_worst: Ints
    anchor: int | None


def board(
    *,
    counts: PairCounts,
    evidence: Evidence,
    log_strengths: ArrayLike,
    samples: ArrayLike | None = None,
    anchor: int | None = None,
    anchor_rating: float = 1000.0,
    init: float = 1000.0,
    level: float = 0.95,
    simultaneous: bool = False,
) -> Board:
    """Display ratings, intervals and ranks from a fit of the core (``log_strengths``, NaN
    outside it): sandwich intervals, or bootstrap ones when ``samples`` (rounds x models,
    fitted on the core) are given; relative to ``anchor`` when it is a core model, else centred
    on the mean of the core models only, so open models move no one. ``simultaneous`` makes
    the shown intervals family-wise (Bonferroni on the sandwich, max-statistic bootstrap)."""
    theta = np.asarray(log_strengths, dtype=np.float64)
    n = counts.n_models
    if anchor is not None and not evidence.core[anchor]:
        raise ValueError(f"anchor {anchor} is not a model the data bound")
    core = evidence.core
    size = int(core.sum())
    relative = theta - theta[anchor] if anchor is not None else theta
    resampled = None if samples is None else np.asarray(samples, dtype=np.float64)
    # The bootstrap's family-wise intervals are studentised by the sandwich's standard errors
    # (see bootstrap_bounds), so both methods need the covariance.
    covariance = sandwich_covariance(counts=core_counts(counts, core), log_strengths=theta)
    # Family-wise intervals for the rank sets always; shown only when asked for.
    family = max(size - (anchor is not None), 1)
    if resampled is None:
        joint_half = relative_half_widths(
            covariance=covariance, anchor=anchor, level=level, family=family
        )
        joint = (relative - joint_half, relative + joint_half)
        if simultaneous:
            low, high = joint
        else:
            half = relative_half_widths(covariance=covariance, anchor=anchor, level=level)
            low, high = relative - half, relative + half
    else:
        joint = bootstrap_bounds(
            samples=resampled,
            log_strengths=theta,
            anchor=anchor,
            level=level,
            simultaneous=True,
            scale=relative_standard_errors(covariance=covariance, anchor=anchor),
        )
        low, high = (
            joint
            if simultaneous
            else bootstrap_bounds(
                samples=resampled, log_strengths=theta, anchor=anchor, level=level
            )
        )
    if anchor is None:
        offset = init - float(np.mean(relative[core])) * POINTS_PER_LOG if size else init
    else:
        offset = anchor_rating
    status = evidence.status.copy()
    rating = np.where(core, relative * POINTS_PER_LOG + offset, np.nan)
    lower = np.where(core, low * POINTS_PER_LOG + offset, -np.inf)
    upper = np.where(core, high * POINTS_PER_LOG + offset, np.inf)
    joint_lower = np.where(core, joint[0] * POINTS_PER_LOG + offset, -np.inf)
    joint_upper = np.where(core, joint[1] * POINTS_PER_LOG + offset, np.inf)
    open_low, open_high = one_sided_bounds(
        counts=counts, evidence=evidence, log_strengths=theta, level=level
    )
    # One side open and no battle against the core to bound the other: open both ways.
    status[(status == BELOW) & ~np.isfinite(open_high)] = UNBOUNDED
    status[(status == ABOVE) & ~np.isfinite(open_low)] = UNBOUNDED
    shift = theta[anchor] if anchor is not None else 0.0
    outside = ~core
    for bounds_low, bounds_high in ((lower, upper), (joint_lower, joint_upper)):
        bounds_low[outside] = (open_low[outside] - shift) * POINTS_PER_LOG + offset
        bounds_high[outside] = (open_high[outside] - shift) * POINTS_PER_LOG + offset
    # A bounded model whose interval still has no width (a bootstrap whose rounds all agree)
    # says nothing about its uncertainty: show it open rather than certain.
    degenerate = core & ~(upper > lower)
    if anchor is not None:
        degenerate[anchor] = False
        lower[anchor] = upper[anchor] = joint_lower[anchor] = joint_upper[anchor] = anchor_rating
        status[anchor] = ANCHOR
    for values, fill in ((lower, -np.inf), (joint_lower, -np.inf)):
        values[degenerate] = fill
    for values, fill in ((upper, np.inf), (joint_upper, np.inf)):
        values[degenerate] = fill
    rating[degenerate] = np.nan
    status[degenerate] = UNBOUNDED
    played = _battles_per_model(counts) > 0
    rank = np.zeros(n, dtype=np.int64)
    best = np.zeros(n, dtype=np.int64)
    worst = np.zeros(n, dtype=np.int64)
    if played.any():
        rank[played] = rank_ub_within_groups(
            lower=lower[played], upper=upper[played], group=evidence.group[played]
        )
        best[played], worst[played] = rank_sets(
            lower=joint_lower[played], upper=joint_upper[played], group=evidence.group[played]
        )
    return Board(
        rating=rating,
        lower=lower,
        upper=upper,
        status=status,
        group=evidence.group,
        rank=rank,
        rank_best=best,
        rank_worst=worst,
        anchor=anchor,
    )


# Internals -------------------------------------------------------------------------------------


def _battles_per_model(counts: PairCounts) -> Floats:
    battles = counts.battles
    n = counts.n_models
    return np.asarray(
        np.bincount(counts.a, battles, n) + np.bincount(counts.b, battles, n), dtype=np.float64
    )


def _score_graph(a: Ints, b: Ints, score_a: Floats, score_b: Floats, n: int) -> coo_matrix:
    """Directed graph with an edge i -> j when i scored (won or tied) against j."""
    forward, backward = score_a > 0, score_b > 0
    src = np.concatenate([a[forward], b[backward]])
    dst = np.concatenate([b[forward], a[backward]])
    return coo_matrix((np.ones(src.size), (src, dst)), shape=(n, n))


def _strong_components(a: Ints, b: Ints, score_a: Floats, score_b: Floats, n: int) -> Ints:
    graph = _score_graph(a, b, score_a, score_b, n)
    _, labels = connected_components(graph, directed=True, connection="strong")
    return np.asarray(labels, dtype=np.int64)


def _largest_per_group(
    strong: Ints, group: Ints, alive: Bools, counts: PairCounts, decisive: Floats
) -> Bools:
    """Per connected group, the strongly connected set of two or more living models with the
    most decisive battles inside it, then the most models (then the lowest label)."""
    core = np.zeros(strong.size, dtype=bool)
    inside = (strong[counts.a] == strong[counts.b]) & alive[counts.a] & alive[counts.b]
    weight = np.bincount(strong[counts.a[inside]], decisive[inside], strong.size)
    for label in np.unique(group[alive]):
        members = alive & (group == label)
        ids, sizes = np.unique(strong[members], return_counts=True)
        candidates = sizes >= 2
        if not candidates.any():
            continue
        ids, sizes = ids[candidates], sizes[candidates]
        best = max(range(ids.size), key=lambda k: (weight[ids[k]], sizes[k], -ids[k]))
        core |= members & (strong == ids[best])
    return core


def _reachable(
    a: Ints, b: Ints, score_a: Floats, score_b: Floats, n: int, *, start: Bools, forward: bool
) -> Bools:
    """Models reached from ``start`` along scored-against edges (forward: the core scored
    against them, so they are below it) or against them (backward: they are above it)."""
    graph = _score_graph(a, b, score_a, score_b, n).tocsr()
    if not forward:
        graph = graph.T.tocsr()
    seen = start.copy()
    frontier = start.copy()
    while frontier.any():
        reached = np.asarray(graph.T @ frontier.astype(float) > 0).ravel()
        frontier = reached & ~seen
        seen |= frontier
    return seen & ~start


def _against_core(
    counts: PairCounts, battles: Floats, core: Bools, model: int
) -> tuple[Ints, Floats]:
    """The core models this model met, and how many battles against each."""
    as_a = (counts.a == model) & core[counts.b]
    as_b = (counts.b == model) & core[counts.a]
    opponents = np.concatenate([counts.b[as_a], counts.a[as_b]])
    played = np.concatenate([battles[as_a], battles[as_b]])
    keep = played > 0
    return opponents[keep], played[keep]


def _laplacian(a: Ints, b: Ints, per_row: Floats, m: int) -> Floats:
    flat = np.concatenate([a * (m + 1), b * (m + 1), a * m + b, b * m + a])
    values = np.concatenate([per_row, per_row, -per_row, -per_row])
    return np.bincount(flat, values, m * m).reshape(m, m).astype(np.float64)
