"""Fault table: each fault under load, with real servers, then the ledger reconciled.

Starts its OWN PostgreSQL (initdb in a temporary folder, run as the ``postgres`` user when
started as root) and its OWN Redis, both on free ports (the shared servers are never touched),
then gunicorn, one Celery GPU-style worker (prefork, two children, the tiny models warm) and
beat, all as deploy/README.md runs them. Client threads play whole battles through the JSON API
(create, poll, vote) the whole time. One after another it injects:

- kill one child: SIGKILL to one pool child of the worker;
- kill the worker: SIGKILL to the worker's process group, then start it again (as systemd does),
  under its node name, or with ``--worker-name new`` under a new one (a replacement host);
- stop Redis 20 s: SIGTERM to Redis (no persistence: every waiting message is lost), 20 s later
  start it again;
- restart PostgreSQL: ``pg_ctl restart -m fast``;
- kill beat: SIGKILL to beat, then start it again.

For each fault it prints client answers by status, votes acknowledged against votes stored,
duplicates (votes counted twice in the pair counts, or two votes on one battle), battles stuck
(neither ready nor void BATTLE_GIVE_UP_S after creation) and the recovery time: from the
service's return until a battle that a probe client creates after it becomes ready, and until
/readyz answers 200 again. The service's return is the instant the restarted process is
spawned (worker and beat: 1 s after the kill, so a worker's whole start counts), the instant
Redis or PostgreSQL accepts connections again, and the kill itself for a child. Targets: 0
lost, 0 duplicates, no 5xx but the documented 503, recovery within 30 s.

    .venv/bin/python tests/bench/bench_faults.py [--clients 3] [--phase-s 40] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import http.cookiejar
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import altcha_client

ROOT = Path(__file__).resolve().parents[2]
PYTHON = Path(sys.executable)
BIN = PYTHON.parent
PG_BIN = Path("/usr/lib/postgresql/15/bin")
QUEUE = "bench"
MODELS = ("tiny-baseline-a", "tiny-baseline-b")
BATTLE_GIVE_UP_S = 90.0
POLL_S = 0.3
RECOVERY_LIMIT_S = 120.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- Servers of our own ---------------------------------------------------------------------


class Postgres:
    def __init__(self, folder: Path) -> None:
        self.folder = folder / "pg"
        self.port = free_port()
        self.as_postgres = os.geteuid() == 0

    def _run(self, *args: str) -> None:
        command = [*args]
        if self.as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def init(self) -> None:
        self.folder.mkdir(parents=True)
        if self.as_postgres:
            shutil.chown(self.folder, "postgres", "postgres")
            shutil.chown(self.folder.parent, "postgres", "postgres")
        self._run(
            str(PG_BIN / "initdb"),
            "-D",
            str(self.folder / "data"),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
        )
        self.start()
        self._run(
            str(PG_BIN / "createdb"),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "arena",
        )

    def _ctl(self, *args: str) -> None:
        options = (
            f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c max_connections=200"
        )
        self._run(
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(self.folder / "data"),
            "-o",
            options,
            "-l",
            str(self.folder / "log"),
            "-w",
            *args,
        )

    def start(self) -> None:
        self._ctl("start")

    def restart(self) -> None:
        self._ctl("restart", "-m", "fast")

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._ctl("stop", "-m", "immediate")

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/arena"


class Redis:
    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.folder = folder
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.folder),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2),
            ):
                return
            time.sleep(0.05)
        raise RuntimeError("redis did not start")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


class Proc:
    """A process of the arena, in its own process group, logging to a file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], logs: Path) -> None:
        self.name, self.args, self.env, self.logs = name, args, env, logs
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = (self.logs / f"{self.name}.log").open("ab")
        self.process = subprocess.Popen(
            self.args,
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()


# --- Load ------------------------------------------------------------------------------------


@dataclass
class Ledger:
    """What the clients were told, with timestamps."""

    answers: list[tuple[float, str, int]] = field(default_factory=list)  # (t, what, status)
    created: dict[str, float] = field(default_factory=dict)  # battle id -> created at
    ready: dict[str, float] = field(default_factory=dict)  # battle id -> first seen ready
    finished: set[str] = field(default_factory=set)  # ready or void
    given_up: set[str] = field(default_factory=set)
    voted: dict[str, float] = field(default_factory=dict)  # acknowledged votes
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, what: str, status: int) -> None:
        with self.lock:
            self.answers.append((time.time(), what, status))


