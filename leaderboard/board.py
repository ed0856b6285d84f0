"""One leaderboard from one board's counts: the whole computation behind a snapshot.

A pure function (numpy and scipy only, an explicit ``rng``, no Django, no settings), so that
``services.refresh`` only loads the counts and saves what comes out: the bounded core and its
fit (bounds.py), intervals (sandwich, or the bootstrap extending kept rounds), anchoring,
Rank (UB) within groups and rank sets, the provisional rule, heatmap matrices and the
style-controlled board. Votes to flip (robustness.py) cost more than all of this together, so
``compute_board`` leaves them out and ``votes_to_flip`` computes them from a board apart (the
refresh saves the board first, then fills them in).

This module lives outside ``leaderboard.ratings`` because bounds.py, which it uses, imports
``leaderboard.ratings``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from leaderboard import bounds, ratings, robustness, style
from leaderboard.ratings import Floats, Ints, PairCounts

INTERVAL_METHODS = ("sandwich", "bootstrap")
# Columns of the live votes the style-controlled fit takes (style_votes): left and right model
# indices, left's score (1, 0 or 1/2), then width, height and compute ms of the left image and
# of the right one (NaN where unknown).
STYLE_COLUMNS = 9


@dataclass(frozen=True)
class StyleBoard:
    """The style-controlled board's parts a snapshot keeps."""

    controlled: Floats  # display points per model index, NaN where not fitted
    summary: dict[str, object]


@dataclass(frozen=True)
class Board:
    """A computed board, one entry per model of the counts unless said otherwise."""

    log_strengths: Floats  # fit of the bounded core, NaN outside it
    core_counts: PairCounts  # the counts the fit saw (votes to flip refit these)
    anchor: int | None  # the anchor used: None when absent or not bounded by the data
    shown_board: bounds.Board  # ratings, intervals (open where unbounded), status, rank sets
    votes: Floats  # battles each model took part in
    win_rate: Floats  # share of its battles won, ties as half; 0 without battles
    provisional: NDArray[np.bool_]
    shown: Ints  # indices of the models the board lists, in model order
    rank: Ints  # Rank (UB) within groups of each shown model, aligned with ``shown``
    battles: Floats  # model x model matrices
    win_rates: Floats
    predicted: Floats
    style: StyleBoard | None
    resamples: ratings.Resamples | None  # bootstrap boards: the rounds behind the bounds
    extended: bool  # bootstrap boards: the rounds extended ``previous`` rather than fresh

    @property
    def components(self) -> int:
        group = self.shown_board.group
        return int(group.max()) + 1 if group.size else 0


def compute_board(
    *,
    counts: PairCounts,
    intervals: str = "sandwich",
    rng: np.random.Generator | None = None,
    rounds: int = 1000,
    previous: ratings.Resamples | None = None,
    threads: int = 1,
    anchor: int | None = None,
    anchor_rating: float = 1000.0,
    simultaneous: bool = False,
    min_votes: int = 0,
    max_half_width: float = np.inf,
    hide_below_min: bool = False,
    style_votes: Floats | None = None,
    style_counts: style.StyledCounts | None = None,
) -> Board:
    """Everything a snapshot shows except votes to flip, from one board's ``counts``.

    Only each group's bounded core is fitted; the others get open intervals. ``anchor`` (a
    model index) pins the board only if the data bound it, else it is centred on the core's
    mean. Bootstrap intervals draw from ``rng``, extending ``previous`` rounds when they fit.
    A model is provisional until its interval is at most ±``max_half_width`` points and it has
    ``min_votes`` battles; with ``hide_below_min`` (a category board) a model under
    ``min_votes`` is also left off and out of the ranks. ``style_votes`` (rows of
    STYLE_COLUMNS, see there), or the ``style_counts`` kept from them (count_style_votes),
    add the style-controlled board of the core's votes.
    """
    if intervals not in INTERVAL_METHODS:
        raise ValueError(
            f"intervals must be one of {', '.join(INTERVAL_METHODS)}, got {intervals!r}"
        )
    if intervals == "bootstrap" and rng is None:
        raise ValueError("bootstrap intervals need an rng")
    evidence = bounds.evidence(counts)
    core = bounds.core_counts(counts, evidence.core)
    theta = ratings.fit_bradley_terry(counts=core)
    resampled: ratings.Bootstrap | None = None
    if intervals == "bootstrap":
        assert rng is not None
        resampled = ratings.bootstrap(
            counts=core,
            rounds=rounds,
            rng=rng,
            log_strengths=theta,
            previous=previous,
            threads=threads,
        )
    # An anchor the data do not bound cannot pin the board: it is then centred on the mean.
    used_anchor = anchor if anchor is not None and evidence.core[anchor] else None
    shown_board = bounds.board(
        counts=counts,
        evidence=evidence,
        log_strengths=theta,
        samples=resampled.samples if resampled is not None else None,
        anchor=used_anchor,
        anchor_rating=anchor_rating,
        simultaneous=simultaneous,
    )
    battles = ratings.battle_count_matrix(counts)
    win_rates = ratings.win_rate_matrix(counts)
    per_model = battles.sum(axis=1)
    score = np.nansum(win_rates * battles, axis=1)
    win_rate = np.divide(score, per_model, out=np.zeros_like(score), where=per_model > 0)
    provisional = bounds.provisional(
        lower=shown_board.lower,
        upper=shown_board.upper,
        votes=per_model,
        max_half_width=max_half_width,
        min_votes=min_votes,
    )
    # Overall, thin models are shown and marked provisional; a category board hides them.
    keep = per_model >= min_votes if hide_below_min else np.ones(counts.n_models, dtype=bool)
    shown = np.flatnonzero(keep).astype(np.int64)
    rank = (
        bounds.rank_ub_within_groups(
            lower=shown_board.lower[shown],
            upper=shown_board.upper[shown],
            group=shown_board.group[shown],
        )
        if shown.size
        else np.zeros(0, dtype=np.int64)
    )
    if style_counts is None and style_votes is not None:
        style_counts = count_style_votes(votes=style_votes, n_models=counts.n_models)
    styled = None if style_counts is None else style_fit(counts=style_counts, core=evidence.core)
    return Board(
        log_strengths=theta,
        core_counts=core,
        anchor=used_anchor,
        shown_board=shown_board,
        votes=per_model,
        win_rate=win_rate,
        provisional=provisional,
        shown=shown,
        rank=np.asarray(rank, dtype=np.int64),
        battles=battles,
        win_rates=win_rates,
        predicted=ratings.predicted_win_matrix(theta),
        style=styled,
        resamples=resampled.resamples if resampled is not None else None,
        extended=bool(resampled.extended) if resampled is not None else False,
    )


