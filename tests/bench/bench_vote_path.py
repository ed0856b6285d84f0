"""Votes through the real endpoint against a bare insert behind the same middleware.

A script, not a test. It (re)creates a scratch PostgreSQL database (``--database``, on the server
``DATABASE_URL`` names; its name must contain "bench"), migrates it, and starts gunicorn as
deployed (deploy/gunicorn.conf.py, gthread) with ``--workers`` processes and the settings module
``tests.bench.vote_settings``, which is the project's settings plus one URL: a bare-insert view
(``tests/bench/vote_urls.py``) that parses the same JSON body and stores one row.

For each client count (``--clients``, default 8 then 16) it runs, side by side under the same
load, ``vote`` then ``bare``, ``--rounds`` times (``--seconds`` each, after a short warm-up):

- each client starts a session as a browser does (``GET /api/v1/session``: session cookie and
  CSRF token); the script then makes that session's battles directly through the ORM, both
  generations done and ready a minute ago, so every vote counts (no ALTCHA: the vote endpoint
  does not ask for one; the proof of work guards creating a battle);
- ``vote``: each client POSTs ``{"choice": ...}`` to ``/api/v1/battles/<id>/vote`` with the CSRF
  header and cookies, one battle after another, new connection per request;
- ``bare``: the same requests to ``/bench/bare-vote/<id>``.

Request limits and daily caps are raised so nothing is refused (they still run). During every
run a thread samples ``pg_stat_activity`` every 20 ms (so both paths pay for it) and, for the
``vote`` runs, prints what the busy backends waited on (lock waits name their relation), to show
where votes queue. ``--threads`` sets gunicorn's threads per process (default: the config's).
It prints votes per second, p50 and p99 latency in ms for each run, the ratio of vote to bare
throughput, the status codes, and the load average. Run from the repository root:

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/arena REDIS_URL=redis://127.0.0.1:6379/6 \\
        CELERY_BROKER_URL=redis://127.0.0.1:6379/7 \\
        .venv/bin/python tests/bench/bench_vote_path.py --database arena_vote_bench
"""

from __future__ import annotations

import argparse
import collections
import http.client
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
import uuid
from datetime import timedelta
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

SETTINGS = "tests.bench.vote_settings"
HUGE = "1000000000"
# Nothing is refused, but every limit and cap is still counted, as in production.
SERVER_ENV = {
    "DJANGO_SETTINGS_MODULE": SETTINGS,
    "DEBUG": "0",
    "SECRET_KEY": "bench-vote-path-not-secret",
    "ALLOWED_HOSTS": "127.0.0.1",
    "ARENA_LIMIT_SESSIONS": f"address={HUGE}/60",
    "ARENA_LIMIT_VOTES": f"session={HUGE}/60,address={HUGE}/60,account={HUGE}/60",
    "ARENA_DAILY_CAP_VOTER": HUGE,
    "ARENA_DAILY_CAP_ADDRESS": HUGE,
    "ARENA_DAILY_CAP_ACCOUNT": HUGE,
    "ARENA_BATTLE_DEADLINE_S": "86400",
}
MODEL_KEYS = [f"bench-{i}" for i in range(6)]
CHOICES = ["left", "right", "tie", "both_bad"]


def scratch_database(url: str, name: str) -> str:
    """Drop and create ``name`` on the server of ``url``; returns its URL."""
    if "bench" not in name:
        sys.exit("--database must contain 'bench' (it is dropped and created)")
    parts = urlsplit(url)
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')
    return urlunsplit(parts._replace(path=f"/{name}"))


def setup_django(database_url: str) -> None:
    os.environ.update(SERVER_ENV)
    os.environ["DATABASE_URL"] = database_url
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from tests.bench.vote_urls import BARE_TABLE

    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TABLE {BARE_TABLE} (id bigserial PRIMARY KEY, battle uuid NOT NULL,"
            " session varchar(64) NOT NULL, choice varchar(10) NOT NULL,"
            " created_at timestamptz NOT NULL DEFAULT now())"
        )
    from generation.models import ImageModel

    for key in MODEL_KEYS:
        ImageModel.objects.update_or_create(
            key=key, version="1", defaults={"display_name": key, "source": "none", "enabled": True}
        )


