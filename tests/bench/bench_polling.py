"""Battle-status polling against one gunicorn process on PostgreSQL and Redis.

A script, not a test. It creates battles that stay generating (one browser session each),
starts one gunicorn process per run, and has ``--clients`` threads poll the battle panel as htmx
does (``HX-Request``, the session cookie, the last ETag sent back as the browser's cache does),
back to back, for ``--seconds`` per run.

Each client plays battles as they live, one after another, flat out (no sleeping between polls):
every battle lasts as long in both versions (its reveal floor, ``--floor-s``, plus
``--past-floor-s`` until the images are ready past it), and a client makes the polls the page
of its version makes for such a battle:

- ``before`` (with ``--before DIR``, the code of 886fd81 in a checkout of its own, served as the
  old systemd unit did: one sync worker): its page polls every 400 ms from submit until the
  images show, without ETags (that code sent none), so for a 3.5 s floor 8 polls under the floor
  and then one every 400 ms past it until the one that sees the images;
- ``after`` (this code as deployed, deploy/gunicorn.conf.py: gthread, ARENA_WEB_THREADS
  threads): its page polls nothing under the floor and once 100 ms past its end, then every
  400 ms until the images show, sending back the last ETag as the browser's cache does;
- with ``--modes``, also ``full`` (this code, sync worker, no ``If-None-Match``, the before
  schedule) and ``etag`` (this code, sync worker, ETags, the before schedule).

A poll under the floor is of a battle whose floor is hours away; a poll past it is of a "late"
battle, past its floor and still generating (it stands for the poll that sees the images too),
so no database write happens during a run. The page load, the submit and the vote are the same
in both versions and are left out: the figure is what keeps a battle in flight.

Since a battle lasts as long in both, the battles one process carries in flight scale with the
battles it completes per second at saturation: that is the figure compared.

It prints, per run, battles completed per second, the battles in flight one process carries at
that rate (battles/s times the battle's length), polls per second, p50 and p99 latency in
milliseconds, the answers by status and the load average; then each pair's ratio to ``before``
and the median. Run from the repository root:

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
# The page under the floor polls this long past the floor's end (arena.views.FLOOR_POLL_MARGIN_MS).
FLOOR_POLL_MARGIN_S = 0.1


def schedule(version: str, floor_s: float, past_floor_s: float) -> list[bool]:
    """The polls one battle's page makes, in order: True for a poll under the floor.

    ``before``: every 400 ms from submit; ``after``: none under the floor, one just past its end,
    then every 400 ms. Both until the first poll at or past floor + past_floor_s (images shown)."""
    shown_at = floor_s + past_floor_s
    if version == "before":
        times = [POLL_PERIOD_S * k for k in range(1, 10_000)]
    else:
        times = [floor_s + FLOOR_POLL_MARGIN_S + POLL_PERIOD_S * k for k in range(10_000)]
    polls: list[bool] = []
    for at in times:
        polls.append(at < floor_s)
        if at >= shown_at:
            return polls
    raise ValueError("a battle too long")


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
    plan: list[bool],
) -> tuple[int, list[float], dict[int, int]]:
    """Each client plays battles after one another, flat out, polling as ``plan`` says.

    Returns the battles completed, every poll's latency and the answers by status."""
    host, port = base.removeprefix("http://").split(":")
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    done = [0]
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def client(index: int) -> None:
        under, late = battles[0][index::clients], battles[1][index::clients]
        seen: list[float] = []
        counts: dict[int, int] = {}
        completed = 0
        battle = 0
        while time.monotonic() < stop_at:
            etags: dict[str, str] = {}  # a new battle: nothing cached yet
            for step, is_under in enumerate(plan):
                if time.monotonic() >= stop_at:
                    break  # a battle cut short by the end of the run is not counted
                pool = under if is_under else late
                session, path = pool[(battle + step) % len(pool)]
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
            else:
                completed += 1
            battle += 1
        with lock:
            done[0] += completed
            latencies.extend(seen)
            for status, n in counts.items():
                statuses[status] = statuses.get(status, 0) + n

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return done[0], latencies, statuses


