"""Battle-status polling against one gunicorn process on PostgreSQL and Redis.

A script, not a test. It creates battles that stay generating (one browser session each),
starts one gunicorn process per run, and has ``--clients`` threads poll the battle panel as htmx
does (``HX-Request``, the session cookie, the last ETag sent back as the browser's cache does),
back to back, for ``--seconds`` per run.

Each client plays battles as they live: a battle is polled ``--floor-polls`` times under its
reveal floor (the floor of 3 to 4 s at the page's 400 ms period: 9 polls; the first has no tag,
as a new battle's first poll), then once past its floor, the poll that sees it change. Battles
under the floor have their floor hours away; "late" battles are past theirs and still
generating, so no database write happens during a run. With ``--floor-polls 0`` every poll is of
a late battle, the case of a slow model. The runs, interleaved ``--pairs`` times under the same
load:

- ``before`` (with ``--before DIR``): the code before the change, in a checkout of its own,
  served as the old systemd unit did (sync worker); it sends no ETag, so every poll is answered
  in full;
- ``after``: this code as deployed (deploy/gunicorn.conf.py: gthread, ARENA_WEB_THREADS threads);
- with ``--modes``, also ``full`` (this code, sync worker, no ``If-None-Match``) and ``etag``
  (this code, sync worker, ETags).

It prints, per run, polls per second, p50 and p99 latency in milliseconds, the answers by status,
the battles in flight one process carries at the page's poll period (400 ms) and the load
average; then each pair's ratio to ``before`` and the median. Run from the repository root:

    DATABASE_URL=postgres://... REDIS_URL=redis://.../N CELERY_BROKER_URL=redis://.../M \\
        .venv/bin/python tests/bench/bench_polling.py --seconds 10 --clients 8 --battles 40 \\
        --pairs 3 --before /tmp/arena-before   # git worktree add /tmp/arena-before <commit before>
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import sys
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "arena.settings")
# Battles must stay generating through the whole run.
os.environ["ARENA_BATTLE_DEADLINE_S"] = "86400"
# No worker runs here: draw pairs without asking for live workers (the battles are made below).
os.environ["ARENA_MATCH_LIVE_WORKERS"] = "0"

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.sessions.backends.db import SessionStore  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.utils import timezone  # noqa: E402

from arena import services  # noqa: E402
from arena.models import Battle  # noqa: E402
from generation.models import Generation, ImageModel  # noqa: E402
from tests.local_servers import gunicorn  # noqa: E402

POLL_PERIOD_S = 0.4
QUEUE = "bench-polling"


def setup_battles(count: int) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(session key, panel path) for ``count`` generating battles under their floor and
    ``count`` past it, one session each."""
    call_command("migrate", verbosity=0)
    for key in ("bench-a", "bench-b"):
        ImageModel.objects.update_or_create(
            key=key,
            version="1",
            defaults={"display_name": key, "source": "none", "queue": QUEUE, "enabled": True},
        )
    ImageModel.objects.exclude(key__in=["bench-a", "bench-b"]).update(enabled=False)
    under: list[tuple[str, str]] = []
    late: list[tuple[str, str]] = []
    now = timezone.now()
    for index in range(2 * count):
        session = SessionStore()
        session.create()
        owner = services.identity_hash(session.session_key or "")
        battle = services.create_battle(prompt_text="a lighthouse in fog", owner=owner)
        # Half way through generating: the state a poll sees most of the time.
        Generation.objects.filter(
            pk__in=[battle.generation_left_id, battle.generation_right_id]
        ).update(status=Generation.Status.RUNNING, steps_done=1)
        floor = timedelta(milliseconds=3500)
        if index < count:  # under its floor for the whole bench
            created, reveal = now, now + timedelta(hours=12)
        else:  # past its floor, still generating
            created, reveal = now - 2 * floor, now - floor
        Battle.objects.filter(pk=battle.pk).update(created_at=created, reveal_at=reveal)
        path = f"/battles/{battle.public_id}/panel"
        (under if index < count else late).append((session.session_key or "", path))
    from arena.celery import app

    with app.connection_for_write() as connection:
        connection.default_channel.queue_purge(QUEUE)  # type: ignore[attr-defined]
    return under, late


def load(
    base: str,
    battles: tuple[list[tuple[str, str]], list[tuple[str, str]]],
    clients: int,
    seconds: float,
    *,
    conditional: bool,
    floor_polls: int,
) -> tuple[int, list[float], dict[int, int]]:
    host, port = base.removeprefix("http://").split(":")
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def client(index: int) -> None:
        under, late = battles[0][index::clients], battles[1][index::clients]
        etags: dict[str, str] = {}
        seen: list[float] = []
        counts: dict[int, int] = {}
        # One battle's life: floor_polls polls under its floor, then one past it.
        plan = [under] * floor_polls + [late]
        turn = 0
        while time.monotonic() < stop_at:
            step = turn % len(plan)
            battle = turn // len(plan)
            turn += 1
            session, path = plan[step][battle % len(plan[step])]
            if floor_polls and step in (0, floor_polls):
                etags.pop(path, None)  # a new battle's first poll, or its first past the floor
            headers = {
                "Cookie": f"{settings.SESSION_COOKIE_NAME}={session}",
                "HX-Request": "true",
                "Host": "127.0.0.1",
            }
            if conditional and path in etags:
                headers["If-None-Match"] = etags[path]
            started = time.perf_counter()
            connection = http.client.HTTPConnection(host, int(port), timeout=30)
            connection.request("GET", path, headers=headers)
            response = connection.getresponse()
            response.read()
            connection.close()
            seen.append(time.perf_counter() - started)
            counts[response.status] = counts.get(response.status, 0) + 1
            if response.getheader("ETag"):
                etags[path] = response.getheader("ETag") or ""
        with lock:
            latencies.extend(seen)
            for status, n in counts.items():
                statuses[status] = statuses.get(status, 0) + n

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return len(latencies), latencies, statuses


