"""Battle-status polling against one gunicorn process on PostgreSQL and Redis.

A script, not a test. It creates ``--battles`` battles that stay generating (one browser
session each), starts one gunicorn process with deploy/gunicorn.conf.py, and has ``--clients``
threads poll the battle panel as htmx does (``HX-Request``, the session cookie) for
``--seconds``, in two runs under the same load:

- ``before`` (with ``--before DIR``): the code before the change, in a checkout of its own,
  served as the old systemd unit did (sync worker), every poll answered in full;
- ``full``: this code, sync worker, no ``If-None-Match``: every poll answered in full;
- ``etag``: this code, sync worker, each client sends back the ETag of its last answer, as the
  browser's cache does; an unchanged status is a 304;
- ``after``: this code as deployed (deploy/gunicorn.conf.py: gthread, ARENA_WEB_THREADS threads),
  with ETags.

It prints polls per second, p50 and p99 latency in milliseconds for each run, and the battles in
flight one process can carry at the page's poll period (400 ms). Run from the repository root:

    DATABASE_URL=postgres://... REDIS_URL=redis://.../N CELERY_BROKER_URL=redis://.../M \\
        .venv/bin/python tests/bench/bench_polling.py --seconds 10 --clients 8 --battles 40 \\
        --before /tmp/arena-before   # git worktree add /tmp/arena-before <commit before>
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

from arena import services  # noqa: E402
from generation.models import Generation, ImageModel  # noqa: E402
from tests.local_servers import gunicorn  # noqa: E402

POLL_PERIOD_S = 0.4
QUEUE = "bench-polling"


def setup_battles(count: int) -> list[tuple[str, str]]:
    """(session key, panel path) for ``count`` generating battles, one session each."""
    call_command("migrate", verbosity=0)
    for key in ("bench-a", "bench-b"):
        ImageModel.objects.update_or_create(
            key=key,
            version="1",
            defaults={"display_name": key, "source": "none", "queue": QUEUE, "enabled": True},
        )
    ImageModel.objects.exclude(key__in=["bench-a", "bench-b"]).update(enabled=False)
    battles = []
    for _ in range(count):
        session = SessionStore()
        session.create()
        owner = services.identity_hash(session.session_key or "")
        battle = services.create_battle(prompt_text="a lighthouse in fog", owner=owner)
        # Half way through generating: the state a poll sees most of the time.
        Generation.objects.filter(
            pk__in=[battle.generation_left_id, battle.generation_right_id]
        ).update(status=Generation.Status.RUNNING, steps_done=1)
        battles.append((session.session_key or "", f"/battles/{battle.public_id}/panel"))
    from arena.celery import app

    with app.connection_for_write() as connection:
        connection.default_channel.queue_purge(QUEUE)
    return battles


def load(
    base: str, battles: list[tuple[str, str]], clients: int, seconds: float, conditional: bool
) -> tuple[int, list[float], dict[int, int]]:
    host, port = base.removeprefix("http://").split(":")
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def client(index: int) -> None:
        mine = battles[index::clients]
        etags: dict[str, str] = {}
        seen: list[float] = []
        counts: dict[int, int] = {}
        turn = 0
        while time.monotonic() < stop_at:
            session, path = mine[turn % len(mine)]
            turn += 1
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


def report(label: str, seconds: float, total: int, latencies: list[float], statuses: dict) -> float:
    rate = total / seconds
    cuts = statistics.quantiles(latencies, n=100)
    print(
        f"{label:6s} polls/s {rate:7.1f}  p50 {cuts[49] * 1000:6.1f} ms  "
        f"p99 {cuts[98] * 1000:6.1f} ms  battles in flight at {POLL_PERIOD_S}s polls "
        f"{rate * POLL_PERIOD_S:6.0f}  statuses {dict(sorted(statuses.items()))}"
    )
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--battles", type=int, default=40)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument(
        "--before",
        type=Path,
        help="a checkout of the code before the change (git worktree add DIR COMMIT): its "
        "gunicorn runs as the old unit did (one sync process) and is polled without ETags",
    )
    args = parser.parse_args()
    if not settings.DATABASES["default"]["ENGINE"].endswith("postgresql"):
        sys.exit("set DATABASE_URL to a PostgreSQL database")
    if not settings.REDIS_URL or not str(settings.CELERY_BROKER_URL).startswith("redis://"):
        sys.exit("set REDIS_URL and CELERY_BROKER_URL to Redis")
    battles = setup_battles(args.battles)
    env = {
        "ARENA_BATTLE_DEADLINE_S": "86400",
        "ALLOWED_HOSTS": "127.0.0.1",
        "PROMETHEUS_MULTIPROC_DIR": tempfile.mkdtemp(prefix="bench-prom-"),
    }
    # (label, code, extra gunicorn flags, send ETags back)
    sync = ("--worker-class", "sync", "--threads", "1")
    runs: list[tuple[str, Path, tuple[str, ...], bool]] = []
    if args.before:
        runs.append(("before", args.before.resolve(), sync, False))
    runs += [
        ("full", ROOT, sync, False),
        ("etag", ROOT, sync, True),
        ("after", ROOT, (), True),
    ]
    print(
        f"one gunicorn process per run, {args.clients} clients, {args.battles} generating "
        f"battles, {args.seconds:.0f} s per run; database {settings.DATABASES['default']['NAME']}"
    )
    rates = {}
    for label, root, extra, conditional in runs:
        with (
            tempfile.TemporaryDirectory() as folder,
            gunicorn(Path(folder), env, root=root, extra=extra) as base,
        ):
            load(base, battles, args.clients, args.warmup, conditional=conditional)
            total, latencies, statuses = load(
                base, battles, args.clients, args.seconds, conditional
            )
            rates[label] = report(label, args.seconds, total, latencies, statuses)
    baseline = rates.get("before", rates["full"])
    for label, rate in rates.items():
        print(f"{label:6s} {rate / baseline:4.1f}x battles in flight per web process")


if __name__ == "__main__":
    main()
