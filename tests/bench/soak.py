"""Soak: the arena on its embedded defaults, played for a long while, must not fall over.

    .venv/bin/python tests/bench/soak.py [--minutes 30] [--flood-every 5] [--flood-seconds 10]

Starts ``deploy/dev.py run`` with the embedded defaults (SQLite and the file-system broker in a
fresh folder; DATABASE_URL, CELERY_BROKER_URL and REDIS_URL are dropped, rate limits off), waits
for the address, then for ``--minutes``:

- one visitor plays battles through the JSON API: create, poll until ready, vote;
- one visitor starts direct-chat turns (one or two images from a named model) every few seconds
  and waits for them;
- every ``--flood-every`` minutes, a flood: ``--flood-threads`` visitors create battles as fast
  as they can for ``--flood-seconds``, without voting.

Then it lets the queue drain (up to ``--drain`` seconds) and reports, from dev.py's output and
the database:

- crashes: processes that dev.py had to restart, and tracebacks in its output (target 0);
- lost jobs: jobs still queued or running after the drain, plus jobs that needed more than one
  delivery (a lost message the sweeper re-queued) (target 0);
- voided battles, with their reasons, and failed jobs.

Exit status 1 when a crash or a lost job was seen. ``tests/test_soak.py`` runs a short version.
"""

from __future__ import annotations

import argparse
import collections
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
from pathlib import Path
from typing import Any

import altcha_client

