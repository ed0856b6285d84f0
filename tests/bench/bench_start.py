"""Start-up times as a new user meets them: cold start, warm start and the first battle.

    python3.11 tests/bench/bench_start.py [--runs 3] [--repo .] [--keep]

Each run clones the repository's committed HEAD into a fresh folder under /tmp, with a fresh
virtual environment, an empty uv cache and pip's cache off (the package caches of a new
machine), and the embedded defaults (SQLite, the file-system broker, no Redis). It runs
``python3.11 deploy/dev.py run`` there twice: cold (install, migrate, build the tiny models, ...)
and warm (the second run in the same clone). For each start it records, from the command's
launch:

- ``answers``: the first time ``GET /`` answers (polled every 0.1 s);
- ``printed``: the time the address is printed (the box, once the worker is warm);
- ``battle``: from the box to the first battle being ready, through the JSON API
  (``POST /api/v1/battles``, then ``GET /api/v1/battles/<id>`` every 0.1 s).

It prints each run, then the median and the range over the runs.
"""

from __future__ import annotations

import argparse
import http.cookiejar
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import altcha_client

BOX_MARK = "Image Arena is ready at"
TIMEOUT_S = 600.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 (loopback)
            return bool(response.status < 500)
    except urllib.error.HTTPError as error:
        return error.code < 500
    except OSError:
        return False


def first_battle(base: str) -> float:
    """Seconds from submitting a battle to its being ready, through the JSON API."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    with opener.open(f"{base}api/v1/session", timeout=10) as response:
        token = json.load(response)["csrf_token"]
    headers = {"Content-Type": "application/json", "X-CSRFToken": token, "Referer": base}
    started = time.monotonic()
    # A new session passes the proof-of-work check first, as the browser does (its time counts).
    body: dict[str, str] = {"prompt": "a red bicycle leaning on a wall"}
    with opener.open(f"{base}api/v1/challenge", timeout=10) as response:
        answer = altcha_client.solve(json.load(response))
    if answer is not None:
        body["altcha"] = answer
    request = urllib.request.Request(  # noqa: S310 (loopback)
        f"{base}api/v1/battles",
        data=json.dumps(body).encode(),
        headers=headers,
        method="POST",
    )
    with opener.open(request, timeout=30) as response:
        battle = json.load(response)
    while True:
        with opener.open(f"{base}api/v1/battles/{battle['id']}", timeout=30) as response:
            status = json.load(response)["status"]
        if status != "generating":
            if status != "ready":
                raise SystemExit(f"the first battle ended {status}")
            return time.monotonic() - started
        if time.monotonic() - started > 120:
            raise SystemExit("the first battle was not ready after 120 s")
        time.sleep(0.1)


def start(clone: Path, env: dict[str, str], label: str) -> dict[str, float]:
    port = int(env["ARENA_PORT"])
    base = f"http://127.0.0.1:{port}/"
    log = (clone / f"bench-{label}.log").open("w")
    launched = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "deploy/dev.py", "run"],
        cwd=clone,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    times: dict[str, float] = {}
    printed = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            log.write(line)
            log.flush()
            if BOX_MARK in line and "printed" not in times:
                times["printed"] = time.monotonic() - launched
                printed.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        while "answers" not in times:
            if answers(base):
                times["answers"] = time.monotonic() - launched
            elif process.poll() is not None:
                raise SystemExit(f"dev.py run exited early; see {log.name}")
            elif time.monotonic() - launched > TIMEOUT_S:
                raise SystemExit(f"no answer after {TIMEOUT_S:.0f} s; see {log.name}")
            else:
                time.sleep(0.1)
        if not printed.wait(TIMEOUT_S):
            raise SystemExit(f"the address was never printed; see {log.name}")
        times["battle"] = first_battle(base)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        reader.join(timeout=5)
        log.close()
    return times


def one_run(repo: Path, keep: bool) -> dict[str, dict[str, float]]:
    folder = Path(tempfile.mkdtemp(prefix="arena-start-"))
    clone = folder / "image-arena"
    subprocess.run(["git", "clone", "--quiet", str(repo), str(clone)], check=True)
    env = {
        key: value
        for key, value in os.environ.items()
        if key
        not in {"DATABASE_URL", "CELERY_BROKER_URL", "REDIS_URL", "ARENA_VENV", "VIRTUAL_ENV"}
        and not key.startswith("ARENA_")
    }
    env.update(
        ARENA_PORT=str(free_port()),
        UV_CACHE_DIR=str(folder / "uv-cache"),  # empty: a new machine's cache
        PIP_NO_CACHE_DIR="1",
    )
    try:
        return {"cold": start(clone, env, "cold"), "warm": start(clone, env, "warm")}
    finally:
        if keep:
            print(f"  kept {clone}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[2])
    parser.add_argument("--keep", action="store_true", help="keep the clones and their logs")
    args = parser.parse_args()
    print(f"{args.runs} runs from fresh clones of {args.repo} (HEAD); {os.cpu_count()} CPUs")
    results = []
    for index in range(args.runs):
        result = one_run(args.repo, args.keep)
        results.append(result)
        cells = "  ".join(
            f"{kind}: answers {t['answers']:.1f} s, printed {t['printed']:.1f} s, "
            f"first battle {t['battle']:.1f} s"
            for kind, t in result.items()
        )
        print(f"run {index + 1}: {cells}", flush=True)
    print("median [min, max] over the runs:")
    for kind in ("cold", "warm"):
        for measure in ("answers", "printed", "battle"):
            values = [r[kind][measure] for r in results]
            print(
                f"  {kind} {measure:8s} {statistics.median(values):6.1f} s "
                f"[{min(values):.1f}, {max(values):.1f}]"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
