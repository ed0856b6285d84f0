"""Battle latency: pool-served battles from submit to ready, and live battles beside a pool refill.

    python tests/bench/bench_battle_latency.py [--battles 40] [--broker redis|filesystem]
        [--redis-url redis://127.0.0.1:6379/13] [--database-url postgres://.../scratch]
        [--burn 8]

Starts a real Celery worker (prefork, two processes) on a scratch database (SQLite, or the
scratch PostgreSQL database named by ``--database-url``, which it migrates and fills), and:

1. pool: stocks the pool for the first ``--prompts`` curated prompts, then submits battles on
   them through the JSON API (``POST /api/v1/battles``, Django's test client, so no network) and
   times each request, from submit to the answer that says ``ready`` with both image URLs;
2. live, alone: plays ``--live`` battles on typed prompts and reads each side's queue wait
   (``started_at - created_at``) from the database;
3. live beside a flood: the same while hundreds of pool jobs (the lowest priority) are queued;
4. live beside the refill as beat runs it (at most ARENA_POOL_REFILL_PENDING pool jobs per
   queue, here topped up every 50 ms by a thread).

For 3 and 4 it counts pool jobs that started while a live job was waiting (the broker served
a refill first: must be 0) and live jobs that started right after a pool job ended, having
waited for the process it held (a refill delayed them). Priorities need the Redis broker.

``--burn N`` runs N busy-loop processes from before the worker starts to the end, so the
machine is loaded reproducibly (the count of pool jobs started while a live job waited was not
0 only at high load); the load average is printed with each scenario.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta
from typing import Any

from scratch import scratch_arena, start_worker, stop_worker

# A live job that started within this long after a pool job ended, having waited longer than
# it, took the process that pool job held.
HANDOVER = timedelta(milliseconds=30)
# When each live job's battle had committed and sent it to the broker (create_battle returned).
SENT: dict[int, datetime] = {}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def row(label: str, values: list[float]) -> None:
    if not values:
        print(f"{label:>44}: none")
        return
    print(
        f"{label:>44}: n={len(values):3d} median {statistics.median(values):7.1f}  "
        f"p90 {percentile(values, 0.9):7.1f}  max {max(values):7.1f} ms"
    )


def wait_idle(timeout: float = 600) -> None:
    from generation.models import Generation

    deadline = time.monotonic() + timeout
    while Generation.objects.unfinished().exists():
        if time.monotonic() > deadline:
            raise SystemExit("the worker did not finish its jobs")
        time.sleep(0.05)


def play_live(count: int, tag: str, gap: float = 0.0) -> list[Any]:
    """``count`` live battles one after another, ``gap`` seconds apart; returns their jobs."""
    from django.utils import timezone

    from arena import services
    from arena.models import Battle

    jobs = []
    for index in range(count):
        battle = services.create_battle(prompt_text=f"a typed lighthouse {tag} {index}", owner="b")
        sent = timezone.now()
        SENT[battle.generation_left_id] = SENT[battle.generation_right_id] = sent
        deadline = time.monotonic() + 120
        while battle.status == Battle.Status.GENERATING and time.monotonic() < deadline:
            time.sleep(0.005)
            battle.refresh_from_db()
        if battle.status != Battle.Status.READY:
            raise SystemExit(f"live battle {battle.pk} ended {battle.status}")
        jobs += [battle.generation_left, battle.generation_right]
        time.sleep(gap)
    for job in jobs:
        job.refresh_from_db()
    return jobs


def refill_delays(live: list[Any]) -> tuple[int, int, int]:
    """(pool jobs that started while a live job waited, counted from the live job's creation
    and from when its battle had committed and sent it; live jobs that waited for a pool job).

    A pool job's start is its last one: one that gave way and started again counts where it
    started again."""
    from generation.models import Generation

    overtakes = after_sent = waited = 0
    pool_jobs = Generation.objects.filter(purpose=Generation.Purpose.POOL, started_at__isnull=False)
    for job in live:
        overtakes += pool_jobs.filter(
            started_at__gt=job.created_at, started_at__lt=job.started_at
        ).count()
        after_sent += pool_jobs.filter(
            started_at__gt=SENT[job.pk], started_at__lt=job.started_at
        ).count()
        freed = pool_jobs.filter(
            finished_at__gt=job.created_at,
            finished_at__lte=job.started_at,
            finished_at__gte=job.started_at - HANDOVER,
        )
        if freed.exists() and job.started_at - job.created_at > HANDOVER:
            waited += 1
    return overtakes, after_sent, waited


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f}"


def burn(count: int) -> list[subprocess.Popen[bytes]]:
    """``count`` processes that each keep one core busy until they are stopped."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


def waits(jobs: list[Any]) -> list[float]:
    return [(j.started_at - j.created_at).total_seconds() * 1000 for j in jobs]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--battles", type=int, default=40, help="pool-served battles to time")
    parser.add_argument("--prompts", type=int, default=20, help="curated prompts to stock")
    parser.add_argument("--per-pair", type=int, default=3, help="pool images per prompt, model")
    parser.add_argument("--live", type=int, default=15, help="live battles per scenario")
    parser.add_argument("--flood", type=int, default=300, help="pool jobs in the flood")
    parser.add_argument(
        "--gap", type=float, default=0.5, help="seconds between live battles beside the refill"
    )
    parser.add_argument(
        "--scenarios", default="pool,alone,flood,capped", help="which of the four to run"
    )
    parser.add_argument("--broker", choices=["filesystem", "redis"], default="redis")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/13")
    parser.add_argument("--database-url", default=None, help="a scratch PostgreSQL database")
    parser.add_argument(
        "--burn", type=int, default=0, help="busy-loop processes to run beside it (load)"
    )
    args = parser.parse_args()
    burners = burn(args.burn)
    try:
        return measure(args)
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()


