"""What one vote costs inside the web process, against the bare insert, without HTTP.

A script, not a test. It (re)creates a scratch PostgreSQL database as bench_vote_path.py does
(``--database``, on the server ``DATABASE_URL`` names; its name must contain "bench"), with the
same settings (``tests.bench.vote_settings``, DEBUG off, limits and caps raised but still counted
in Redis), starts one session through ``GET /api/v1/session`` with Django's test client (CSRF
checks on, as a browser meets them), makes that session's ready battles through the ORM, then
alternates ``--rounds`` times:

- ``vote``: ``--votes`` POSTs to ``/api/v1/battles/<id>/vote``, one battle after another;
- ``bare``: as many POSTs to ``/bench/bare-vote/<id>`` (tests/bench/vote_urls.py): the same
  middleware and JSON body, one INSERT.

For each run it prints milliseconds per request of wall clock and of CPU (this process plus its
PostgreSQL backend, on the same machine: on a shared machine the wall clock also counts the time
other processes held the cores), SQL statements per request, and the load average; then the
medians and the vote's share of the bare insert's cost. ``--profile N`` prints the N functions
with the most cumulative CPU time of this process over one more vote run (cProfile, timed by
``time.process_time``, so waits on the database and Redis are left out). Run from the
repository root:

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/arena REDIS_URL=redis://127.0.0.1:6379/6 \\
        CELERY_BROKER_URL=redis://127.0.0.1:6379/7 \\
        .venv/bin/python tests/bench/bench_vote_cpu.py --database arena_vote_cpu_bench
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.bench.bench_vote_path import (  # noqa: E402 - after the path is set
    CHOICES,
    make_battles,
    scratch_database,
    setup_django,
)


class _Session:
    """What make_battles needs of a session: its key."""

    def __init__(self, session_key: str) -> None:
        self.session_key = session_key


def cpu_seconds() -> tuple[float, float]:
    """CPU seconds of this process and of its PostgreSQL backend (same machine)."""
    from django.db import connection

    used = time.process_time()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        row = cursor.fetchone()
    assert row is not None
    try:
        fields = Path(f"/proc/{row[0]}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return used, float("nan")
    return used, (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(
    client: Any, paths: list[str], csrf: str, rng: random.Random
) -> tuple[float, float, float, dict[int, int], float]:
    """POST each path once; returns (wall ms, CPU ms, statements) per request, statuses, and
    the PostgreSQL backend's share of the CPU ms."""
    from django.db import connection

    statements = 0

    def counting(execute: Callable[..., Any], *args: Any) -> Any:
        nonlocal statements
        statements += 1
        return execute(*args)

    statuses: dict[int, int] = {}
    bodies = [json.dumps({"choice": rng.choice(CHOICES)}) for _ in paths]
    cpu_before = cpu_seconds()
    started = time.perf_counter()
    with connection.execute_wrapper(counting):
        for path, body in zip(paths, bodies, strict=True):
            response = client.post(
                path, body, content_type="application/json", headers={"X-CSRFToken": csrf}
            )
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
    wall = time.perf_counter() - started
    cpu_after = cpu_seconds()
    process, backend = (after - before for after, before in zip(cpu_after, cpu_before, strict=True))
    n = len(paths)
    return (
        wall * 1000 / n,
        (process + backend) * 1000 / n,
        statements / n,
        statuses,
        backend * 1000 / n,
    )


# The vote's stages timed by --segments: (label, module, attribute). Each is timed where its
# caller looks it up, so a stage's time includes the stages it calls.
SEGMENTS = (
    ("session load (auth user)", "django.contrib.sessions.backends.db", "SessionStore.load"),
    ("ninja operation", "ninja.operation", "Operation.run"),
    ("  body parse + validation", "ninja.operation", "Operation._get_values"),
    ("  battle lookup", "arena.visitors", "battle_to_vote"),
    ("  rate limit (Redis)", "arena.visitors", "limit"),
    ("  cast", "arena.visitors", "cast"),
    ("    cast_vote", "arena.services", "cast_vote"),
    ("      standing + daily caps", "arena.voters", "standing"),
    ("      pair count", "leaderboard.services", "count_vote"),
    ("  answer (battle_state)", "arena.api", "_battle_json"),
    ("  answer serialisation", "ninja.operation", "Operation._result_to_response"),
)