ROOT = Path(__file__).resolve().parents[2]
BOX_MARK = "Image Arena is ready at"
PROMPTS = [
    "a lighthouse at dusk",
    "portrait of a violinist",
    "a bowl of ramen, top view",
    "a fox in deep snow",
    "a robot watering plants",
    "an old map of an island",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Visitor:
    """One browser session talking to the JSON API."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )
        self.token = self.call("GET", "api/v1/session")["csrf_token"]
        self.last_refusal: str | None = None
        self.checked = False

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        headers = {"Content-Type": "application/json", "Referer": self.base}
        if method == "POST":
            headers["X-CSRFToken"] = self.token
        request = urllib.request.Request(  # noqa: S310 (loopback)
            f"{self.base}{path}",
            data=json.dumps(body).encode() if body is not None else None,
            headers=headers,
            method=method,
        )
        try:
            with self.opener.open(request, timeout=60) as response:
                result: dict[str, Any] = json.load(response)
                return result
        except urllib.error.HTTPError as error:
            return {"http_status": error.code, "detail": error.read(300).decode(errors="replace")}

    def create_battle(self) -> str | None:
        """The new battle's id, or None when refused (the refusal is kept in ``last_refusal``)."""
        body: dict[str, Any] = {"prompt": random.choice(PROMPTS)}  # noqa: S311
        if not self.checked:  # a new session passes the proof-of-work check, as a browser does
            answer = altcha_client.solve(self.call("GET", "api/v1/challenge"))
            if answer is not None:
                body["altcha"] = answer
        made = self.call("POST", "api/v1/battles", body)
        self.checked = self.checked or bool(made.get("id"))
        self.last_refusal = None if made.get("id") else str(made.get("http_status", "no id"))
        return made.get("id")

    def wait(self, battle_id: str, *, limit_s: float = 120.0) -> str:
        started = time.monotonic()
        while time.monotonic() - started < limit_s:
            status = str(self.call("GET", f"api/v1/battles/{battle_id}").get("status"))
            if status not in {"generating", "None"}:
                return status
            time.sleep(0.2)
        return "timeout"


class Tally:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: collections.Counter[str] = collections.Counter()
        self.errors: list[str] = []

    def add(self, key: str, n: int = 1) -> None:
        with self.lock:
            self.counts[key] += n

    def error(self, message: str) -> None:
        with self.lock:
            self.errors.append(message)


def play_battles(base: str, stop: threading.Event, tally: Tally) -> None:
    visitor = Visitor(base)
    while not stop.is_set():
        try:
            battle = visitor.create_battle()
            if battle is None:
                tally.add(f"battle refused {visitor.last_refusal}")
                time.sleep(1)
                continue
            tally.add("battles played")
            status = visitor.wait(battle)
            tally.add(f"battle {status}")
            if status == "ready":
                voted = visitor.call(
                    "POST",
                    f"api/v1/battles/{battle}/vote",
                    {"choice": random.choice(["left", "right", "tie", "both_bad"])},  # noqa: S311
                )
                tally.add("votes" if "models" in voted else "vote refused")
        except OSError as error:
            tally.error(f"battle: {error!r}")
            time.sleep(1)


def flood(base: str, seconds: float, threads: int, tally: Tally) -> None:
    deadline = time.monotonic() + seconds

    def one() -> None:
        visitor = Visitor(base)
        while time.monotonic() < deadline:
            try:
                made = visitor.create_battle()
                tally.add("flood battles" if made else f"flood refused {visitor.last_refusal}")
            except OSError as error:
                tally.error(f"flood: {error!r}")

    workers = [threading.Thread(target=one) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


def play_chat(stop: threading.Event, tally: Tally) -> None:
    """Direct-chat turns through the chat service, in this process (Django set up on the same
    database and broker as the arena)."""
    from django.db import close_old_connections

    from arena import chat_services as chat
    from arena.models import ChatImage
    from generation.models import Generation, ImageModel

    conversation = chat.conversation_for(owner="soak-chat")
    models = list(ImageModel.objects.enabled())
    while not stop.is_set():
        try:
            model = random.choice(models)  # noqa: S311
            settings = chat.check_settings(
                model=model,
                prompt=random.choice(PROMPTS),  # noqa: S311
                count=random.choice([1, 2]),  # noqa: S311
            )
            turn = chat.start_turn(conversation=conversation, settings=settings)
            tally.add("chat turns")
            jobs = Generation.objects.filter(
                pk__in=ChatImage.objects.filter(turn=turn).values("generation_id")
            )
            started = time.monotonic()
            while jobs.filter(status__in=["queued", "running"]).exists():
                if stop.is_set() or time.monotonic() - started > 120:
                    break
                time.sleep(0.3)
            tally.add("chat images done", jobs.filter(status="done").count())
        except Exception as error:  # noqa: BLE001 - a soak reports every failure and goes on
            tally.error(f"chat: {error!r}")
        finally:
            close_old_connections()
        stop.wait(3)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--flood-every", type=float, default=5.0, help="minutes between floods")
    parser.add_argument("--flood-seconds", type=float, default=10.0)
    parser.add_argument("--flood-threads", type=int, default=6)
    parser.add_argument("--drain", type=float, default=180.0, help="seconds to let jobs finish")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = parser.parse_args()

    var = Path(tempfile.mkdtemp(prefix="arena-soak-"))
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "CELERY_BROKER_URL", "REDIS_URL", "ARENA_READY_FILE"}
    }
    env.update(
        ARENA_VAR_DIR=str(var),
        ARENA_PORT=str(port),
        ARENA_LIMIT_SESSIONS="address=1000000/60",
        ARENA_LIMIT_BATTLES="address=1000000/60",
        ARENA_LIMIT_VOTES="address=1000000/60",
        ARENA_LIMIT_CHAT="address=1000000/60",
        # The tiny models are built once, in the repository's var/, and shared with the demo.
        ARENA_MODELS_DIR=env.get("ARENA_MODELS_DIR", str(ROOT / "var" / "models")),
    )
    os.environ.clear()
    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "arena.settings")
    log_path = var / "dev-run.log"
    log = log_path.open("w")
    arena = subprocess.Popen(
        [sys.executable, str(ROOT / "deploy" / "dev.py"), "run"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    ready = threading.Event()
    output: list[str] = []

    def read() -> None:
        assert arena.stdout is not None
        for line in arena.stdout:
            output.append(line)
            log.write(line)
            log.flush()
            if BOX_MARK in line:
                ready.set()

    threading.Thread(target=read, daemon=True).start()
    tally = Tally()
    try:
        if not ready.wait(600):
            print(f"the arena did not start; see {log_path}")
            return 1
        started_at = len(output)
        print(f"arena up at http://127.0.0.1:{port}/ (scratch {var}); soaking {args.minutes} min")
        sys.path.insert(0, str(ROOT))
        import django

        django.setup()
        base = f"http://127.0.0.1:{port}/"
        stop = threading.Event()
        players = [
            threading.Thread(target=play_battles, args=(base, stop, tally)),
            threading.Thread(target=play_chat, args=(stop, tally)),
        ]
        for player in players:
            player.start()
        end = time.monotonic() + args.minutes * 60
        next_flood = time.monotonic() + min(args.flood_every * 60, args.minutes * 30)
        while time.monotonic() < end and arena.poll() is None:
            if time.monotonic() >= next_flood:
                flood(base, args.flood_seconds, args.flood_threads, tally)
                next_flood += args.flood_every * 60
            time.sleep(1)
        stop.set()
        for player in players:
            player.join(timeout=180)
        report = drain_and_report(args.drain)
        lines = output[started_at:]
        restarts = [line.strip() for line in lines if "exited with code" in line]
        tracebacks = sum("Traceback" in line for line in lines)
        print("played:", dict(sorted(tally.counts.items())))
        print(f"client errors: {len(tally.errors)} {tally.errors[:5]}")
        print(f"crashes: {len(restarts)} restarts, {tracebacks} tracebacks in the output")
        for line in restarts:
            print(f"  {line}")
        print(
            f"lost jobs: {report['unfinished']} still queued or running after the drain, "
            f"{report['redelivered']} needed more than one delivery"
        )
        print(f"jobs: {report['jobs']}; failed: {report['failed']}")
        print(f"voided battles: {report['void']} of {report['battles']} {report['void_reasons']}")
        print(f"arena still running: {arena.poll() is None}")
        bad = restarts or tracebacks or report["unfinished"] or report["redelivered"]
        return 1 if bad or arena.poll() is not None or tally.errors else 0
    finally:
        arena.send_signal(signal.SIGINT)
        try:
            arena.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(arena.pid, signal.SIGKILL)
        log.close()
        if args.keep:
            print(f"kept {var}")
        else:
            shutil.rmtree(var, ignore_errors=True)


def drain_and_report(drain_s: float) -> dict[str, Any]:
    from django.db.models import Count

    from arena.models import Battle
    from generation.models import Generation

    deadline = time.monotonic() + drain_s
    pending = Generation.objects.filter(status__in=["queued", "running"])
    while pending.exists() and time.monotonic() < deadline:
        time.sleep(1)
    void = Battle.objects.filter(status=Battle.Status.VOID)
    return {
        "jobs": Generation.objects.count(),
        "unfinished": pending.count(),
        "redelivered": Generation.objects.filter(attempts__gt=1).count(),
        "failed": Generation.objects.filter(status="failed").count(),
        "battles": Battle.objects.count(),
        "void": void.count(),
        "void_reasons": dict(
            void.order_by()
            .values("void_reason")
            .annotate(n=Count("pk"))
            .values_list("void_reason", "n")
        ),
    }


if __name__ == "__main__":
    sys.exit(main())
