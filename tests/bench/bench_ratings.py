"""Benchmark: our rating refresh against arena-rank, choix and a FastChat-style pipeline.

Run from the repository root:  python tests/bench/bench_ratings.py [--votes N] [--models M]
(see tests/bench/README.md for which virtual environment has arena-rank installed).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

# Timings are per core, as on the 2-core production machines; set before numpy loads BLAS.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import minimize

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script from anywhere

from leaderboard import ratings  # noqa: E402

T = TypeVar("T")
Votes = tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]


def simulate_votes(*, votes: int, models: int, tie_share: float, seed: int) -> Votes:
    """Uniformly paired battles, random sides, a fixed share of ties, Bradley-Terry otherwise."""
    rng = np.random.default_rng(seed)
    strengths = rng.normal(0.0, 0.6, size=models)
    a = rng.integers(0, models, size=votes)
    b = (a + rng.integers(1, models, size=votes)) % models
    a_wins = rng.random(votes) < 1.0 / (1.0 + np.exp(strengths[b] - strengths[a]))
    outcome = np.where(rng.random(votes) < tie_share, 0.5, a_wins.astype(np.float64))
    return a, b, outcome


def timed(function: Callable[[], T], repeats: int) -> tuple[float, T]:
    """Median wall time over repeats, and the last result."""
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), result


def fastchat_style(votes: Votes, models: int, rounds: int, seed: int) -> dict[str, Any]:
    """Our own rendering of FastChat's pipeline: unique rows, L-BFGS-B, count bootstrap."""
    a, b, outcome = votes

    def aggregate() -> tuple[NDArray[np.int64], NDArray[np.float64]]:
        table = np.column_stack([a, b, (2 * outcome).astype(np.int64)])
        return np.unique(table, axis=0, return_counts=True)  # type: ignore[no-any-return]

    def fit(rows: NDArray[np.int64], weight: NDArray[np.float64]) -> NDArray[np.float64]:
        side_a, side_b, score = rows[:, 0], rows[:, 1], rows[:, 2] / 2.0
        total = weight.sum()

        def loss_and_gradient(theta: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
            d = theta[side_a] - theta[side_b]
            loss = np.sum(weight * (np.logaddexp(0.0, d) - score * d)) / total
            per_row = weight * (1.0 / (1.0 + np.exp(-d)) - score) / total
            gradient = np.bincount(side_a, per_row, models) - np.bincount(side_b, per_row, models)
            return float(loss), gradient

        result = minimize(
            loss_and_gradient, np.zeros(models), jac=True, method="L-BFGS-B", options={"gtol": 1e-10, "ftol": 1e-14}
        )
        return np.asarray(result.x - result.x.mean())

    aggregate_s, (rows, weight) = timed(aggregate, 1)
    fit_s, theta = timed(lambda: fit(rows, weight.astype(np.float64)), 1)

    def bootstrap() -> NDArray[np.float64]:
        rng = np.random.default_rng(seed)
        draws = rng.multinomial(int(weight.sum()), weight / weight.sum(), size=rounds)
        return np.array([fit(rows, draw.astype(np.float64)) for draw in draws])

    bootstrap_s, _ = timed(bootstrap, 1)
    return {"aggregate": aggregate_s, "fit": fit_s, "bootstrap": bootstrap_s, "theta": theta}


def arena_rank_sandwich(votes: Votes, models: int, repeats: int) -> dict[str, Any] | None:
    """LMArena's arena-rank on the same votes, default sandwich intervals; None if not installed."""
    try:
        import pandas as pd
        from arena_rank.models.bradley_terry import BradleyTerry
        from arena_rank.utils.data_utils import PairDataset
    except ImportError:
        return None
    a, b, outcome = votes
    names = np.array([f"model-{i:03d}" for i in range(models)])  # sorted names keep our indices
    winner = np.where(outcome == 1.0, "model_a", np.where(outcome == 0.0, "model_b", "tie"))
    frame = pd.DataFrame({"model_a": names[a], "model_b": names[b], "winner": winner})
    # The first call compiles JAX code; report it apart from the median of the later calls.
    start = time.perf_counter()
    dataset = PairDataset.from_pandas(frame)
    BradleyTerry(n_competitors=models).compute_ratings_and_cis(dataset)
    first_s = time.perf_counter() - start
    aggregate_s, dataset = timed(lambda: PairDataset.from_pandas(frame), repeats)

    def fit() -> Any:
        return BradleyTerry(n_competitors=models).fit(dataset)

    fit_s, model = timed(fit, repeats)
    sandwich_s, result = timed(lambda: model.compute_ratings_and_cis(dataset, ci_method="sandwich"), repeats)
    return {
        "aggregate": aggregate_s,
        "fit": fit_s,
        "sandwich": sandwich_s,
        "first_call": first_s,
        "ratings": np.asarray(result["ratings"]),
        "lower": np.asarray(result["rating_lower"]),
        "upper": np.asarray(result["rating_upper"]),
    }


def choix_fit(counts: ratings.PairCounts, repeats: int) -> dict[str, Any]:
    """choix's iterative Luce spectral ranking on the comparison matrix, ties as half a win each."""
    import choix

    wins = np.zeros((counts.n_models, counts.n_models))
    np.add.at(wins, (counts.a, counts.b), counts.wins_a + 0.5 * counts.ties)
    np.add.at(wins, (counts.b, counts.a), counts.wins_b + 0.5 * counts.ties)
    fit_s, theta = timed(lambda: choix.ilsr_pairwise_dense(wins, alpha=0.0, tol=1e-12), repeats)
    return {"fit": fit_s, "theta": np.asarray(theta)}


def main() -> None:
    """Time every method on one synthetic data set and print the comparison table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--votes", type=int, default=1_000_000)
    parser.add_argument("--models", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=1000, help="bootstrap rounds for our refresh")
    parser.add_argument("--fastchat-rounds", type=int, default=100)
    parser.add_argument("--tie-share", type=float, default=0.2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    votes = simulate_votes(votes=args.votes, models=args.models, tie_share=args.tie_share, seed=args.seed)
    a, b, outcome = votes
    aggregate_s, counts = timed(
        lambda: ratings.aggregate_votes(a=a, b=b, outcome=outcome, n_models=args.models), args.repeats
    )
    fit_s, theta = timed(lambda: ratings.fit_bradley_terry(counts=counts), args.repeats)
    sandwich_s, (low, high) = timed(
        lambda: ratings.sandwich_intervals(counts=counts, log_strengths=theta), args.repeats
    )
    bootstrap_s, (boot_low, boot_high, _) = timed(
        lambda: ratings.bootstrap_intervals(
            counts=counts, rounds=args.rounds, rng=np.random.default_rng(args.seed), log_strengths=theta
        ),
        args.repeats,
    )
    ours = ratings.to_display(log_strengths=theta)
    our_low, our_high = ratings.intervals_to_display(log_strengths=theta, lower=low, upper=high)
    boot_low_pts, boot_high_pts = ratings.intervals_to_display(log_strengths=theta, lower=boot_low, upper=boot_high)
    refresh_s = fit_s + sandwich_s + bootstrap_s

    arena = arena_rank_sandwich(votes, args.models, args.repeats)
    choix_result = choix_fit(counts, args.repeats)
    fastchat = fastchat_style(votes, args.models, args.fastchat_rounds, args.seed)

    def gap(other: NDArray[np.float64]) -> str:
        return f"{np.max(np.abs(other - ours)):.2e}"

    arena_total = arena["aggregate"] + arena["fit"] + arena["sandwich"] if arena else None

    def ratio(total: float) -> str:
        return f"{arena_total / total:8.1f}x" if arena_total else "      n/a"

    print(
        f"{args.votes:,} votes, {args.models} models, {args.tie_share:.0%} ties, seed {args.seed}, "
        f"{counts.a.size} pair rows, OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}; seconds, median of "
        f"{args.repeats} (FastChat-style: one run)"
    )
    header = f"{'method':<34}{'aggregate':>10}{'fit':>9}{'intervals':>11}{'total':>9}{'vs arena':>10}  max |d rating| pts"
    print(header)
    print("-" * len(header))
    ours_total = aggregate_s + refresh_s
    print(
        f"{'ours: bincount + Newton':<34}{aggregate_s:>10.4f}{fit_s:>9.4f}{sandwich_s + bootstrap_s:>11.4f}"
        f"{ours_total:>9.4f}{ratio(ours_total)}  (reference)"
    )
    print(f"{'  of which sandwich':<34}{'':>10}{'':>9}{sandwich_s:>11.4f}")
    print(f"{f'  of which bootstrap, {args.rounds} rounds':<34}{'':>10}{'':>9}{bootstrap_s:>11.4f}")
    print(f"{'  refresh from counts (fit+both)':<34}{'':>10}{'':>9}{'':>11}{refresh_s:>9.4f}{ratio(refresh_s)}")
    print(
        f"{'  fit + sandwich only':<34}{'':>10}{'':>9}{'':>11}{fit_s + sandwich_s:>9.4f}"
        f"{ratio(aggregate_s + fit_s + sandwich_s)}  (ratio incl. aggregate)"
    )
    if arena:
        print(
            f"{'arena-rank 0.1.1 (JAX, sandwich)':<34}{arena['aggregate']:>10.4f}{arena['fit']:>9.4f}"
            f"{arena['sandwich']:>11.4f}{arena_total:>9.4f}{ratio(arena_total)}  {gap(arena['ratings'])}"
        )
        print(f"{'  first call, compiling':<34}{'':>10}{'':>9}{'':>11}{arena['first_call']:>9.4f}")
        print(
            f"{'  sandwich bounds vs ours':<34}{'':>10}{'':>9}{'':>11}{'':>9}{'':>10}  "
            f"{max(np.max(np.abs(arena['lower'] - our_low)), np.max(np.abs(arena['upper'] - our_high))):.2e}"
        )
    else:
        print(f"{'arena-rank':<34}  not importable here: run with /work/bench-venv/bin/python")
    choix_ratings = ratings.to_display(log_strengths=choix_result["theta"])
    print(
        f"{'choix ilsr_pairwise_dense':<34}{'-':>10}{choix_result['fit']:>9.4f}{'-':>11}"
        f"{choix_result['fit']:>9.4f}{ratio(choix_result['fit'])}  {gap(choix_ratings)}"
    )
    fastchat_total = fastchat["aggregate"] + fastchat["fit"] + fastchat["bootstrap"]
    print(
        f"{f'FastChat-style, {args.fastchat_rounds}-round bootstrap':<34}{fastchat['aggregate']:>10.4f}"
        f"{fastchat['fit']:>9.4f}{fastchat['bootstrap']:>11.4f}{fastchat_total:>9.4f}{ratio(fastchat_total)}  "
        f"{gap(ratings.to_display(log_strengths=fastchat['theta']))}"
    )
    widths = np.stack([our_high - our_low, boot_high_pts - boot_low_pts])
    print(
        f"95% interval width, display points: sandwich mean {widths[0].mean():.2f}, "
        f"bootstrap mean {widths[1].mean():.2f}, largest gap between the two {np.max(np.abs(widths[0] - widths[1])):.2f}"
    )


if __name__ == "__main__":
    main()