class Client:
    def __init__(self, base: str) -> None:
        self.base = base
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )
        self.token = ""
        self.checked = False  # this session passed the proof-of-work check

    def new_battle(self, prompt: str) -> tuple[int, Any]:
        """POST a battle; a new session first solves the proof-of-work check, as a browser
        does (``GET /api/v1/challenge``, the answer sent as ``altcha``)."""
        body: dict[str, Any] = {"prompt": prompt}
        if not self.checked:
            status, challenge = self.call("GET", "/api/v1/challenge")
            if status != 200:
                return status, challenge
            answer = altcha_client.solve(challenge)
            if answer is not None:
                body["altcha"] = answer
        status, made = self.call("POST", "/api/v1/battles", body)
        self.checked = self.checked or status == 201
        return status, made

    def call(self, method: str, path: str, data: Any = None) -> tuple[int, Any]:
        body = json.dumps(data).encode() if data is not None else None
        headers = {
            "Content-Type": "application/json",
            "X-CSRFToken": self.token,
            "Referer": self.base + "/",
        }
        request = urllib.request.Request(  # noqa: S310 - the bench's own http:// server
            self.base + path, data=body, method=method, headers=headers
        )
        try:
            with self.opener.open(request, timeout=15) as response:
                raw, status = response.read(), response.status
        except urllib.error.HTTPError as error:
            raw, status = error.read(), error.code
        except (urllib.error.URLError, OSError):
            return 0, None  # no answer at all (connection refused or reset)
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, None


def play(base: str, ledger: Ledger, stop: threading.Event, seed: int) -> None:
    rng = random.Random(seed)
    client = Client(base)
    while not stop.is_set():
        if not client.token:
            status, body = client.call("GET", "/api/v1/session")
            ledger.answer("session", status)
            if status != 200:
                time.sleep(0.5)
                continue
            client.token = body["csrf_token"]
        status, body = client.new_battle(f"a fox {rng.random()}")
        ledger.answer("create", status)
        if status != 201:
            time.sleep(0.5)
            continue
        battle, created = body["id"], time.time()
        with ledger.lock:
            ledger.created[battle] = created
        state = body["status"]
        while state == "generating" and time.time() - created < BATTLE_GIVE_UP_S:
            if stop.is_set():
                return
            time.sleep(POLL_S)
            status, body = client.call("GET", f"/api/v1/battles/{battle}")
            ledger.answer("poll", status)
            if status == 200:
                state = body["status"]
        if state == "generating":
            with ledger.lock:
                ledger.given_up.add(battle)
            continue
        with ledger.lock:
            ledger.finished.add(battle)
            if state == "ready":
                ledger.ready[battle] = time.time()
        if state != "ready":
            continue
        for _ in range(20):  # a vote answered 503 is tried again, as a browser would
            status, body = client.call(
                "POST",
                f"/api/v1/battles/{battle}/vote",
                {"choice": rng.choice(["left", "right", "tie"])},
            )
            ledger.answer("vote", status)
            if status == 200:
                with ledger.lock:
                    ledger.voted[battle] = time.time()
                break
            if status in (400, 409):
                break
            time.sleep(0.5)


# --- The bench -------------------------------------------------------------------------------


def manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [str(PYTHON), "manage.py", *args],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return done.stdout


def db_query(env: dict[str, str], code: str) -> Any:
    out = manage(env, "shell", "-c", code)
    return json.loads(out.strip().splitlines()[-1])


