"""A small case of tests/bench/coverage.py: family-wise intervals hold jointly."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

JOINT_FLOOR = 0.93  # the floor for the joint coverage of family-wise intervals
PER_MODEL_FLOOR = 0.92  # marginal 95% intervals, with Monte Carlo slack for 150 boards


def load_bench() -> object:
    path = Path(__file__).resolve().parents[1] / "bench" / "coverage.py"
    spec = importlib.util.spec_from_file_location("bench_coverage", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_family_wise_sandwich_intervals_cover_all_twenty_models_jointly() -> None:
    bench = load_bench()
    rows = bench.coverage(  # type: ignore[attr-defined]
        models=20, votes=4_000, boards=150, rounds=0, seed=1, methods=("sandwich",)
    )
    by_kind = {row.family_wise: row for row in rows}
    assert by_kind[True].joint >= JOINT_FLOOR
    assert by_kind[False].marginal >= PER_MODEL_FLOOR
    assert by_kind[False].joint < by_kind[True].joint, "per-model intervals do not hold jointly"


def test_family_wise_bootstrap_intervals_hold_jointly_with_few_rounds() -> None:
    """The max-statistic bootstrap, studentised by the sandwich's standard errors and cut at a
    conservative order statistic, holds jointly even with 200 rounds (it fell to about 0.91 when
    studentised by the rounds' own standard deviations)."""
    bench = load_bench()
    rows = bench.coverage(  # type: ignore[attr-defined]
        models=20, votes=20_000, boards=150, rounds=200, seed=2, methods=("bootstrap",)
    )
    by_kind = {row.family_wise: row for row in rows}
    assert by_kind[True].joint >= JOINT_FLOOR
    assert by_kind[False].joint < by_kind[True].joint
