"""Benchmark: latency, throughput, memory and swap cost of each registry model on this device.

A script, not a test (pytest does not collect it). Run it from the repository root on a GPU host,
with the weights already in the Hugging Face cache or under ARENA_MODELS_DIR:

    HF_HUB_OFFLINE=1 .venv/bin/python tests/bench/bench_gpu.py \
        --registry /srv/arena/models.toml [--models key,key] [--runs 5] [--batch 1,4] \
        [--swaps 3] [--json OUT]

Every model goes through the arena's own path, as a worker's job does:
``generation.pipelines.get_pipeline`` (the per-process cache: same dtype, scheduler, tiling,
shared components and, on CUDA, the same GPU options including ``ARENA_TORCH_COMPILE``), then
``generation.pipelines.generate_batch`` with the family's recipe, at every batch size (batch 1 is
exactly ``generate``). One warm-up run per batch size, then ``--runs`` timed runs at the
registry's steps, guidance and size with fixed seeds.

Per model and batch size it prints median and p90 seconds per image, images per second, and on
CUDA the peak memory *reserved* by the caching allocator (what the card must really hold, which
``max_memory_allocated`` understates) beside the peak allocated, plus the model's weights.

Then the swap cost: with a memory budget that holds only the largest model
(``ARENA_GPU_MEMORY_GB`` semantics), it asks for the models round-robin ``--swaps`` times, so each
request moves one model in from CPU memory and the others out; it prints the median seconds of a
swap-in per model. On a CPU the moves are no-ops and this measures the bookkeeping alone.

It also runs on a CPU, slowly, in float32:

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 .venv/bin/python tests/bench/bench_gpu.py \
        --registry deploy/models.tiny.toml --runs 2 --batch 1,2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "arena.settings")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script from anywhere

import django  # noqa: E402

django.setup()

import diffusers  # noqa: E402
import torch  # noqa: E402
from django.conf import settings  # noqa: E402

from generation import pipelines  # noqa: E402
from generation.registry import ModelEntry, load_registry  # noqa: E402

PROMPTS = (
    "a red fox sitting in fresh snow at dawn, soft light",
    "a bowl of ramen on a wooden table, steam rising, top-down photo",
    "an isometric illustration of a tiny lighthouse on a rock",
    "a watercolour painting of a busy market street in the rain",
)
BASE_SEED = 1234
P90 = 0.9
GIB = 1024**3
MIB = 1024**2


@dataclass
class Result:
    key: str
    batch: int
    runs: int = 0
    steps: int = 0
    width: int = 0
    height: int = 0
    guidance: float = 0.0
    dtype: str = ""
    load_s: float = 0.0
    median_s_per_image: float | None = None
    p90_s_per_image: float | None = None
    images_per_s: float | None = None
    peak_reserved_gib: float | None = None
    peak_allocated_gib: float | None = None
    weights_mib: float | None = None
    error: str = ""
    seconds_per_run: list[float] = field(default_factory=list)


def new_result(
    entry: ModelEntry, *, batch: int, dtype: str = "", load_s: float = 0.0, error: str = ""
) -> Result:
    return Result(
        key=entry.key,
        batch=batch,
        steps=entry.steps,
        width=entry.width,
        height=entry.height,
        guidance=entry.guidance,
        dtype=dtype,
        load_s=load_s,
        error=error,
    )


def percentile(values: list[float], fraction: float) -> float:
    """Linear interpolation between the two nearest ranks (numpy's default)."""
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def spec_of(entry: ModelEntry) -> pipelines.PipelineSpec:
    return pipelines.PipelineSpec(
        key=entry.key,
        version=entry.version,
        source=entry.source,
        pipeline_class=entry.pipeline_class,
        revision=entry.revision,
        dtype=entry.dtype,
        scheduler=entry.scheduler,
        vae_tiling=entry.vae_tiling,
        custom_pipeline=entry.custom_pipeline,
    )


def run_once(entry: ModelEntry, *, batch: int, seed: int) -> None:
    """One job's worth of work through the arena's path: cache lookup, recipe, progress."""
    heard: list[int] = []
    pipelines.generate_batch(
        pipelines.get_pipeline(spec_of(entry)),
        prompts=[PROMPTS[(seed + i) % len(PROMPTS)] for i in range(batch)],
        seeds=[seed + i for i in range(batch)],
        negative_prompt="",
        steps=entry.steps,
        guidance=entry.guidance,
        width=entry.width,
        height=entry.height,
        on_step=heard.append,
    )


def measure(entry: ModelEntry, *, batch: int, runs: int, device: str, result: Result) -> None:
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    run_once(entry, batch=batch, seed=BASE_SEED)  # warm-up: kernels, autotuning, compile
    for index in range(runs):
        synchronize(device)
        started = time.perf_counter()
        run_once(entry, batch=batch, seed=BASE_SEED + 1000 * (index + 1))
        synchronize(device)
        result.seconds_per_run.append(time.perf_counter() - started)
    per_image = [seconds / batch for seconds in result.seconds_per_run]
    result.runs = runs
    result.median_s_per_image = statistics.median(per_image)
    result.p90_s_per_image = percentile(per_image, P90)
    result.images_per_s = batch / statistics.median(result.seconds_per_run)
    if device == "cuda":
        result.peak_reserved_gib = torch.cuda.max_memory_reserved() / GIB
        result.peak_allocated_gib = torch.cuda.max_memory_allocated() / GIB


def bench_model(entry: ModelEntry, *, batches: list[int], runs: int, device: str) -> list[Result]:
    started = time.perf_counter()
    try:
        pipe = pipelines.get_pipeline(spec_of(entry))
    except Exception as exc:  # a missing checkpoint must not stop the other models
        return [new_result(entry, batch=b, error=f"load: {exc!r}") for b in batches]
    synchronize(device)
    load_s = time.perf_counter() - started
    dtype = str(getattr(pipe, "dtype", "")).removeprefix("torch.")
    weights_mib = pipelines.model_weight_bytes(pipe) / MIB
    results = []
    for batch in batches:
        result = new_result(entry, batch=batch, dtype=dtype, load_s=load_s)
        result.weights_mib = weights_mib
        try:
            measure(entry, batch=batch, runs=runs, device=device, result=result)
        except torch.cuda.OutOfMemoryError:
            result.error = "out of memory"
        except Exception as exc:
            result.error = repr(exc)
        results.append(result)
        if device == "cuda":
            torch.cuda.empty_cache()
    return results


def bench_swaps(entries: list[ModelEntry], *, rounds: int, device: str) -> dict[str, float]:
    """Median seconds to bring each model back onto the device when only one fits."""
    loaded = [e for e in entries if (e.key, e.version) in pipelines.cached_pipeline_keys()]
    if len(loaded) < 2 or rounds < 1:
        return {}
    largest = max(pipelines.model_weight_bytes(pipelines.get_pipeline(spec_of(e))) for e in loaded)
    pipelines.set_memory_budget(largest)
    times: dict[str, list[float]] = {e.key: [] for e in loaded}
    for _ in range(rounds):
        for entry in loaded:
            synchronize(device)
            started = time.perf_counter()
            pipelines.get_pipeline(spec_of(entry))
            synchronize(device)
            times[entry.key].append(time.perf_counter() - started)
    pipelines.set_memory_budget(pipelines.memory_budget_from_env())
    return {key: statistics.median(values) for key, values in times.items()}


def environment(device: str) -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    return {
        "device": torch.cuda.get_device_name() if device == "cuda" else cpu,
        "device_kind": device,
        "torch": torch.__version__,
        "cuda": str(torch.version.cuda),
        "diffusers": diffusers.__version__,
        "python": platform.python_version(),
        "torch_compile": os.environ.get("ARENA_TORCH_COMPILE", "0"),
    }


def fmt(value: float | None, pattern: str) -> str:
    return "-" if value is None else format(value, pattern)


def print_table(env: dict[str, str], results: list[Result]) -> None:
    print(
        f"device {env['device']} ({env['device_kind']}), torch {env['torch']} "
        f"(CUDA {env['cuda']}), diffusers {env['diffusers']}, "
        f"compile {env['torch_compile']}"
    )
    header = (
        f"{'model':<18} {'dtype':<9} {'steps':>5} {'size':>9} {'batch':>5} {'load s':>7} "
        f"{'med s/img':>10} {'p90 s/img':>10} {'img/s':>8} {'wt MiB':>8} {'reserved':>9} "
        f"{'alloc':>7}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        size = f"{r.width}x{r.height}"
        if r.error:
            print(f"{r.key:<18} {r.dtype:<9} {r.steps:>5} {size:>9} {r.batch:>5}  error: {r.error}")
            continue
        print(
            f"{r.key:<18} {r.dtype:<9} {r.steps:>5} {size:>9} {r.batch:>5} {r.load_s:>7.1f} "
            f"{fmt(r.median_s_per_image, '.3f'):>10} {fmt(r.p90_s_per_image, '.3f'):>10} "
            f"{fmt(r.images_per_s, '.2f'):>8} {fmt(r.weights_mib, '.1f'):>8} "
            f"{fmt(r.peak_reserved_gib, '.2f'):>9} {fmt(r.peak_allocated_gib, '.2f'):>7}"
        )
    print("(wt: the model's weights; reserved and allocated: CUDA peaks in GiB, '-' on a CPU)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--registry", type=Path, default=settings.MODEL_REGISTRY)
    parser.add_argument("--models", default="", help="comma-separated keys (default: all)")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per batch size")
    parser.add_argument("--batch", default="1,4", help="comma-separated batch sizes")
    parser.add_argument("--swaps", type=int, default=3, help="round-robin swap rounds (0: none)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    batches = [int(b) for b in args.batch.split(",") if b.strip()]
    if args.runs < 1 or not batches or min(batches) < 1:
        parser.error("--runs and every --batch size must be at least 1")
    keys = {k.strip() for k in args.models.split(",") if k.strip()}

    entries = load_registry(args.registry, models_dir=settings.MODELS_DIR)
    chosen = [e for e in entries if e.backend == "diffusers" and (not keys or e.key in keys)]
    unknown = keys - {e.key for e in chosen}
    if unknown:
        parser.error(f"not diffusers models in {args.registry}: {', '.join(sorted(unknown))}")
    device = pipelines.device_name()
    env = environment(device)

    results: list[Result] = []
    for entry in chosen:
        print(f"benchmarking {entry.key} ...", file=sys.stderr, flush=True)
        results.extend(bench_model(entry, batches=batches, runs=args.runs, device=device))
    print_table(env, results)
    swaps = bench_swaps(chosen, rounds=args.swaps, device=device)
    if swaps:
        print("swap-in from CPU memory when only the largest model fits (median ms):")
        for key, seconds in swaps.items():
            print(f"  {key:<18} {seconds * 1000:.2f}")
    if args.json:
        payload = {
            "environment": env,
            "registry": str(args.registry),
            "runs": args.runs,
            "results": [asdict(r) for r in results],
            "swap_s": swaps,
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
