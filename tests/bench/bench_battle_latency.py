"""Battle latency: from submit to both images ready, against the slower side's raw pipeline time.

    python tests/bench/bench_battle_latency.py [--battles 40] [--broker filesystem|redis]

Starts a real Celery worker (prefork, two processes) on a scratch database, plays battles on
the tiny CPU models through ``arena.services.create_battle`` and reads the timestamps the
database keeps: ``Battle.created_at`` (submit) and ``Battle.ready_at`` (both images stored),
and each side's ``compute_ms`` (pipeline plus encoding, measured in the worker). The overhead
of the arena is ``ready - created - max(compute_left, compute_right)``: queueing, broker
delivery, claims, progress writes, storing, and finishing the battle. Prints percentiles.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

from scratch import scratch_arena, start_worker, stop_worker


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--battles", type=int, default=40)
    parser.add_argument("--broker", choices=["filesystem", "redis"], default="filesystem")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/13")
    args = parser.parse_args()

    broker = args.redis_url if args.broker == "redis" else "filesystem://"
    env = scratch_arena(broker_url=broker, warm="all")
    from arena import services
    from arena.models import Battle
    from generation.models import ImageModel

    queue = f"bench-{os.getpid()}"
    ImageModel.objects.update(queue=queue)
    worker = start_worker(env=env, queue=queue, concurrency=2)
    try:
        print(f"worker ready (broker: {args.broker}); {args.battles} battles on tiny CPU models")
        overheads, totals, slower = [], [], []
        for index in range(args.battles + 3):
            battle = services.create_battle(prompt_text=f"a lighthouse, study {index}", owner="b")
            while True:
                battle.refresh_from_db()
                if battle.status != Battle.Status.GENERATING:
                    break
                time.sleep(0.002)
            if battle.status != Battle.Status.READY or battle.ready_at is None:
                raise SystemExit(f"battle {battle.pk} ended {battle.status}")
            if index < 3:
                continue  # warm-up: first runs of each model in each process
            total = (battle.ready_at - battle.created_at).total_seconds() * 1000
            compute = max(
                battle.generation_left.compute_ms or 0, battle.generation_right.compute_ms or 0
            )
            totals.append(total)
            slower.append(compute)
            overheads.append(total - compute)
        print(f"{'ms':>28} {'median':>8} {'p90':>8} {'max':>8}")
        for label, values in [
            ("submit to both ready", totals),
            ("slower side's pipeline", slower),
            ("overhead", overheads),
        ]:
            print(
                f"{label:>28} {statistics.median(values):8.1f} "
                f"{percentile(values, 0.9):8.1f} {max(values):8.1f}"
            )
    finally:
        stop_worker(worker)
    return 0


if __name__ == "__main__":
    sys.exit(main())