def report(
    label: str,
    seconds: float,
    battle_s: float,
    result: tuple[int, list[float], dict[int, int]],
) -> tuple[float, float, float]:
    completed, latencies, statuses = result
    rate = completed / seconds
    polls = len(latencies) / seconds
    cuts = statistics.quantiles(latencies, n=100)
    load_1m = os.getloadavg()[0]
    print(
        f"{label:6s} battles/s {rate:6.1f}  in flight ({battle_s:.1f} s battles) "
        f"{rate * battle_s:5.0f}  polls/s {polls:7.1f}  p50 {cuts[49] * 1000:6.1f} ms  "
        f"p99 {cuts[98] * 1000:6.1f} ms  statuses {dict(sorted(statuses.items()))}  "
        f"load {load_1m:.2f}",
        flush=True,
    )
    return rate, polls, cuts[98]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--battles", type=int, default=40)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--pairs", type=int, default=3, help="before/after runs, interleaved")
    parser.add_argument(
        "--floor-s", type=float, default=3.5, help="the reveal floor (3 to 4 s by default)"
    )
    parser.add_argument(
        "--past-floor-s",
        type=float,
        default=0.0,
        help="how long past the floor the images are ready (0: the models were done within it)",
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
        "gunicorn runs as the old unit did (one sync process) and is polled without ETags, "
        "every 400 ms from submit",
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
    # label: (code, extra gunicorn flags, send ETags back, the page's schedule)
    sync = ("--worker-class", "sync", "--threads", "1")
    kinds: dict[str, tuple[Path, tuple[str, ...], bool, str]] = {
        "full": (ROOT, sync, False, "before"),
        "etag": (ROOT, sync, True, "before"),
        "after": (ROOT, (), True, "after"),
    }
    if args.before:
        kinds["before"] = (args.before.resolve(), sync, False, "before")
    order = (["before"] if args.before else []) + [m for m in args.modes.split(",") if m]
    battle_s = args.floor_s + args.past_floor_s
    plans = {v: schedule(v, args.floor_s, args.past_floor_s) for v in ("before", "after")}
    print(
        f"one gunicorn process per run, {args.clients} clients flat out, {args.battles} battles "
        f"under the floor and {args.battles} past it; battles of {battle_s:.1f} s (floor "
        f"{args.floor_s:.1f} s); polls per battle (under the floor + past it): "
        + ", ".join(f"{v} {sum(p)} + {len(p) - sum(p)}" for v, p in plans.items())
        + f"; {args.seconds:.0f} s per run; database {settings.DATABASES['default']['NAME']}",
        flush=True,
    )
    figures: dict[str, list[tuple[float, float, float]]] = {label: [] for label in order}
    for pair in range(args.pairs):
        print(f"pair {pair + 1}", flush=True)
        for label in order:
            root, extra, conditional, page = kinds[label]
            with (
                tempfile.TemporaryDirectory() as folder,
                gunicorn(Path(folder), env, root=root, extra=extra) as base,
            ):
                plan = plans[page]
                load(base, battles, args.clients, args.warmup, conditional=conditional, plan=plan)
                result = load(
                    base, battles, args.clients, args.seconds, conditional=conditional, plan=plan
                )
                figures[label].append(report(label, args.seconds, battle_s, result))
    baseline = "before" if args.before else order[0]
    for label in order:
        rates = [f[0] for f in figures[label]]
        ratios = [f[0] / b[0] for f, b in zip(figures[label], figures[baseline], strict=True)]
        print(
            f"{label:6s} battles/s median {statistics.median(rates):6.1f}  polls/s median "
            f"{statistics.median(f[1] for f in figures[label]):7.1f}  p99 median "
            f"{statistics.median(f[2] for f in figures[label]) * 1000:6.1f} ms  "
            f"battles in flight per web process vs {baseline}: "
            + ", ".join(f"{r:.1f}x" for r in ratios)
            + f" (median {statistics.median(ratios):.1f}x)"
        )


if __name__ == "__main__":
    main()
