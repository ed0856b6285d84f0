#!/usr/bin/env python3
"""Run Image Arena locally, or its tests, on a machine that has only Python 3.11.

    python3.11 deploy/dev.py run     # set up if needed, then web server + Celery worker
    python3.11 deploy/dev.py test    # set up if needed, then the whole test suite

Standard library only: it creates ``.venv`` beside the project, installs the dependencies
listed in pyproject.toml (again only when that file changes), migrates, builds the tiny offline
models, registers them and the prompt pool, and starts the processes. Ctrl-C stops them all.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(os.environ.get("ARENA_VENV", ROOT / ".venv"))
PYTHON = VENV / "bin" / "python"
# The CPU build that these machines carry; GPU hosts set ARENA_TORCH to their CUDA build.
TORCH = os.environ.get("ARENA_TORCH", "torch==2.13.0")
STAMP = VENV / ".arena-installed"


def say(message: str) -> None:
    print(f"[arena] {message}", flush=True)


def sh(*args: str | Path, env: dict[str, str] | None = None) -> None:
    subprocess.run([str(a) for a in args], cwd=ROOT, env=env, check=True)


def base_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("PYTHONUNBUFFERED", "1")
    env["PATH"] = f"{VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


def ensure_venv(*, dev: bool) -> None:
    """Create the virtual environment and install what pyproject.toml lists, once per change."""
    if sys.version_info[:2] != (3, 11):
        say(f"warning: Image Arena targets Python 3.11; this is {sys.version.split()[0]}")
    if not PYTHON.exists():
        say(f"creating virtual environment in {VENV}")
        sh(sys.executable, "-m", "venv", VENV)
        sh(PYTHON, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    requirements = list(project["dependencies"])
    if dev:
        requirements += project["optional-dependencies"]["dev"]
    digest = hashlib.sha256("\n".join([TORCH, *requirements]).encode()).hexdigest()
    if STAMP.exists() and digest in STAMP.read_text().split():
        return
    say("installing dependencies (first run only; torch first so no other build is pulled in)")
    sh(PYTHON, "-m", "pip", "install", "--quiet", TORCH)
    sh(PYTHON, "-m", "pip", "install", "--quiet", *requirements)
    previous = STAMP.read_text().split() if STAMP.exists() else []
    STAMP.write_text("\n".join([*previous, digest]) + "\n")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run() -> int:
    # Ctrl-C and a plain `kill` both stop everything, even where SIGINT was ignored on entry.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    ensure_venv(dev=False)
    env = base_env()
    env.setdefault("ARENA_WARM_MODELS", "all")
    env.setdefault("LEADERBOARD_REFRESH_S", "15")
    # One process does the set-up (migrate, build, sync, prompts) and names the queues last.
    prepared = (
        subprocess.run(
            [str(PYTHON), str(ROOT / "manage.py"), "prepare_arena"],
            cwd=ROOT,
            env=env,
            check=True,
            stdout=subprocess.PIPE,
            text=True,
        )
        .stdout.strip()
        .splitlines()
    )
    print("\n".join(prepared[:-1]), flush=True)
    queues = prepared[-1]
    host = env.get("ARENA_HOST", "127.0.0.1")
    port = env.get("ARENA_PORT", "8000")
    commands = {
        "worker": [
            str(VENV / "bin" / "celery"),
            "-A",
            "arena",
            "worker",
            "--pool",
            "prefork",
            "--concurrency",
            env.get("ARENA_WORKER_CONCURRENCY", "2"),
            "--queues",
            queues,
            "--without-mingle",
            "--without-gossip",
            "--loglevel",
            "INFO",
        ],
        # Beat schedules the leaderboard refresh (LEADERBOARD_REFRESH_S; 15 s in the demo).
        "beat": [
            str(VENV / "bin" / "celery"),
            "-A",
            "arena",
            "beat",
            "--loglevel",
            "WARNING",
            "--schedule",
            str(ROOT / "var" / "celerybeat-schedule"),
        ],
        "web": [str(PYTHON), str(ROOT / "manage.py"), "runserver", "--noreload", f"{host}:{port}"],
    }
    processes: dict[str, subprocess.Popen[bytes]] = {}
    for name, command in commands.items():
        # Each child leads its own process group, so stopping it stops its pool too.
        processes[name] = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True)
    say(f"Image Arena is running at http://{host}:{port}/  (Ctrl-C stops everything)")
    try:
        while True:
            for name, process in processes.items():
                if process.poll() is not None:
                    say(f"{name} exited with code {process.returncode}; stopping the rest")
                    return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        say("stopping")
        return 0
    finally:
        stop(processes)


def stop(processes: dict[str, subprocess.Popen[bytes]]) -> None:
    """Ask each child to shut down (Celery's warm shutdown ends its pool), then make sure."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip the cleanup
    for process in processes.values():
        if process.poll() is None:
            process.terminate()
    deadline = time.monotonic() + 10
    for process in processes.values():
        try:
            process.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # anything left in its group


# LMArena's arena-rank pins its own numpy, so the ratings are checked against it in a
# virtual environment of its own.
ORACLE_VENV = ROOT / ".venv-oracle"
ORACLE_REQUIREMENTS = ["arena-rank==0.1.1", "pandas", "choix>=0.4", "scipy", "pytest>=8"]
ORACLE_TESTS = "tests/leaderboard/test_ratings.py"


def oracle_tests(env: dict[str, str]) -> int:
    """Run the rating tests where arena-rank is installed, so its comparison cannot skip."""
    python = ORACLE_VENV / "bin" / "python"
    stamp = ORACLE_VENV / ".arena-installed"
    wanted = "\n".join(ORACLE_REQUIREMENTS)
    if not python.exists():
        say(f"creating the arena-rank oracle environment in {ORACLE_VENV}")
        sh(sys.executable, "-m", "venv", ORACLE_VENV)
    if not stamp.exists() or stamp.read_text() != wanted:
        sh(python, "-m", "pip", "install", "--quiet", *ORACLE_REQUIREMENTS)
        stamp.write_text(wanted)
    say("rating tests against arena-rank (oracle environment)")
    oracle_env = {**env, "PYTHONPATH": str(ROOT), "ARENA_REQUIRE_ORACLE": "1"}
    command = [
        str(python),
        "-m",
        "pytest",
        "-q",
        ORACLE_TESTS,
        "--noconftest",
        "-c",
        os.devnull,
        "--rootdir",
        str(ROOT),
        "-p",
        "no:cacheprovider",
    ]
    return subprocess.run(command, cwd=ROOT, env=oracle_env).returncode


def test(extra: list[str]) -> int:
    ensure_venv(dev=True)
    env = base_env()
    oracle = 0 if extra else oracle_tests(env)  # a focused run (-k, a path) skips the oracle
    say("the test suite")
    suite = subprocess.run([str(PYTHON), "-m", "pytest", *extra], cwd=ROOT, env=env).returncode
    return suite or oracle


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in {"run", "test"}:
        print(__doc__)
        return 2
    if sys.argv[1] == "run":
        return run()
    return test(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
