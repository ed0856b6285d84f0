"""leaderboard.sampling: the published policy's probabilities and a small tau simulation."""

from __future__ import annotations

import importlib.util
import statistics
import sys
from pathlib import Path

import numpy as np
import pytest

from leaderboard import sampling


def test_a_new_model_is_boosted_until_it_has_its_votes() -> None:
    weights = sampling.boosted_weights(
        weights=[1.0, 1.0, 2.0], votes=[5000, 10, 2999], boost_until=3000, boost=4.0
    )
    assert weights.tolist() == [1.0, 4.0, 8.0]


def test_plain_pair_probabilities_follow_the_weights_and_sum_to_one() -> None:
    probabilities = sampling.pair_probabilities(weights=[1.0, 1.0, 2.0])
    assert probabilities.sum() == pytest.approx(1.0)
    assert np.all(np.diag(probabilities) == 0)
    assert probabilities[0, 2] == pytest.approx(2 * probabilities[0, 1])


def test_uncertainty_goes_to_close_thinly_measured_neighbours() -> None:
    theta = np.array([0.0, 0.05, 2.0])
    covariance = np.diag([0.04, 0.04, 0.04])
    probabilities = sampling.pair_probabilities(
        weights=np.ones(3), log_strengths=theta, covariance=covariance, uncertainty_share=1.0
    )
    assert probabilities[0, 1] > probabilities[1, 2] > 0
    assert probabilities[0, 2] == 0, "only neighbours in rating order"


def test_drawn_pairs_follow_the_probabilities() -> None:
    probabilities = sampling.pair_probabilities(weights=[1.0, 1.0, 2.0])
    rng = np.random.default_rng(0)
    pairs = [tuple(sorted(sampling.draw_pair(probabilities, rng))) for _ in range(4000)]
    share = pairs.count((0, 2)) / len(pairs)
    assert share == pytest.approx(2 * probabilities[0, 2], abs=0.03)


def test_both_policies_reach_kendall_tau_0_9_on_a_small_board() -> None:
    path = Path(__file__).resolve().parents[1] / "bench" / "sampling_tau.py"
    spec = importlib.util.spec_from_file_location("bench_sampling_tau", path)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench
    spec.loader.exec_module(bench)
    uniform = [bench.votes_to_tau(models=10, share=0.0, seed=s, limit=40_000) for s in range(4)]
    active = [bench.votes_to_tau(models=10, share=0.8, seed=s, limit=40_000) for s in range(4)]
    assert max(uniform) < 40_000 and max(active) < 40_000
    assert statistics.median(active) <= 1.5 * statistics.median(uniform)
