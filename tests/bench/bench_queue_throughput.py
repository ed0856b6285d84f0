"""Images per second on one queue: through a worker one job at a time, and batched in-process.

    python tests/bench/bench_queue_throughput.py [--jobs 40] [--model tiny-inhouse] [--batch 4]

One Celery worker process (prefork, concurrency 1: one GPU's worth) consumes one model's queue;
the script enqueues ``--jobs`` jobs at once and times the first enqueue to the last image
stored. Beside it, in this process, the same model's pipeline runs the same number of images
one by one and in batches of ``--batch`` prompts. The arena does not batch jobs today; the
batched row says what dynamic batching could buy (ARCHITECTURE.md section 5).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from scratch import scratch_arena, start_worker, stop_worker


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=40)
    parser.add_argument("--model", default="tiny-inhouse")
    parser.add_argument("--batch", type=int, default=4)
    args = parser.parse_args()

    env = scratch_arena(
        broker_url=os.environ.get("CELERY_BROKER_URL", "filesystem://"), warm=args.model
    )
    import torch
    from django.db import transaction

    from generation import pipelines, services
    from generation.models import Generation, ImageModel

    model = ImageModel.objects.get(key=args.model)
    queue = f"bench-{os.getpid()}"
    ImageModel.objects.filter(pk=model.pk).update(queue=queue)
    model.refresh_from_db()
    rows = []
    worker = start_worker(env=env, queue=queue, concurrency=1)
    try:
        started = time.perf_counter()
        with transaction.atomic():
            jobs = [
                services.create_generation(model=model, prompt=f"a kite, study {i}", seed=i)
                for i in range(args.jobs)
            ]
            for job in jobs:
                services.enqueue(job)
        pending = Generation.objects.filter(pk__in=[j.pk for j in jobs])
        while pending.exclude(status__in=["done", "failed"]).exists():
            time.sleep(0.01)
        elapsed = time.perf_counter() - started
        assert not pending.filter(status="failed").exists(), "a job failed"
        rows.append(("worker queue, one job at a time", elapsed))
    finally:
        stop_worker(worker)

    torch.set_num_threads(1)
    pipe = pipelines.get_pipeline(services.spec_for(model))
    common = {
        "num_inference_steps": model.default_steps,
        "guidance_scale": model.default_guidance,
        "width": model.width,
        "height": model.height,
    }
    pipe(prompt="warm up", **common)
    started = time.perf_counter()
    for i in range(args.jobs):
        pipe(prompt=f"a kite, study {i}", generator=torch.Generator().manual_seed(i), **common)
    rows.append(("pipeline in-process, batch 1", time.perf_counter() - started))
    started = time.perf_counter()
    for first in range(0, args.jobs, args.batch):
        seeds = range(first, min(first + args.batch, args.jobs))
        pipe(
            prompt=[f"a kite, study {i}" for i in seeds],
            generator=[torch.Generator().manual_seed(i) for i in seeds],
            **common,
        )
    rows.append((f"pipeline in-process, batch {args.batch}", time.perf_counter() - started))

    print(
        f"{args.jobs} images of {model.key}, {model.default_steps} steps, "
        f"{model.width}x{model.height}, one CPU thread"
    )
    print(f"{'':>34} {'seconds':>8} {'images/s':>9}")
    for label, seconds in rows:
        print(f"{label:>34} {seconds:8.2f} {args.jobs / seconds:9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
