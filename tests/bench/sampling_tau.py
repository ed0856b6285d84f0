"""Votes needed to reach Kendall tau 0.9 with the true order (20 models): uniform pairs against
active sampling (leaderboard.sampling, uncertainty share 0.5 and 0.8).

Run from the repository root:  python tests/bench/sampling_tau.py [--runs 20] [--models 20]

Each run: strengths drawn once (normal, sd 0.4 log-units: close models), votes arrive in batches
of --batch; before each batch the active policy refits the counts (fit + sandwich covariance)
and draws the batch's pairs from its pair probabilities. The count reported is the first batch
end at which the fitted order reaches tau >= 0.9. tests/leaderboard/test_sampling.py runs a
small case.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from scipy.special import expit  # noqa: E402
from scipy.stats import kendalltau  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from leaderboard import bounds, ratings, sampling  # noqa: E402


def votes_to_tau(
    *,
    models: int,
    share: float,
    seed: int,
    batch: int = 200,
    target: float = 0.9,
    limit: int = 200_000,
) -> int:
    """Votes until the fitted order reaches Kendall tau ``target`` (``limit`` if never)."""
    rng = np.random.default_rng(seed)
    truth = rng.normal(0.0, 0.4, size=models)
    wins = np.zeros((models, models))
    theta = np.zeros(models)
    covariance: np.ndarray | None = None
    weights = np.ones(models)
    total = 0
    while total < limit:
        probabilities = sampling.pair_probabilities(
            weights=weights,
            log_strengths=theta if covariance is not None else None,
            covariance=covariance,
            uncertainty_share=share,
        )
        upper = np.triu(probabilities + probabilities.T, k=1).ravel()
        flat = rng.choice(upper.size, size=batch, p=upper / upper.sum())
        a, b = np.divmod(flat, models)
        won = rng.random(batch) < expit(truth[a] - truth[b])
        np.add.at(wins, (a[won], b[won]), 1.0)
        np.add.at(wins, (b[~won], a[~won]), 1.0)
        total += batch
        low, high = np.triu_indices(models, k=1)
        counts = ratings.PairCounts.from_arrays(
            a=low,
            b=high,
            wins_a=wins[low, high],
            wins_b=wins[high, low],
            ties=np.zeros(low.size),
            n_models=models,
        )
        theta = ratings.fit_bradley_terry(counts=counts)
        if share > 0:
            covariance = bounds.sandwich_covariance(counts=counts, log_strengths=theta)
        if kendalltau(theta, truth).statistic >= target:
            return total
    return limit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--models", type=int, default=20)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--shares", type=float, nargs="+", default=[0.0, 0.5, 0.8])
    options = parser.parse_args()
    print(f"{options.models} models, {options.runs} runs, batches of {options.batch} votes")
    for share in options.shares:
        needed = [
            votes_to_tau(models=options.models, share=share, seed=run, batch=options.batch)
            for run in range(options.runs)
        ]
        label = "uniform" if share == 0 else f"active, uncertainty share {share}"
        print(
            f"  {label:<34} median {statistics.median(needed):>8,.0f} votes"
            f"  (mean {statistics.mean(needed):,.0f}, max {max(needed):,})",
            flush=True,
        )


if __name__ == "__main__":
    main()
