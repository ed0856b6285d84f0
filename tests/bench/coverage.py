"""Coverage of the board's 95% intervals against known truth: marginal (each model) and joint
(all models at once), per-model and family-wise, sandwich and bootstrap.

Run from the repository root:

    python tests/bench/coverage.py [--boards 200] [--models 20 50] [--votes 2000 10000 100000]
                                   [--rounds 200] [--seed 0]

Each board: strengths drawn once per setting (normal, sd 0.6 log-units), uniformly paired
battles with Bradley-Terry outcomes and no ties (so the truth is what the fit estimates), fit
and intervals by leaderboard.bounds exactly as a refresh computes them. Coverage is of the
mean-centred truth. tests/leaderboard/test_coverage.py runs a small case in the suite.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from scipy.special import expit  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script from anywhere

from leaderboard import bounds, ratings  # noqa: E402


@dataclass(frozen=True)
class Coverage:
    method: str
    family_wise: bool
    marginal: float
    joint: float


def one_board(*, strengths: np.ndarray, votes: int, rng: np.random.Generator) -> ratings.PairCounts:
    n = strengths.size
    a = rng.integers(0, n, size=votes)
    b = (a + rng.integers(1, n, size=votes)) % n
    outcome = (rng.random(votes) < expit(strengths[a] - strengths[b])).astype(float)
    return ratings.aggregate_votes(a=a, b=b, outcome=outcome, n_models=n)


def coverage(
    *, models: int, votes: int, boards: int, rounds: int, seed: int, methods: tuple[str, ...]
) -> list[Coverage]:
    """Marginal and joint coverage over ``boards`` simulated boards for each method, both
    per-model and family-wise intervals."""
    rng = np.random.default_rng(seed)
    strengths = rng.normal(0.0, 0.6, size=models)
    truth = (strengths - strengths.mean()) * bounds.POINTS_PER_LOG + 1000.0
    hits: dict[tuple[str, bool], list[np.ndarray]] = {}
    for _ in range(boards):
        counts = one_board(strengths=strengths, votes=votes, rng=rng)
        evidence = bounds.evidence(counts)
        if not evidence.core.all():
            continue  # a model without a win or a loss: no interval to cover with
        theta = ratings.fit_bradley_terry(counts=counts)
        for method in methods:
            samples = None
            if method == "bootstrap":
                samples = ratings.bootstrap(
                    counts=counts, rounds=rounds, rng=rng, log_strengths=theta
                ).samples
            for family_wise in (False, True):
                board = bounds.board(
                    counts=counts,
                    evidence=evidence,
                    log_strengths=theta,
                    samples=samples,
                    simultaneous=family_wise,
                )
                inside = (board.lower <= truth) & (truth <= board.upper)
                hits.setdefault((method, family_wise), []).append(inside)
    results = []
    for (method, family_wise), inside in hits.items():
        table = np.array(inside)
        results.append(
            Coverage(
                method=method,
                family_wise=family_wise,
                marginal=float(table.mean()),
                joint=float(table.all(axis=1).mean()),
            )
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boards", type=int, default=200)
    parser.add_argument("--models", type=int, nargs="+", default=[20, 50])
    parser.add_argument("--votes", type=int, nargs="+", default=[2_000, 10_000, 100_000])
    parser.add_argument("--rounds", type=int, default=200, help="bootstrap rounds per board")
    parser.add_argument("--methods", nargs="+", default=["sandwich", "bootstrap"])
    parser.add_argument("--seed", type=int, default=0)
    options = parser.parse_args()
    print(f"{options.boards} boards per setting; bootstrap with {options.rounds} rounds")
    print(
        f"{'models':>6} {'votes':>8} {'method':>9} {'intervals':>11} {'marginal':>9} {'joint':>7}"
    )
    for models in options.models:
        for votes in options.votes:
            started = time.perf_counter()
            rows = coverage(
                models=models,
                votes=votes,
                boards=options.boards,
                rounds=options.rounds,
                seed=options.seed,
                methods=tuple(options.methods),
            )
            for row in rows:
                kind = "family" if row.family_wise else "per-model"
                print(
                    f"{models:>6} {votes:>8} {row.method:>9} {kind:>11}"
                    f" {row.marginal:>9.3f} {row.joint:>7.3f}"
                )
            print(f"{'':>6} ({time.perf_counter() - started:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
