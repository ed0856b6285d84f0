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
  threads): its page polls nothing under the floor and once 100 ms past its end, then after the
  delay each answer names (``load delay:Nms``), until the images show, sending back the last
  ETag as the browser's cache does (see ``load`` for how the page's time is kept);
- with ``--modes``, also ``full`` (this code, sync worker, no ``If-None-Match``, the before
  schedule) and ``etag`` (this code, sync worker, ETags, the before schedule).

A poll under the floor is of a battle whose floor is hours away; a poll past it is of a "late"
battle, past its floor and still generating (it stands for the poll that sees the images too,
played as a full answer). The only writes during a run are ``after``'s: its late battle's rows
set as the workers would have written them at the page's time, before each poll that comes
before the images are ready. The page load, the submit and the vote are the same
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
import functools
import http.client
import os
import re
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
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
from django.db import connection as db_connection  # noqa: E402
from django.utils import timezone  # noqa: E402

from arena import services  # noqa: E402
from arena.models import Battle  # noqa: E402
from generation.models import Generation, ImageModel  # noqa: E402
from tests.local_servers import gunicorn  # noqa: E402

POLL_PERIOD_S = 0.4
# The page under the floor polls this long past the floor's end (arena.views.FLOOR_POLL_MARGIN_MS).
FLOOR_POLL_MARGIN_S = 0.1
# The fast side's model: its fastest recent run, in seconds (done well within the floor).
FAST_RUN_S = 1.0
STEPS = 4


def schedule(version: str, floor_s: float, past_floor_s: float) -> list[bool]:
    """The polls one battle's page makes, in order: True for a poll under the floor.

    ``before``: every 400 ms from submit; ``today`` (the page of 6d396f0): none under the floor,
    one just past its end, then every 400 ms. Both until the first poll at or past floor +
    past_floor_s (images shown). (``after`` polls when each answer says: ``load``.)"""
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


def seen_late_by(version: str, floor_s: float, past_floor_s: float) -> float:
    """How long after the images are ready the page of ``version`` (a fixed schedule) sees them."""
    polls = schedule(version, floor_s, past_floor_s)
    period, first = (
        (POLL_PERIOD_S, POLL_PERIOD_S)
        if version == "before"
        else (POLL_PERIOD_S, floor_s + FLOOR_POLL_MARGIN_S)
    )
    return first + period * (len(polls) - 1) - (floor_s + past_floor_s)


HINT = re.compile(rb'hx-trigger="load delay:(\d+)ms')


QUEUE = "bench-polling"


# A battle row the clients poll: session key, panel path, battle pk, and each side's
# (generation pk, its model's fastest step in seconds).
Row = tuple[str, str, int, tuple[tuple[int, float], ...]]