def report(
    label: str, seconds: float, total: int, latencies: list[float], statuses: dict[int, int]
) -> tuple[float, float]:
    rate = total / seconds
    cuts = statistics.quantiles(latencies, n=100)
    load_1m = os.getloadavg()[0]
    print(
        f"{label:6s} polls/s {rate:7.1f}  p50 {cuts[49] * 1000:6.1f} ms  "
        f"p99 {cuts[98] * 1000:6.1f} ms  battles in flight at {POLL_PERIOD_S}s polls "
        f"{rate * POLL_PERIOD_S:5.0f}  statuses {dict(sorted(statuses.items()))}  "
        f"load {load_1m:.2f}",
        flush=True,
    )
    return rate, cuts[98]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--battles", type=int, default=40)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--pairs", type=int, default=3, help="before/after runs, interleaved")
    parser.add_argument(
        "--floor-polls",
        type=int,
        default=9,
        help="polls of a battle under its reveal floor before its one poll past it "
        "(0: every poll is of a battle past its floor)",
    )
    parser.add_argument(
        "--modes",
        default="after",
        help="runs of this code in each pair, of after, full, etag (comma-separated)",
    )
    parser.add_argument(
        "--before",
        type=Path,
        help="a checkout of the code before the change (git worktree add DIR COMMIT): its "
        "gunicorn runs as the old unit did (one sync process) and is polled without ETags",
    )
    args = parser.parse_args()
    if not str(settings.DATABASES["default"]["ENGINE"]).endswith("postgresql"):
        sys.exit("set DATABASE_URL to a PostgreSQL database")
    if not settings.REDIS_URL or not str(settings.CELERY_BROKER_URL).startswith("redis://"):
        sys.exit("set REDIS_URL and CELERY_BROKER_URL to Redis")
    battles = setup_battles(args.battles)
    env = {
        "ARENA_BATTLE_DEADLINE_S": "86400",
        "ALLOWED_HOSTS": "127.0.0.1",
        "PROMETHEUS_MULTIPROC_DIR": tempfile.mkdtemp(prefix="bench-prom-"),
    }
    # label: (code, extra gunicorn flags, send ETags back)
    sync = ("--worker-class", "sync", "--threads", "1")
    kinds: dict[str, tuple[Path, tuple[str, ...], bool]] = {
        "full": (ROOT, sync, False),
        "etag": (ROOT, sync, True),
        "after": (ROOT, (), True),
    }
    if args.before:
        kinds["before"] = (args.before.resolve(), sync, False)
    order = (["before"] if args.before else []) + [m for m in args.modes.split(",") if m]
    print(
        f"one gunicorn process per run, {args.clients} clients, {args.battles} battles under "
        f"the floor and {args.battles} past it, {args.floor_polls} polls under the floor per "
        f"battle, {args.seconds:.0f} s per run; database "
        f"{settings.DATABASES['default']['NAME']}",
        flush=True,
    )
    rates: dict[str, list[float]] = {label: [] for label in order}
    p99s: dict[str, list[float]] = {label: [] for label in order}
    for pair in range(args.pairs):
        print(f"pair {pair + 1}", flush=True)
        for label in order:
            root, extra, conditional = kinds[label]
            with (
                tempfile.TemporaryDirectory() as folder,
                gunicorn(Path(folder), env, root=root, extra=extra) as base,
            ):
                options = {"conditional": conditional, "floor_polls": args.floor_polls}
                load(base, battles, args.clients, args.warmup, **options)
                total, latencies, statuses = load(
                    base, battles, args.clients, args.seconds, **options
                )
                rate, p99 = report(label, args.seconds, total, latencies, statuses)
                rates[label].append(rate)
                p99s[label].append(p99)
    baseline = "before" if args.before else order[0]
    for label in order:
        ratios = [r / b for r, b in zip(rates[label], rates[baseline], strict=True)]
        print(
            f"{label:6s} polls/s median {statistics.median(rates[label]):7.1f}  p99 median "
            f"{statistics.median(p99s[label]) * 1000:6.1f} ms  battles in flight per web process "
            f"vs {baseline}: "
            + ", ".join(f"{r:.1f}x" for r in ratios)
            + f" (median {statistics.median(ratios):.1f}x)"
        )


if __name__ == "__main__":
    main()