class Session:
    """One browser: its cookies and CSRF token."""

    def __init__(self, host: str, port: int) -> None:
        connection = http.client.HTTPConnection(host, port, timeout=30)
        connection.request("GET", "/api/v1/session", headers={"Host": "127.0.0.1"})
        response = connection.getresponse()
        body = json.loads(response.read())
        connection.close()
        jar: SimpleCookie = SimpleCookie()
        for header in response.headers.get_all("Set-Cookie") or []:
            jar.load(header)
        self.cookies = {name: morsel.value for name, morsel in jar.items()}
        self.csrf_token = str(body["csrf_token"])
        from django.conf import settings

        self.session_key = self.cookies[settings.SESSION_COOKIE_NAME]

    def headers(self) -> dict[str, str]:
        return {
            "Host": "127.0.0.1",
            "Content-Type": "application/json",
            "X-CSRFToken": self.csrf_token,
            "Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items()),
        }


def make_battles(session: Session, count: int, rng: random.Random) -> list[str]:
    """``count`` battles of this session, both images done, ready a minute ago."""
    from django.utils import timezone

    from arena import services
    from arena.categories import OTHER
    from arena.models import Battle
    from generation.models import Generation, ImageModel

    models = list(ImageModel.objects.filter(key__in=MODEL_KEYS))
    owner = services.identity_hash(session.session_key)
    ready_at = timezone.now() - timedelta(minutes=1)
    pairs = [rng.sample(models, 2) for _ in range(count)]
    generations = Generation.objects.bulk_create(
        Generation(
            model=model,
            prompt="a lighthouse in fog",
            seed=i,
            steps=2,
            guidance=5.0,
            width=64,
            height=64,
            output_width=64,
            output_height=64,
            status=Generation.Status.DONE,
            steps_done=2,
            image=f"images/bench-{rng.getrandbits(64):016x}.png",
            image_sha256="0" * 64,
            model_version="1",
        )
        for i, pair in enumerate(pairs)
        for model in pair
    )
    battles = Battle.objects.bulk_create(
        Battle(
            prompt_text="a lighthouse in fog",
            category=OTHER,
            model_left=left,
            model_right=right,
            generation_left=generations[2 * i],
            generation_right=generations[2 * i + 1],
            seed=i,
            status=Battle.Status.READY,
            owner=owner,
            ready_at=ready_at,
        )
        for i, (left, right) in enumerate(pairs)
    )
    return [str(battle.public_id) for battle in battles]