def setup_battles(
    count: int, *, slow_run_s: float, fastest_share: float
) -> tuple[list[Row], list[Row]]:
    """``count`` generating battles under their floor and ``count`` past it, one session each.

    The two models have recent finished runs, as a worker writes them (``compute_ms`` for
    ``STEPS`` steps): ``bench-a``'s fastest took ``fastest_share`` of ``slow_run_s`` (this
    battle's slow side takes ``slow_run_s``: done at the battle's end, floor plus the time past
    it), ``bench-b`` FAST_RUN_S. The page's next poll past the floor is drawn from these and the
    sides' start and steps (arena.polling.next_poll); a share under 1 makes the estimate short,
    so the page polls more often than it needs to."""
    call_command("migrate", verbosity=0)
    models = {}
    for key in ("bench-a", "bench-b"):
        models[key], _ = ImageModel.objects.update_or_create(
            key=key,
            version="1",
            defaults={
                "display_name": key,
                "source": "none",
                "queue": QUEUE,
                "enabled": True,
                "default_steps": STEPS,
            },
        )
    ImageModel.objects.exclude(key__in=["bench-a", "bench-b"]).update(enabled=False)
    Generation.objects.filter(model__in=models.values(), purpose=Generation.Purpose.CHAT).delete()
    run_s = {models["bench-a"].pk: slow_run_s, models["bench-b"].pk: FAST_RUN_S}
    history = {models["bench-a"].pk: fastest_share, models["bench-b"].pk: 1.0}
    for model in models.values():
        for _ in range(5):
            Generation.objects.create(
                model=model,
                prompt="an earlier run",
                seed=1,
                steps=STEPS,
                guidance=5.0,
                width=64,
                height=64,
                output_width=64,
                output_height=64,
                status=Generation.Status.DONE,
                purpose=Generation.Purpose.CHAT,
                steps_done=STEPS,
                started_at=timezone.now(),
                finished_at=timezone.now(),
                compute_ms=round(run_s[model.pk] * 1000 * history[model.pk]),
            )
    under: list[Row] = []
    late: list[Row] = []
    now = timezone.now()
    for index in range(2 * count):
        session = SessionStore()
        session.create()
        owner = services.identity_hash(session.session_key or "")
        battle = services.create_battle(prompt_text="a lighthouse in fog", owner=owner)
        # Half way through generating: the state a poll sees most of the time.
        Generation.objects.filter(
            pk__in=[battle.generation_left_id, battle.generation_right_id]
        ).update(status=Generation.Status.RUNNING, steps_done=1, started_at=now)
        floor = timedelta(milliseconds=3500)
        if index < count:  # under its floor for the whole bench
            created, reveal = now, now + timedelta(hours=12)
        else:  # past its floor, still generating
            created, reveal = now - 2 * floor, now - floor
        Battle.objects.filter(pk=battle.pk).update(created_at=created, reveal_at=reveal)
        path = f"/battles/{battle.public_id}/panel"
        sides = tuple(
            (job, run_s[model] / STEPS)
            for job, model in (
                (battle.generation_left_id, battle.model_left_id),
                (battle.generation_right_id, battle.model_right_id),
            )
        )
        row = (session.session_key or "", path, battle.pk, sides)
        (under if index < count else late).append(row)
    from arena.celery import app

    with app.connection_for_write() as connection:
        connection.default_channel.queue_purge(QUEUE)  # type: ignore[attr-defined]
    return under, late


@functools.cache
def place_statement() -> str:
    battle, job = Battle._meta.db_table, Generation._meta.db_table
    # One statement (atomic by itself, one round trip): the battle's times, both sides' start
    # and steps. Table names come from the models, values go in as parameters.
    return (
        f"WITH b AS (UPDATE {battle} SET created_at = %s, reveal_at = %s "  # noqa: S608
        f"WHERE id = %s) UPDATE {job} SET started_at = %s, steps_done = CASE id "
        f"WHEN %s THEN %s WHEN %s THEN %s END WHERE id IN (%s, %s)"
    )


def place(row: Row, *, at_s: float, floor_s: float) -> None:
    """Set a late battle's row as it stands ``at_s`` after its submit, as the workers would have
    written it: both sides started at submit (empty queues), each side's steps done at its
    model's pace (a worker writes its progress every 0.25 s), still running."""
    created = timezone.now() - timedelta(seconds=at_s)
    (left, left_step_s), (right, right_step_s) = row[3]
    with db_connection.cursor() as cursor:
        cursor.execute(
            place_statement(),
            [
                created,
                created + timedelta(seconds=floor_s),
                row[2],
                created,
                left,
                min(STEPS, int(at_s / left_step_s)),
                right,
                min(STEPS, int(at_s / right_step_s)),
                left,
                right,
            ],
        )


@dataclass
class Played:
    """What a run's clients did: battles completed, every poll's latency, the answers by
    status, and for each completed battle how long after its images were ready it saw them."""

    completed: int = 0
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    late_by: list[float] = field(default_factory=list)