def votes_to_flip(board: Board) -> Ints:
    """Per model, the refit-confirmed votes to flip of a computed board (robustness.py), with
    sandwich intervals relative to the board's anchor; robustness.NO_FLIP where none found."""
    return robustness.votes_to_flip(
        counts=board.core_counts, log_strengths=board.log_strengths, anchor=board.anchor
    )


def count_style_votes(*, votes: Floats, n_models: int) -> style.StyledCounts:
    """Live votes (rows of STYLE_COLUMNS) aggregated into the style-controlled fit's counts, one
    row per (left model, right model, covariate difference): counts that can be kept and fitted
    from like the pair counts. An unknown size or compute time counts as 0 (a square, small,
    fast image)."""
    data = np.asarray(votes, dtype=np.float64).reshape(-1, STYLE_COLUMNS)

    def column(index: int, scale: float = 1.0) -> Floats:
        return np.nan_to_num(data[:, index], nan=0.0) / scale

    return style.aggregate_image_votes(
        left=data[:, 0].astype(np.int64),
        right=data[:, 1].astype(np.int64),
        outcome=data[:, 2],
        classes_left=style.image_classes(width=column(3), height=column(4), seconds=column(5, 1e3)),
        classes_right=style.image_classes(
            width=column(6), height=column(7), seconds=column(8, 1e3)
        ),
        n_models=n_models,
    )


def style_fit(*, counts: style.StyledCounts, core: NDArray[np.bool_]) -> StyleBoard | None:
    """Refit the votes between core models with image covariates (side, output aspect and
    resolution class, generation-time bucket), centred on the mean as the raw board is without
    an anchor; None with fewer than two such votes."""
    keep = core[counts.left] & core[counts.right]
    styled = style.StyledCounts(
        left=counts.left[keep],
        right=counts.right[keep],
        features=counts.features[keep],
        wins_left=counts.wins_left[keep],
        wins_right=counts.wins_right[keep],
        ties=counts.ties[keep],
        n_models=counts.n_models,
    )
    votes = int(np.sum(styled.wins_left + styled.wins_right + styled.ties))
    if votes < 2:
        return None
    fit = style.fit_style_controlled(counts=styled)
    # A covariate that never differs between the two sides of a vote is not identified.
    varies = np.any(styled.features != 0, axis=0)
    summary: dict[str, object] = {
        "votes": votes,
        "coefficients": [
            {
                "covariate": name,
                "logit": round(float(fit.coefficients[k]), 6),
                "lower": round(float(fit.coefficient_lower[k]), 6),
                "upper": round(float(fit.coefficient_upper[k]), 6),
            }
            for k, name in enumerate(style.covariate_names())
            if varies[k]
        ],
    }
    return StyleBoard(
        controlled=fit.log_strengths * bounds.POINTS_PER_LOG + 1000.0, summary=summary
    )
