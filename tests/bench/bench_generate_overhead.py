"""Benchmark: what the arena's generate path costs over a bare pipeline call, per family.

A script, not a test. It loads every tiny twin (building them under var/models if needed) and, for
each, times alternately

- **bare**: ``pipe(**kwargs)`` under ``torch.inference_mode()``, with the very arguments the
  family's recipe produces (``pipelines.call_arguments``), no progress callback;
- **arena**: ``pipelines.get_pipeline(spec)`` then ``pipelines.generate(...)`` with a progress
  callback, which is what a job does (the cache lookup, the memory bookkeeping, the recipe, the
  seeded generator, the per-step callback).

Runs alternate (bare, arena, bare, ...) so drift on a shared machine hits both alike; it prints
the median seconds of each and the overhead in percent (target: at most 5%).

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 .venv/bin/python tests/bench/bench_generate_overhead.py \
        [--runs 15] [--steps 8] [--models tiny-sd3,tiny-flux-dev]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

from generation import pipelines, tiny  # noqa: E402

TARGET_OVERHEAD = 0.05


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--models", default="", help="comma-separated tiny names (default: all)")
    parser.add_argument("--models-dir", type=Path, default=Path("var/models"))
    args = parser.parse_args()
    names = [n for n in args.models.split(",") if n] or list(tiny.TINY_PIPELINE_CLASSES)
    tiny.build_all(args.models_dir)
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '')}, device {pipelines.device_name()}"
    )
    header = f"{'model':<20} {'bare s':>8} {'arena s':>8} {'overhead':>9}"
    print(header)
    print("-" * len(header))
    worst = 0.0
    for name in names:
        spec = pipelines.PipelineSpec(
            key=name,
            version="bench",
            source=str((args.models_dir / name).resolve()),
            pipeline_class=tiny.TINY_PIPELINE_CLASSES[name],
        )
        pipe = pipelines.get_pipeline(spec)
        options = {
            "negative_prompt": "blurry",
            "steps": args.steps,
            "guidance": 4.5,
            "width": 64,
            "height": 64,
        }
        bare: list[float] = []
        arena: list[float] = []
        for run in range(args.runs + 1):  # the first round warms both paths up
            runner, kwargs = pipelines.call_arguments(
                pipe, prompts=["a red fox in the snow"], seeds=[run], **options
            )
            started = time.perf_counter()
            with torch.inference_mode():
                runner(**kwargs)
            bare_s = time.perf_counter() - started

            heard: list[int] = []
            started = time.perf_counter()
            pipelines.generate(
                pipelines.get_pipeline(spec),
                prompt="a red fox in the snow",
                seed=run,
                on_step=heard.append,
                **options,
            )
            arena_s = time.perf_counter() - started
            if run:
                bare.append(bare_s)
                arena.append(arena_s)
        overhead = statistics.median(arena) / statistics.median(bare) - 1
        worst = max(worst, overhead)
        print(
            f"{name:<20} {statistics.median(bare):>8.4f} {statistics.median(arena):>8.4f} "
            f"{overhead:>+8.1%}"
        )
    print(f"worst overhead {worst:+.1%} (target at most {TARGET_OVERHEAD:.0%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