def load(
    base: str,
    battles: tuple[list[Row], list[Row]],
    clients: int,
    seconds: float,
    *,
    conditional: bool,
    plan: list[bool] | None,
    floor_s: float,
    past_floor_s: float,
) -> Played:
    """Each client plays battles after one another, flat out, polling as ``plan`` says, or, with
    no plan (``after``), as the answers say: once just past the floor, then after each answer's
    ``load delay`` (the page's hx-trigger) until the battle's images are ready by then.

    Time inside a battle is the page's own (the client does not sleep): before each poll that
    comes before the images are ready, the late battle's row is set as it stands at that time
    (``place``), so the answer's delay is drawn from the state the page would see. The poll at
    or past that moment stands for the one that sees the images; how much later than the
    images were ready it comes is counted."""
    host, port = base.removeprefix("http://").split(":")
    played = Played()
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds
    shown_s = floor_s + past_floor_s

    def client(index: int) -> None:
        under, late = battles[0][index::clients], battles[1][index::clients]
        mine = Played()
        battle = 0

        def poll(row: Row, etag: str | None) -> tuple[int, bytes, str | None]:
            headers = {
                "Cookie": f"{settings.SESSION_COOKIE_NAME}={row[0]}",
                "HX-Request": "true",
                "Host": "127.0.0.1",
            }
            if conditional and etag:
                headers["If-None-Match"] = etag
            started = time.perf_counter()
            connection = http.client.HTTPConnection(host, int(port), timeout=30)
            connection.request("GET", row[1], headers=headers)
            response = connection.getresponse()
            body = response.read()
            connection.close()
            mine.latencies.append(time.perf_counter() - started)
            mine.statuses[response.status] = mine.statuses.get(response.status, 0) + 1
            return response.status, body, response.getheader("ETag")

        while time.monotonic() < stop_at:
            if plan is not None:
                etags: dict[str, str] = {}  # a new battle: nothing cached yet
                for step, is_under in enumerate(plan):
                    if time.monotonic() >= stop_at:
                        break  # a battle cut short by the end of the run is not counted
                    pool = under if is_under else late
                    row = pool[(battle + step) % len(pool)]
                    _, _, tag = poll(row, etags.get(row[1]))
                    if tag:
                        etags[row[1]] = tag
                else:
                    mine.completed += 1
                    at = POLL_PERIOD_S * len(plan)  # the before page's schedule
                    mine.late_by.append(at - shown_s)
            else:
                row = late[battle % len(late)]
                at, etag, delay_ms = floor_s + FLOOR_POLL_MARGIN_S, None, None
                while time.monotonic() < stop_at:
                    if at >= shown_s:  # this poll sees the images: a full answer
                        poll(row, None)
                        mine.completed += 1
                        mine.late_by.append(at - shown_s)
                        break
                    place(row, at_s=at, floor_s=floor_s)
                    asked = time.perf_counter()
                    status, body, etag = poll(row, etag)
                    # The page waits the delay from when the answer came, not from when it
                    # asked (the server's clock had moved on by then, too).
                    at += time.perf_counter() - asked
                    if status == 200:  # a 304: the browser's copy, with its delay, is used
                        found = HINT.search(body)
                        if found is None:
                            raise RuntimeError(f"no next poll in the answer: {body[:300]!r}")
                        delay_ms = int(found[1])
                    if delay_ms is None:
                        raise RuntimeError(f"a {status} with no answer before it")
                    at += delay_ms / 1000
            battle += 1
        db_connection.close()
        with lock:
            played.completed += mine.completed
            played.latencies.extend(mine.latencies)
            played.late_by.extend(mine.late_by)
            for status, n in mine.statuses.items():
                played.statuses[status] = played.statuses.get(status, 0) + n

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return played