class WaitSampler(threading.Thread):
    """Tallies what the database's active backends wait on, every 20 ms."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.stop = threading.Event()
        self.samples = 0
        self.waits: collections.Counter[str] = collections.Counter()

    def run(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as connection:
            while not self.stop.is_set():
                rows = connection.execute(
                    "SELECT a.wait_event_type, a.wait_event, l.relation::regclass::text,"
                    " left(regexp_replace(a.query, '\\s+', ' ', 'g'), 70)"
                    " FROM pg_stat_activity a LEFT JOIN pg_locks l"
                    " ON l.pid = a.pid AND NOT l.granted"
                    " WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()"
                    " AND a.state = 'active'"
                ).fetchall()
                self.samples += 1
                for kind, event, relation, query in rows:
                    if kind is None:
                        self.waits["running (CPU)"] += 1
                    elif kind == "Lock":
                        self.waits[f"Lock {event} on {relation or '?'}: {query}"] += 1
                    else:
                        self.waits[f"{kind} {event}"] += 1
                time.sleep(0.02)


def load(
    base: str,
    clients: list[tuple[Session, list[str]]],
    path: str,
    seconds: float,
    rng: random.Random,
) -> tuple[float, list[float], dict[int, int]]:
    """Each client votes on its battles one after another for ``seconds``; returns (elapsed,
    latencies, status counts)."""
    host, port = urlsplit(base).hostname or "", urlsplit(base).port or 80
    latencies: list[float] = []
    statuses: collections.Counter[int] = collections.Counter()
    lock = threading.Lock()
    choices = [rng.choice(CHOICES) for _ in range(64)]
    start = time.monotonic()
    stop_at = start + seconds

    def client(session: Session, battles: list[str]) -> None:
        seen: list[float] = []
        counts: collections.Counter[int] = collections.Counter()
        headers = session.headers()
        while battles and time.monotonic() < stop_at:
            battle = battles.pop()
            body = json.dumps({"choice": choices[len(battles) % len(choices)]})
            started = time.perf_counter()
            connection = http.client.HTTPConnection(host, port, timeout=30)
            connection.request("POST", path.format(battle), body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            connection.close()
            seen.append(time.perf_counter() - started)
            counts[response.status] += 1
        with lock:
            latencies.extend(seen)
            statuses.update(counts)

    threads = [threading.Thread(target=client, args=pair) for pair in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.monotonic() - start, latencies, dict(statuses)


def summary(label: str, elapsed: float, latencies: list[float], statuses: dict[int, int]) -> float:
    rate = len(latencies) / elapsed
    cuts = statistics.quantiles(latencies, n=100)
    print(
        f"  {label:5s} {rate:7.1f} req/s  p50 {cuts[49] * 1000:6.1f} ms  "
        f"p99 {cuts[98] * 1000:6.1f} ms  n={len(latencies)}  "
        f"statuses {dict(sorted(statuses.items()))}"
        f"  load {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    return rate


def fake(args: argparse.Namespace) -> list[str]:
    """Battle ids for the bare insert, which looks nothing up."""
    return [str(uuid.uuid4()) for _ in range(20 * args.battles)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database", default="arena_vote_bench")
    parser.add_argument("--clients", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=1.5)
    parser.add_argument("--rounds", type=int, default=2, help="vote/bare pairs per client count")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn processes")
    parser.add_argument(
        "--threads", type=int, default=0, help="threads per process (default: the config's)"
    )
    parser.add_argument("--battles", type=int, default=400, help="battles per client per vote run")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    source = os.environ.get("DATABASE_URL", "")
    if not source.startswith("postgres"):
        sys.exit("set DATABASE_URL to a PostgreSQL server (its database is not touched)")
    if not os.environ.get("REDIS_URL", "").startswith("redis://"):
        sys.exit("set REDIS_URL (the limits and caps count there, as deployed)")
    database_url = scratch_database(source, args.database)
    setup_django(database_url)

    from tests.local_servers import gunicorn

    rng = random.Random(args.seed)
    env = {**SERVER_ENV, "DATABASE_URL": database_url}
    print(
        f"gunicorn --workers {args.workers} --threads {args.threads or 'as configured'} "
        f"(gthread, deploy/gunicorn.conf.py), DEBUG off, "
        f"database {args.database}, {args.seconds:.0f} s per run, {os.cpu_count()} CPUs, "
        f"load {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        flush=True,
    )
    with (
        tempfile.TemporaryDirectory() as folder,
        gunicorn(
            Path(folder),
            {**env, "PROMETHEUS_MULTIPROC_DIR": str(Path(folder) / "prom")},
            workers=args.workers,
            extra=("--threads", str(args.threads)) if args.threads else (),
        ) as base,
    ):
        host, port = urlsplit(base).hostname or "", urlsplit(base).port or 80
        for count in args.clients:
            sessions = [Session(host, port) for _ in range(count)]
            rates: dict[str, list[float]] = {"vote": [], "bare": []}
            p99s: dict[str, list[float]] = {"vote": [], "bare": []}
            waits: collections.Counter[str] = collections.Counter()
            samples = 0
            print(f"{count} clients:", flush=True)
            for _ in range(args.rounds):
                for label, path in (
                    ("vote", "/api/v1/battles/{}/vote"),
                    ("bare", "/bench/bare-vote/{}"),
                ):
                    clients = [
                        (s, make_battles(s, args.battles, rng) if label == "vote" else fake(args))
                        for s in sessions
                    ]
                    load(base, clients, path, args.warmup, rng)
                    # Sampled in both runs, so both pay for the sampler; reported for votes.
                    sampler = WaitSampler(database_url)
                    sampler.start()
                    elapsed, latencies, statuses = load(base, clients, path, args.seconds, rng)
                    sampler.stop.set()
                    sampler.join()
                    if label == "vote":
                        waits.update(sampler.waits)
                        samples += sampler.samples
                    if any(not battles for _, battles in clients):
                        print("  (a client ran out of battles: raise --battles)")
                    rates[label].append(summary(label, elapsed, latencies, statuses))
                    p99s[label].append(statistics.quantiles(latencies, n=100)[98] * 1000)
            vote, bare = statistics.median(rates["vote"]), statistics.median(rates["bare"])
            print(
                f"  median vote {vote:.1f}/s, bare {bare:.1f}/s: votes at {vote / bare:.0%} of "
                f"the bare insert; vote p99 median {statistics.median(p99s['vote']):.1f} ms, "
                f"bare {statistics.median(p99s['bare']):.1f} ms"
            )
            print(f"  during vote runs, active backends per sample ({samples} samples):")
            for what, n in waits.most_common(8):
                print(f"    {n / max(samples, 1):5.2f}  {what}")
    report_votes()


def report_votes() -> None:
    from arena.models import Vote

    standings = collections.Counter(Vote.objects.values_list("standing", flat=True))
    named = {Vote.Standing(value).label: n for value, n in standings.items()}
    print(f"votes stored, by standing: {named}")


if __name__ == "__main__":
    main()