def print_segments(client: Any, paths: list[str], csrf: str, rng: random.Random) -> None:
    """Wall and CPU milliseconds per vote spent in each stage of SEGMENTS (this process's CPU)."""
    import importlib

    spent: dict[str, list[float]] = {label: [0.0, 0.0] for label, _, _ in SEGMENTS}
    undo: list[tuple[Any, str, Any]] = []
    for label, module_name, attribute in SEGMENTS:
        owner: Any = importlib.import_module(module_name)
        *path, name = attribute.split(".")
        for part in path:
            owner = getattr(owner, part)
        original = owner.__dict__[name]

        def timed(*a: Any, _f: Any = original, _label: str = label, **kw: Any) -> Any:
            wall, cpu = time.perf_counter(), time.process_time()
            try:
                return _f(*a, **kw)
            finally:
                spent[_label][0] += time.perf_counter() - wall
                spent[_label][1] += time.process_time() - cpu

        setattr(owner, name, timed)
        undo.append((owner, name, original))
    try:
        wall, cpu, _, statuses, _ = run(client, paths, csrf, rng)
    finally:
        for owner, name, original in reversed(undo):
            setattr(owner, name, original)
    n = len(paths)
    print(f"stages of one vote ({n} votes, statuses {statuses}), ms per vote:")
    print(f"  {'whole request':32s} wall {wall:6.2f}  CPU(process+backend) {cpu:6.2f}")
    for label, (stage_wall, stage_cpu) in spent.items():
        print(f"  {label:32s} wall {stage_wall * 1000 / n:6.2f}  CPU {stage_cpu * 1000 / n:6.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database", default="arena_vote_cpu_bench")
    parser.add_argument("--votes", type=int, default=300, help="requests per run")
    parser.add_argument("--rounds", type=int, default=3, help="vote/bare pairs")
    parser.add_argument("--profile", type=int, default=0, help="cProfile: top N functions")
    parser.add_argument(
        "--segments", action="store_true", help="time the vote's stages over one more vote run"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    source = os.environ.get("DATABASE_URL", "")
    if not source.startswith("postgres"):
        sys.exit("set DATABASE_URL to a PostgreSQL server (its database is not touched)")
    if not os.environ.get("REDIS_URL", "").startswith("redis://"):
        sys.exit("set REDIS_URL (the limits and caps count there, as deployed)")
    setup_django(scratch_database(source, args.database))

    from django.conf import settings
    from django.test import Client

    rng = random.Random(args.seed)
    client = Client(enforce_csrf_checks=True, HTTP_HOST="127.0.0.1")
    answer = client.get("/api/v1/session")
    assert answer.status_code == 200, answer.content
    csrf = str(answer.json()["csrf_token"])
    session = _Session(client.cookies[settings.SESSION_COOKIE_NAME].value)

    def vote_paths(n: int) -> list[str]:
        battles = make_battles(session, n, rng)  # type: ignore[arg-type] # its key only
        return [f"/api/v1/battles/{b}/vote" for b in battles]

    def bare_paths(n: int) -> list[str]:
        return [f"/bench/bare-vote/{uuid.uuid4()}" for _ in range(n)]

    print(
        f"{args.votes} requests per run, Django test client, DEBUG off, database "
        f"{args.database}, load {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        flush=True,
    )
    # Warm-up: imports, URL resolver, connections, prepared caches.
    run(client, vote_paths(20), csrf, rng)
    run(client, bare_paths(20), csrf, rng)
    results: dict[str, list[tuple[float, float, float]]] = {"vote": [], "bare": []}
    for _ in range(args.rounds):
        for label, make in (("vote", vote_paths), ("bare", bare_paths)):
            paths = make(args.votes)
            wall, cpu, queries, statuses, backend = run(client, paths, csrf, rng)
            results[label].append((wall, cpu, queries))
            print(
                f"  {label:4s} wall {wall:6.2f} ms  CPU {cpu:6.2f} ms "
                f"(PostgreSQL backend {backend:4.2f})  "
                f"{queries:4.1f} queries/request  statuses {statuses}  "
                f"load {os.getloadavg()[0]:.2f}",
                flush=True,
            )
    medians = {
        label: [statistics.median(r[i] for r in rows) for i in range(3)]
        for label, rows in results.items()
    }
    vote, bare = medians["vote"], medians["bare"]
    print(
        f"median vote: wall {vote[0]:.2f} ms, CPU {vote[1]:.2f} ms, {vote[2]:.1f} queries; "
        f"bare: wall {bare[0]:.2f} ms, CPU {bare[1]:.2f} ms, {bare[2]:.1f} queries; "
        f"a vote costs {vote[0] / bare[0]:.1f}x the bare insert's wall clock, "
        f"{vote[1] / bare[1]:.1f}x its CPU"
    )
    if args.segments:
        print_segments(client, vote_paths(args.votes), csrf, rng)
    if args.profile:
        paths = vote_paths(args.votes)
        profiler = cProfile.Profile(time.process_time)
        profiler.enable()
        run(client, paths, csrf, rng)
        profiler.disable()
        pstats.Stats(profiler).sort_stats(
            os.environ.get("BENCH_PROFILE_SORT", "cumulative")
        ).print_stats(args.profile)


if __name__ == "__main__":
    main()