def report(label: str, seconds: float, battle_s: float, played: Played) -> tuple[float, ...]:
    rate = played.completed / seconds
    polls = len(played.latencies) / seconds
    cuts = statistics.quantiles(played.latencies, n=100)
    late = played.late_by or [0.0]
    load_1m = os.getloadavg()[0]
    print(
        f"{label:6s} battles/s {rate:6.1f}  in flight ({battle_s:.1f} s battles) "
        f"{rate * battle_s:5.0f}  polls/s {polls:7.1f}  polls/battle "
        f"{polls / max(rate, 1e-9):5.2f}  p50 {cuts[49] * 1000:6.1f} ms  "
        f"p99 {cuts[98] * 1000:6.1f} ms  statuses {dict(sorted(played.statuses.items()))}  "
        f"images seen late by mean {statistics.mean(late) * 1000:4.0f} ms, max "
        f"{max(late) * 1000:4.0f} ms  load {load_1m:.2f}",
        flush=True,
    )
    return rate, polls, cuts[98], statistics.mean(late), max(late)


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
        "--fastest-share",
        type=float,
        default=1.0,
        help="the slow model's fastest recent run as a share of this battle's run (1: the "
        "battle's run is as fast as its model's fastest; under 1: slower, the estimate short)",
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
    battles = setup_battles(
        args.battles,
        slow_run_s=args.floor_s + args.past_floor_s,
        fastest_share=args.fastest_share,
    )
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
    plans: dict[str, list[bool] | None] = {
        "before": schedule("before", args.floor_s, args.past_floor_s),
        "after": None,
    }
    today = schedule("today", args.floor_s, args.past_floor_s)
    fixed = {"before": plans["before"] or [], "today (6d396f0)": today}
    print(
        f"one gunicorn process per run, {args.clients} clients flat out, {args.battles} battles "
        f"under the floor and {args.battles} past it; battles of {battle_s:.1f} s (floor "
        f"{args.floor_s:.1f} s); polls per battle (under the floor + past it): "
        + ", ".join(f"{v} {sum(p)} + {len(p) - sum(p)}" for v, p in fixed.items())
        + ", after as the answers say; images seen late by: "
        + ", ".join(
            f"{v} {seen_late_by(v.split()[0], args.floor_s, args.past_floor_s) * 1000:.0f} ms"
            for v in fixed
        )
        + f"; {args.seconds:.0f} s per run; database {settings.DATABASES['default']['NAME']}",
        flush=True,
    )
    figures: dict[str, list[tuple[float, ...]]] = {label: [] for label in order}
    for pair in range(args.pairs):
        print(f"pair {pair + 1}", flush=True)
        for label in order:
            root, extra, conditional, page = kinds[label]
            with (
                tempfile.TemporaryDirectory() as folder,
                gunicorn(Path(folder), env, root=root, extra=extra) as base,
            ):
                for run_s in (args.warmup, args.seconds):
                    played = load(
                        base,
                        battles,
                        args.clients,
                        run_s,
                        conditional=conditional,
                        plan=plans[page],
                        floor_s=args.floor_s,
                        past_floor_s=args.past_floor_s,
                    )
                figures[label].append(report(label, args.seconds, battle_s, played))
    baseline = "before" if args.before else order[0]
    for label in order:
        rates = [f[0] for f in figures[label]]
        ratios = [f[0] / b[0] for f, b in zip(figures[label], figures[baseline], strict=True)]
        print(
            f"{label:6s} battles/s median {statistics.median(rates):6.1f}  polls/s median "
            f"{statistics.median(f[1] for f in figures[label]):7.1f}  p99 median "
            f"{statistics.median(f[2] for f in figures[label]) * 1000:6.1f} ms  images seen "
            f"late by mean {statistics.mean(f[3] for f in figures[label]) * 1000:.0f} ms, "
            f"max {max(f[4] for f in figures[label]) * 1000:.0f} ms  "
            f"battles in flight per web process vs {baseline}: "
            + ", ".join(f"{r:.1f}x" for r in ratios)
            + f" (median {statistics.median(ratios):.1f}x)"
        )


if __name__ == "__main__":
    main()
