"""Votes to flip against brute force: every removal of k votes, k = 1, 2, ..., refitted with
leaderboard.ratings' own fit and sandwich intervals (a separate code path)."""

from __future__ import annotations

import itertools

import numpy as np

from leaderboard import ratings, robustness
from leaderboard.ratings import PairCounts

BRUTE_MAX_K = 8  # removal sets up to this size are enumerated


def flip_state(counts: PairCounts) -> tuple[np.ndarray, np.ndarray]:
    theta = ratings.fit_bradley_terry(counts=counts)
    lower, upper = ratings.sandwich_intervals(counts=counts, log_strengths=theta)
    return theta, ratings.rank_ub(lower=lower, upper=upper)


def brute_force(counts: PairCounts, model: int) -> int:
    """The fewest votes whose removal changes the model's Rank (UB) or its order with a
    neighbour, by trying every multiset of removed votes of each size in turn."""
    theta, rank = flip_state(counts)
    order = list(np.argsort(theta))
    place = order.index(model)
    above = order[place + 1] if place + 1 < len(order) else None
    below = order[place - 1] if place > 0 else None
    cells = np.column_stack([counts.wins_a, counts.wins_b, counts.ties]).ravel()
    present = np.flatnonzero(cells > 0)
    for k in range(1, BRUTE_MAX_K + 1):
        for removed in itertools.combinations_with_replacement(present, k):
            taken = np.bincount(np.array(removed), minlength=cells.size)
            if np.any(taken > cells):
                continue
            left = (cells - taken).reshape(-1, 3)
            smaller = PairCounts.from_arrays(
                a=counts.a,
                b=counts.b,
                wins_a=left[:, 0],
                wins_b=left[:, 1],
                ties=left[:, 2],
                n_models=counts.n_models,
            )
            new_theta, new_rank = flip_state(smaller)
            if (
                new_rank[model] != rank[model]
                or (above is not None and new_theta[above] < new_theta[model])
                or (below is not None and new_theta[model] < new_theta[below])
            ):
                return k
    return robustness.NO_FLIP


def small_board(seed: int, n_models: int) -> PairCounts:
    rng = np.random.default_rng(seed)
    pairs = list(itertools.combinations(range(n_models), 2))
    return PairCounts.from_arrays(
        a=[p[0] for p in pairs],
        b=[p[1] for p in pairs],
        wins_a=rng.integers(3, 12, len(pairs)).astype(float),
        wins_b=rng.integers(3, 12, len(pairs)).astype(float),
        ties=rng.integers(0, 3, len(pairs)).astype(float),
        n_models=n_models,
    )


def test_votes_to_flip_match_brute_force_on_small_boards() -> None:
    # The influence order is a heuristic: a refit confirms every reported flip, so it never
    # reports too few votes; on 51 boards tried while writing this it missed the minimum for 3
    # of 139 models, each by one vote.
    found, truth = [], []
    for seed, n_models in [*((s, 3) for s in range(9)), (100, 4), (101, 4)]:
        counts = small_board(seed, n_models)
        theta = ratings.fit_bradley_terry(counts=counts)
        found += robustness.votes_to_flip(counts=counts, log_strengths=theta).tolist()
        truth += [brute_force(counts, model) for model in range(n_models)]
    pairs = list(zip(found, truth, strict=True))
    assert all(truth_k <= found_k <= truth_k + 1 for found_k, truth_k in pairs)
    assert sum(found_k == truth_k for found_k, truth_k in pairs) >= 0.9 * len(pairs)


def test_a_clear_leader_needs_more_votes_to_flip_than_a_close_pair() -> None:
    counts = PairCounts.from_arrays(
        a=[0, 0, 1],
        b=[1, 2, 2],
        wins_a=[300.0, 320.0, 101.0],
        wins_b=[100.0, 80.0, 99.0],
        ties=[0.0, 0.0, 0.0],
        n_models=3,
    )
    theta = ratings.fit_bradley_terry(counts=counts)
    found = robustness.votes_to_flip(counts=counts, log_strengths=theta)
    assert found[1] < found[0] and found[2] < found[0]


def test_models_without_battles_have_no_votes_to_flip() -> None:
    counts = PairCounts.from_arrays(
        a=[0], b=[1], wins_a=[10.0], wins_b=[8.0], ties=[0.0], n_models=3
    )
    theta = ratings.fit_bradley_terry(counts=counts)
    found = robustness.votes_to_flip(counts=counts, log_strengths=theta)
    assert found[2] == robustness.NO_FLIP and found[0] >= 1