RECONCILE = """
import json
from django.db.models import Count, F, Sum
from arena.models import Battle, Vote
ids = json.loads(open(%r).read())
votes = Vote.objects.filter(battle__public_id__in=ids)
per_battle = votes.values("battle").annotate(n=Count("pk")).filter(n__gt=1).count()
# Only counted votes reach the pair counts (a vote the voter checks exclude is kept, uncounted).
total_votes = Vote.objects.filter(excluded=False).count()
try:
    from leaderboard.models import PairCount
    counted = PairCount.objects.aggregate(
        n=Sum(F("wins_a") + F("wins_b") + F("ties") + F("both_bad")))["n"] or 0
except Exception:
    counted = None
generating = Battle.objects.filter(status="generating").values_list("public_id", flat=True)
print(json.dumps({"stored": votes.count(), "two_on_one": per_battle, "votes": total_votes,
                  "counted": counted, "generating": [str(x) for x in generating]}))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=3)
    parser.add_argument("--phase-s", type=float, default=40.0, help="load after each fault")
    parser.add_argument("--faults", default="child,worker,redis,postgres,beat")
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--timeout-s",
        type=int,
        default=60,
        help="the models' time limit; keep it above the Redis outage (20 s): Celery fires the "
        "soft limits of jobs that finished while its event loop was reconnecting",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument(
        "--worker-name",
        choices=("same", "new"),
        default="same",
        help="the killed worker comes back under its node name (systemd) or a new one",
    )
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="arena-faults-"))
    logs = folder / "logs"
    logs.mkdir()
    say(f"working in {folder}")
    pg, redis = Postgres(folder), Redis(folder)
    processes: list[Proc] = []
    try:
        pg.init()
        redis.start()
        web_port = free_port()
        ready_file = folder / "worker.ready"
        env = {
            **os.environ,
            "DATABASE_URL": pg.url,
            "CELERY_BROKER_URL": f"redis://127.0.0.1:{redis.port}/0",
            "REDIS_URL": f"redis://127.0.0.1:{redis.port}/1",
            "ARENA_VAR_DIR": str(folder / "var"),
            "MEDIA_ROOT": str(folder / "media"),
            "ARENA_MODELS_DIR": str(ROOT / "var" / "test-models"),
            # DEBUG=0 would mark the cookies Secure, which a client on plain http never sends
            # back; errors still answer with their real status.
            "DEBUG": "1",
            "SECRET_KEY": "bench-only-secret-key-bench-only-secret-key",
            "ALLOWED_HOSTS": "127.0.0.1",
            # Short cycles, so a fault's recovery is measured in seconds.
            "ARENA_SWEEP_S": "5",
            "ARENA_LOST_MESSAGE_S": "5",
            "ARENA_CLAIM_GRACE_S": "5",
            "ARENA_WORKER_HEARTBEAT_S": "1",
            "ARENA_MAX_EXPECTED_WAIT_S": "0",
            # Far above the load (an empty value means the default here, not "off").
            "ARENA_LIMIT_SESSIONS": "address=1000000/60",
            "ARENA_LIMIT_BATTLES": "address=1000000/60",
            "ARENA_LIMIT_VOTES": "address=1000000/60",
            "ARENA_LIMIT_CHAT": "address=1000000/60",
            "LEADERBOARD_REFRESH_S": "3600",
            "HF_HUB_OFFLINE": "1",
            "OMP_NUM_THREADS": "1",
            "PYTHONUNBUFFERED": "1",
            "LOG_LEVEL": "INFO",
        }
        env.pop("ARENA_VOTER_SALT", None)
        say("migrating and registering the tiny models")
        manage(env, "migrate", "--verbosity", "0")
        manage(env, "build_tiny_models")
        manage(env, "sync_models")
        db_query(
            env,
            (
                "from generation.models import ImageModel;"
                f"ImageModel.objects.exclude(key__in={list(MODELS)!r}).update(enabled=False);"
                f"ImageModel.objects.update(queue={QUEUE!r}, timeout_s={args.timeout_s});print(1)"
            ),
        )
        web = Proc(
            "web",
            [
                str(BIN / "gunicorn"),
                "arena.wsgi:application",
                "--bind",
                f"127.0.0.1:{web_port}",
                "--workers",
                "2",
                "--threads",
                "4",
                "--timeout",
                "60",
            ],
            env,
            logs,
        )
        worker_env = {
            **env,
            "ARENA_WARM_MODELS": ",".join(MODELS),
            "ARENA_READY_FILE": str(ready_file),
        }
        worker = Proc(
            "worker",
            [
                str(BIN / "celery"),
                "-A",
                "arena",
                "worker",
                "--pool",
                "prefork",
                "--concurrency",
                "2",
                "--prefetch-multiplier",
                "1",
                "--queues",
                f"{QUEUE},default",
                "--hostname",
                "bench@%h",
                "--without-mingle",
                "--without-gossip",
                "--loglevel",
                "INFO",
            ],
            worker_env,
            logs,
        )
        beat = Proc(
            "beat",
            [
                str(BIN / "celery"),
                "-A",
                "arena",
                "beat",
                "--loglevel",
                "INFO",
                "--schedule",
                str(folder / "beat-schedule"),
            ],
            env,
            logs,
        )
        processes += [web, worker, beat]
        for p in processes:
            p.start()
        base = f"http://127.0.0.1:{web_port}"
        say("waiting for /readyz")
        wait_ready(base, 240)

        ledger = Ledger()
        stop = threading.Event()
        clients = [
            threading.Thread(target=play, args=(base, ledger, stop, i), daemon=True)
            for i in range(args.clients)
        ]
        for c in clients:
            c.start()
        time.sleep(10)
        rows = []
        for fault in args.faults.split(","):
            rows.append(
                run_fault(
                    fault,
                    ledger,
                    base,
                    pg,
                    redis,
                    worker,
                    beat,
                    args.phase_s,
                    new_name=args.worker_name == "new",
                )
            )
        stop.set()
        for c in clients:
            c.join(timeout=BATTLE_GIVE_UP_S + 30)
        ids_file = folder / "acked.json"
        ids_file.write_text(json.dumps(list(ledger.voted)))
        final = db_query(env, RECONCILE % str(ids_file))
        print_table(rows, ledger, final)
        if args.json:
            args.json.write_text(
                json.dumps(
                    {"rows": rows, "final": {k: v for k, v in final.items() if k != "generating"}},
                    indent=2,
                )
            )
        return 0
    finally:
        for p in reversed(processes):
            p.stop()
        redis.stop()
        pg.stop()
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
        else:
            say(f"kept {folder}")


def wait_ready(base: str, timeout: float) -> float:
    started = time.monotonic()
    client = Client(base)
    while time.monotonic() - started < timeout:
        status, _ = client.call("GET", "/readyz")
        if status == 200:
            return time.monotonic() - started
        time.sleep(0.5)
    raise RuntimeError(f"not ready within {timeout} s")


def worker_children(worker: Proc) -> list[int]:
    assert worker.process is not None
    out = subprocess.run(["pgrep", "-P", str(worker.process.pid)], capture_output=True, text=True)
    return [int(pid) for pid in out.stdout.split()]


def run_fault(
    fault: str,
    ledger: Ledger,
    base: str,
    pg: Postgres,
    redis: Redis,
    worker: Proc,
    beat: Proc,
    phase_s: float,
    *,
    new_name: bool = False,
) -> dict[str, Any]:
    say(f"fault: {fault}")
    began = time.time()
    if fault == "child":
        children = worker_children(worker)
        os.kill(children[0], signal.SIGKILL)
        back = time.time()
    elif fault == "worker":
        worker.kill()
        time.sleep(1)
        if new_name:  # the dead node's reservations come back only once it is seen dead
            worker.args[worker.args.index("--hostname") + 1] = f"bench-{int(began)}@%h"
        worker.start()
        back = time.time()
    elif fault == "redis":
        redis.stop()
        time.sleep(20)
        redis.start()
        back = time.time()
    elif fault == "postgres":
        pg.restart()
        back = time.time()
    elif fault == "beat":
        beat.kill()
        time.sleep(1)
        beat.start()
        back = time.time()
    else:
        raise ValueError(f"unknown fault {fault}")
    # Load goes on. A probe client starts a fresh battle every second from the service's
    # return until one becomes ready: that is the recovery time.
    ready_after: list[float] = []
    probed = threading.Event()
    watcher = threading.Thread(
        target=watch_readyz, args=(base, back, ready_after, probed), daemon=True
    )
    watcher.start()
    recovery = probe_recovery(base, ledger, back)
    time.sleep(2)  # a last look at /readyz once a battle went through
    probed.set()
    watcher.join(timeout=10)
    time.sleep(phase_s)
    ended = time.time()
    with ledger.lock:
        answers = [(what, status) for t, what, status in ledger.answers if began <= t < ended]
        created = [b for b, t in ledger.created.items() if began <= t < ended]
        stuck = [b for b in created if b in ledger.given_up]
    statuses = Counter(status for _, status in answers)
    row = {
        "fault": fault,
        "requests": len(answers),
        "2xx": sum(n for s, n in statuses.items() if 200 <= s < 300),
        "4xx": sum(n for s, n in statuses.items() if 400 <= s < 500),
        "503": statuses.get(503, 0),
        "other 5xx": sum(n for s, n in statuses.items() if s >= 500 and s != 503),
        "no answer": statuses.get(0, 0),
        "battles": len(created),
        "stuck": len(stuck),
        "recovery_s": round(recovery, 1) if recovery is not None else None,
        "readyz_s": round(ready_after[0], 1) if ready_after else None,
        "statuses": dict(sorted(statuses.items())),
    }
    say(json.dumps(row))
    return row


def probe_recovery(base: str, ledger: Ledger, back: float) -> float | None:
    """Seconds from ``back`` until a battle created after it is ready (None: not within
    RECOVERY_LIMIT_S). Its answers count in the ledger like any client's."""
    client = Client(base)
    while time.time() - back < RECOVERY_LIMIT_S:
        if not client.token:
            status, body = client.call("GET", "/api/v1/session")
            ledger.answer("session", status)
            if status == 200:
                client.token = body["csrf_token"]
            else:
                time.sleep(1)
            continue
        status, body = client.new_battle("a probe")
        ledger.answer("create", status)
        if status != 201:
            time.sleep(1)
            continue
        battle, state, started = body["id"], body["status"], time.time()
        while state == "generating" and time.time() - started < 30:
            time.sleep(0.2)
            status, body = client.call("GET", f"/api/v1/battles/{battle}")
            ledger.answer("poll", status)
            state = body["status"] if status == 200 else state
        if state == "ready":
            return time.time() - back
        time.sleep(1)
    return None