def measure(args: argparse.Namespace) -> int:

    broker = args.redis_url if args.broker == "redis" else "filesystem://"
    env = scratch_arena(broker_url=broker, warm="all", database_url=args.database_url)
    from django.conf import settings
    from django.db import connection
    from django.test import Client

    from arena import pool, services
    from arena.models import PoolImage, Prompt
    from generation.models import Generation, ImageModel

    # One client submits every battle: the per-session request budget would stop it.
    for scope in ("SESSIONS", "BATTLES", "VOTES", "CHAT"):
        setattr(settings, f"ARENA_LIMIT_{scope}", "")
    if PoolImage.objects.exists():
        raise SystemExit("use an empty scratch database: this one already has a pool")
    services.load_prompts()
    queue = f"bench-{os.getpid()}"
    ImageModel.objects.update(queue=queue)
    worker = start_worker(env=env, queue=queue, concurrency=2)
    try:
        print(
            f"worker ready: broker {args.broker}, database {connection.vendor}, "
            f"{ImageModel.objects.enabled().count()} tiny CPU models, two processes, "
            f"{args.burn} busy-loop processes beside it; {load()}"
        )
        chosen = set(args.scenarios.split(","))
        prompts = list(Prompt.objects.curated().order_by("pk")[: args.prompts])
        if "pool" in chosen:
            # 1. Pool-served battles through the JSON API.
            stocked = pool.refill(per_pair=args.per_pair, prompt_limit=args.prompts)
            started = time.monotonic()
            wait_idle()
            print(
                f"stocked {len(stocked.queued)} pool images in {time.monotonic() - started:.1f} s"
            )
            client = Client(HTTP_HOST="127.0.0.1")
            client.get("/api/v1/session")
            served: list[float] = []
            live_fallbacks = 0
            attempt = 0
            while len(served) < args.battles and attempt < 20 * args.battles:
                text = prompts[attempt % len(prompts)].text
                attempt += 1
                begin = time.perf_counter()
                response = client.post(
                    "/api/v1/battles", {"prompt": text}, content_type="application/json"
                )
                elapsed = (time.perf_counter() - begin) * 1000
                body = response.json()
                assert response.status_code == 201, body
                if body["status"] == "ready" and set(body["images"]) == {"left", "right"}:
                    served.append(elapsed)
                else:
                    live_fallbacks += 1
            wait_idle()
            print(
                "\n1. pool-served battles, submit to 'ready' with both image URLs (JSON API); "
                + load()
            )
            row("pool-served", served)
            print(f"{'':>44}  ({live_fallbacks} submits fell back to live: pool not stocked)")
        if "alone" in chosen:
            # 2. Live battles alone.
            alone = play_live(args.live, "alone", args.gap)
            print(f"\nlive battle jobs' queue wait (created to started), {args.gap} s apart")
            row("live, no refill", waits(alone))
            print(f"{'':>44}  ({load()})")
        if "flood" in chosen:
            # 3. Live battles beside a flood of queued pool jobs.
            per_round = len(prompts) * ImageModel.objects.enabled().count()
            extra = -(-args.flood // per_round)
            flood_ids = pool.refill(
                per_pair=args.per_pair + extra, prompt_limit=args.prompts
            ).queued
            time.sleep(1.0)  # the worker is busy with pool jobs
            flooded = play_live(args.live, "flood")
            left = Generation.objects.filter(pk__in=flood_ids).unfinished().count()
            row("live, beside a flood of pool jobs", waits(flooded))
            overtakes, after_sent, waited = refill_delays(flooded)
            print(
                f"{'':>44}  pool jobs started while a live job waited: {overtakes} "
                f"({after_sent} after it was sent); live jobs that waited for "
                f"a running pool job: {waited}/{len(flooded)} ({left} pool jobs still queued); "
                + load()
            )
            Generation.objects.filter(pk__in=flood_ids).unfinished().update(
                status=Generation.Status.FAILED, error="bench: flood over"
            )
            wait_idle()
        if "capped" in chosen:
            # 4. Live battles beside the refill as beat runs it: capped per queue.
            stop = threading.Event()
            topped: list[int] = []

            def refiller() -> None:
                from django.db import connection as thread_connection

                while not stop.is_set():
                    topped.extend(
                        pool.refill(
                            per_pair=args.per_pair + 100,
                            prompt_limit=args.prompts,
                            max_pending=settings.ARENA_POOL_REFILL_PENDING,
                        ).queued
                    )
                    time.sleep(0.05)
                thread_connection.close()

            thread = threading.Thread(target=refiller)
            thread.start()
            time.sleep(1.0)
            try:
                capped = play_live(args.live, "capped", args.gap)
            finally:
                stop.set()
                thread.join()
            row(
                f"live, beside the capped refill ({settings.ARENA_POOL_REFILL_PENDING}/queue)",
                waits(capped),
            )
            overtakes, after_sent, waited = refill_delays(capped)
            print(
                f"{'':>44}  pool jobs started while a live job waited: {overtakes} "
                f"({after_sent} after it was sent); live jobs that waited for "
                f"a running pool job: {waited}/{len(capped)} "
                f"({len(topped)} pool jobs queued meanwhile); " + load()
            )
    finally:
        stop_worker(worker)
        from arena.celery import app

        with app.connection_for_write() as conn:
            for name in (queue, "default"):  # and the refill tasks the pool jobs chained
                with contextlib.suppress(Exception):  # an absent queue has nothing to purge
                    conn.default_channel.queue_purge(name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