def watch_readyz(base: str, back: float, found: list[float], done: threading.Event) -> None:
    """Append the seconds from ``back`` until /readyz answered 200 for good: the first 200
    after its last other answer, watched until the probe is done (0 if it never failed)."""
    client = Client(base)
    good_since: float | None = None
    while not done.is_set() and time.time() - back < RECOVERY_LIMIT_S:
        ok = client.call("GET", "/readyz")[0] == 200
        if ok and good_since is None:
            good_since = time.time()
        elif not ok:
            good_since = None
        time.sleep(0.25)
    if good_since is not None:
        found.append(max(good_since - back, 0.0))


def print_table(rows: list[dict[str, Any]], ledger: Ledger, final: dict[str, Any]) -> None:
    acked = len(ledger.voted)
    stored = final["stored"]
    duplicates = final["two_on_one"] + (
        (final["counted"] - final["votes"]) if final["counted"] is not None else 0
    )
    print()
    header = (
        "fault",
        "requests",
        "2xx",
        "4xx",
        "503",
        "other 5xx",
        "no answer",
        "battles",
        "stuck",
        "recovery_s",
    )
    print(" | ".join(f"{h:>10}" for h in header))
    for row in rows:
        print(" | ".join(f"{row[h]!s:>10}" for h in header))
    print()
    print(
        f"votes acknowledged {acked}, stored {stored}, lost {acked - stored}, "
        f"duplicates {duplicates} (two votes on one battle: {final['two_on_one']}; "
        f"pair counts {final['counted']} for {final['votes']} counted votes)"
    )
    print(f"battles still generating in the database at the end: {len(final['generating'])}")


if __name__ == "__main__":
    raise SystemExit(main())
