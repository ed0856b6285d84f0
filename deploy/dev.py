#!/usr/bin/env python3
"""Run Image Arena locally, or its tests, on a machine that has only Python 3.11.

    python3.11 deploy/dev.py run     # set up if needed, then web server + Celery worker + beat
    python3.11 deploy/dev.py test    # set up if needed, then the whole test suite

Standard library only. It creates ``.venv`` beside the project and installs exactly what
``uv.lock`` pins, with uv (taken from the package index when it is not on PATH; pip is the
fallback), again only when the lock changes. ``run`` then prepares the database and the tiny
models (only when something they depend on changed), starts the processes, waits until the
worker's processes have loaded their models and the web server answers, and prints the address
last. A process that dies is restarted; Ctrl-C stops them all.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(os.environ.get("ARENA_VENV", ROOT / ".venv"))
PYTHON = VENV / "bin" / "python"
LOCK = ROOT / "uv.lock"
# The lock pins the CPU build that these machines carry (torch==2.13.0); GPU hosts set
# ARENA_TORCH to their CUDA build, which is installed first and left alone by the lock.
DEFAULT_TORCH = "torch==2.13.0"
TORCH = os.environ.get("ARENA_TORCH", DEFAULT_TORCH)
STAMP = VENV / ".arena-installed"
# A process that dies this many times, each within RESTART_WINDOW_S of its start, stops dev.py.
MAX_QUICK_RESTARTS = 5
RESTART_WINDOW_S = 15.0
READY_TIMEOUT_S = 180.0
EX_CONFIG = 78  # the worker's exit code when a pool child cannot load its models


def say(message: str) -> None:
    print(f"[arena] {message}", flush=True)


def sh(*args: str | Path, env: dict[str, str] | None = None) -> None:
    subprocess.run([str(a) for a in args], cwd=ROOT, env=env, check=True)


def base_env() -> dict[str, str]:
    env = dict(os.environ)
    # The virtual environment is this script's own, so let Python cache bytecode in it: with
    # PYTHONDONTWRITEBYTECODE set (some machines set it globally) every process that starts, the
    # web server, each worker and each test's worker, compiled torch, diffusers and transformers
    # from source again (12.3 s against 5.3 s for their import here).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("PYTHONUNBUFFERED", "1")
    env["PATH"] = f"{VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


# --- Installing from the lock file ----------------------------------------------------------


def ensure_venv(*, dev: bool) -> None:
    """Create the virtual environment and install what uv.lock pins, once per change."""
    if sys.version_info[:2] != (3, 11):
        say(f"warning: Image Arena targets Python 3.11; this is {sys.version.split()[0]}")
    wanted = "\n".join(
        [TORCH, f"dev={dev}", hashlib.sha256(LOCK.read_bytes()).hexdigest()]
        + [hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()]
    )
    digest = hashlib.sha256(wanted.encode()).hexdigest()
    if PYTHON.exists() and STAMP.exists() and digest in STAMP.read_text().split():
        return
    started = time.monotonic()
    if not PYTHON.exists():
        say(f"creating virtual environment in {VENV}")
        sh(sys.executable, "-m", "venv", VENV)
    uv = _uv()
    installed = False
    if uv is not None:
        try:
            _install_with_uv(uv, dev=dev)
            installed = True
        except subprocess.CalledProcessError as error:
            say(f"uv failed (exit {error.returncode}); installing the same pins with pip instead")
    if not installed:
        _install_with_pip(dev=dev)
    previous = STAMP.read_text().split() if STAMP.exists() else []
    STAMP.write_text("\n".join([*previous, digest]) + "\n")
    say(f"dependencies installed in {time.monotonic() - started:.1f} s")


def _uv() -> Path | None:
    """uv from PATH, else from the package index into the virtual environment; None if neither."""
    if os.environ.get("ARENA_INSTALLER") == "pip":
        return None
    found = shutil.which("uv")
    if found:
        return Path(found)
    local = VENV / "bin" / "uv"
    if not local.exists():
        say("fetching uv, the fast installer, from the package index")
        result = subprocess.run(
            [str(PYTHON), "-m", "pip", "install", "-qq", "--disable-pip-version-check", "uv"],
            cwd=ROOT,
        )
        if result.returncode != 0:
            say("uv is not available; installing with pip (slower)")
            return None
    return local if local.exists() else None


def _install_with_uv(uv: Path, *, dev: bool) -> None:
    """``uv sync`` from the lock into our environment: downloads in parallel, shows progress."""
    env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(VENV), "VIRTUAL_ENV": str(VENV)}
    command = [str(uv), "sync", "--locked", "--inexact", "--no-install-project"]
    command += ["--python", str(PYTHON)]
    if dev:
        command += ["--extra", "dev"]
    if TORCH != DEFAULT_TORCH:
        say(f"installing {TORCH} first (ARENA_TORCH)")
        sh(uv, "pip", "install", "--python", PYTHON, *TORCH.split(), env=env)
        command += ["--no-install-package", "torch"]
    say(f"installing the packages pinned in {LOCK.name} with uv")
    sh(*command, env=env)


def locked_pins() -> dict[str, str]:
    """Every package version that uv.lock pins (the project itself left out)."""
    lock = tomllib.loads(LOCK.read_text(encoding="utf-8"))
    return {
        package["name"]: package["version"]
        for package in lock["package"]
        if "editable" not in package["source"] and "virtual" not in package["source"]
    }


def _install_with_pip(*, dev: bool) -> None:
    """pip with every version pinned by uv.lock as a constraint: the same set, only slower."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    requirements = list(project["dependencies"])
    if dev:
        requirements += project["optional-dependencies"]["dev"]
    pins = locked_pins()
    if TORCH != DEFAULT_TORCH:
        pins.pop("torch", None)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as constraints:
        # A local label (2.13.0+cpu) is left out: ==2.13.0 matches it where it is on disk.
        constraints.write("".join(f"{n}=={v.split('+')[0]}\n" for n, v in sorted(pins.items())))
    try:
        say(f"installing with pip, pinned by {LOCK.name} (torch first)")
        pip = [str(PYTHON), "-m", "pip", "install", "--progress-bar", "on", "-c", constraints.name]
        sh(*pip, TORCH)
        sh(*pip, *requirements)
    finally:
        os.unlink(constraints.name)


# --- Preparing the database and models --------------------------------------------------------


def _setting_path(env: dict[str, str], name: str, default: Path) -> Path:
    raw = env.get(name)
    return Path(raw).expanduser().resolve() if raw else default


def prepare_digest(env: dict[str, str]) -> tuple[str, Path]:
    """A digest of everything prepare_arena reads (migrations, registry, prompts, the commands
    that apply them, the database it writes to), and the stamp file that keeps it."""
    var = _setting_path(env, "ARENA_VAR_DIR", ROOT / "var")
    registry = _setting_path(env, "ARENA_MODEL_REGISTRY", ROOT / "deploy" / "models.tiny.toml")
    prompts = _setting_path(env, "ARENA_PROMPT_POOL", ROOT / "arena" / "data" / "prompts.toml")
    models = _setting_path(env, "ARENA_MODELS_DIR", var / "models")
    database = env.get("DATABASE_URL") or f"sqlite:///{var / 'arena.sqlite3'}"
    files = sorted(
        [
            *ROOT.glob("*/migrations/*.py"),
            *ROOT.glob("*/management/commands/*.py"),
            ROOT / "generation" / "registry.py",
            ROOT / "generation" / "tiny.py",
            registry,
            prompts,
        ]
    )
    digest = hashlib.sha256(f"{database}\n{models}\n".encode())
    for path in files:
        digest.update(f"{path}\n".encode())
        digest.update(path.read_bytes() if path.exists() else b"missing")
    if database.startswith("sqlite:"):
        db_file = ROOT / database.split("sqlite:///", 1)[-1]
        # A deleted database file must be migrated again, whatever the stamp says.
        digest.update(str(db_file.stat().st_ino if db_file.exists() else "none").encode())
    for index in sorted(models.glob("*/model_index.json")):
        digest.update(str(index).encode())
    return digest.hexdigest(), var / "prepared.json"


MIGRATED = "arena: database migrated"  # prepare_arena's line once the schema is current


def prepare_is_current(env: dict[str, str]) -> str | None:
    """The queues to serve, kept by the last prepare, when nothing it depends on changed since;
    None when prepare_arena must run."""
    digest, stamp = prepare_digest(env)
    if env.get("ARENA_PREPARE") == "1" or not stamp.exists():
        return None
    with contextlib.suppress(ValueError, KeyError, TypeError):
        kept = json.loads(stamp.read_text())
        if kept["digest"] == digest:
            return str(kept["queues"])
    return None


def prepare(env: dict[str, str], *, on_migrated: Callable[[], None] | None = None) -> str:
    """Run prepare_arena unless nothing it depends on changed since it last ran; return the
    Celery queues to serve. ``on_migrated`` runs as soon as the database schema is current
    (the web server can start then, while the tiny models are built and registered)."""
    queues = prepare_is_current(env)
    if queues is not None:
        if on_migrated is not None:
            on_migrated()
        return queues
    say("preparing: migrate, build the tiny models, register them and the prompts")
    process = subprocess.Popen(
        [str(PYTHON), str(ROOT / "manage.py"), "prepare_arena"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    held: str | None = None  # the last line is the queues, not for the terminal
    for raw in process.stdout:
        line = raw.rstrip("\n")
        if line == MIGRATED:
            if on_migrated is not None:
                on_migrated()
            continue
        if held is not None:
            print(held, flush=True)
        held = line
    if process.wait() != 0 or held is None:
        raise subprocess.CalledProcessError(process.returncode, "manage.py prepare_arena")
    digest, stamp = prepare_digest(env)  # the database file may be new
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(json.dumps({"digest": digest, "queues": held}))
    return held


# --- Running and supervising the processes ------------------------------------------------


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def quiet_libraries(env: dict[str, str]) -> None:
    """Mute what the libraries print that is not the arena's: advice, deprecation notes,
    download bars. Anything set already wins."""
    env.setdefault("TRANSFORMERS_VERBOSITY", "error")
    env.setdefault("DIFFUSERS_VERBOSITY", "error")
    env.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    env.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    env.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    env.setdefault("DJANGO_RUNSERVER_HIDE_WARNING", "true")
    env.setdefault(
        "PYTHONWARNINGS",
        "ignore::DeprecationWarning,ignore::FutureWarning,ignore::UserWarning",
    )


def run_commands(*, env: dict[str, str], queues: str, host: str, port: str) -> dict[str, list[str]]:
    celery = str(VENV / "bin" / "celery")
    return {
        "worker": [
            celery,
            "-A",
            "arena",
            "--quiet",  # no banner: the box below is the last thing a start prints
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
            "WARNING",
        ],
        # Beat schedules the leaderboard refresh (LEADERBOARD_REFRESH_S; 15 s in the demo).
        "beat": [
            celery,
            "-A",
            "arena",
            "--quiet",
            "beat",
            "--loglevel",
            "WARNING",
            "--schedule",
            str(_setting_path(env, "ARENA_VAR_DIR", ROOT / "var") / "celerybeat-schedule"),
        ],
        # prepare_arena ran Django's checks and migrated (or nothing they read changed since):
        # devserver is runserver without the migration check.
        "web": [
            str(PYTHON),
            str(ROOT / "manage.py"),
            "devserver",
            "--noreload",
            "--skip-checks",
            f"{host}:{port}",
        ],
    }


def _start(name: str, command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    # Each child leads its own process group, so stopping it stops its pool too. The web
    # server's standard output holds only its banner; requests and errors go to standard error.
    stdout = subprocess.DEVNULL if name == "web" else None
    return subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True, stdout=stdout)


def _status(url: str) -> int:
    """The HTTP status a GET of ``url`` answers, or 0 when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (loopback)
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except (OSError, ValueError):
        return 0


def serves_battles(url: str) -> bool:
    """``/readyz`` says the database, broker, cache and every model's worker are ready; where
    the code has no such probe (404), the page answering will do."""
    ready = _status(f"{url}readyz")
    return ready == 200 or (ready == 404 and 0 < _status(url) < 500)


def warm_processes(ready_file: Path) -> int:
    """How many worker processes have loaded their models (each appends its pid)."""
    try:
        return len(ready_file.read_text(encoding="ascii").split())
    except FileNotFoundError:
        return 0


def box(lines: list[str]) -> str:
    width = max(len(line) for line in lines)
    rule = "─" * (width + 4)
    body = [f"│  {line.ljust(width)}  │" for line in lines]
    return "\n".join([f"┌{rule}┐", *body, f"└{rule}┘"])


class Supervisor:
    """Keeps each process running: one that exits is started again, with a message."""

    def __init__(self, commands: dict[str, list[str]], env: dict[str, str]) -> None:
        self.commands = commands
        self.env = env
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.started: dict[str, float] = {}
        self.quick_restarts: dict[str, int] = dict.fromkeys(commands, 0)
        self.restarts = 0

    def start(self, *names: str) -> None:
        for name in names:
            self.processes[name] = _start(name, self.commands[name], self.env)
            self.started[name] = time.monotonic()

    def check(self) -> None:
        """Restart whatever exited; raise SystemExit if one keeps dying at once."""
        for name, process in self.processes.items():
            if process.poll() is None:
                continue
            lived = time.monotonic() - self.started[name]
            if process.returncode == EX_CONFIG:
                # The worker says a model cannot load: starting it again cannot help.
                say(f"{name} stopped: a model could not warm up (see its log above); stopping")
                raise SystemExit(1)
            self.quick_restarts[name] = (
                self.quick_restarts[name] + 1 if lived < RESTART_WINDOW_S else 0
            )
            if self.quick_restarts[name] > MAX_QUICK_RESTARTS:
                say(
                    f"{name} exited with code {process.returncode} {MAX_QUICK_RESTARTS + 1} "
                    f"times within {RESTART_WINDOW_S:.0f} s of starting; stopping the arena"
                )
                raise SystemExit(1)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # what is left of its group (a pool)
            say(f"{name} exited with code {process.returncode} after {lived:.0f} s; restarting it")
            self.processes[name] = _start(name, self.commands[name], self.env)
            self.started[name] = time.monotonic()
            self.restarts += 1

    def stop(self) -> None:
        stop(self.processes)


def run() -> int:
    # Ctrl-C and a plain `kill` both stop everything, even where SIGINT was ignored on entry.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    ensure_venv(dev=False)
    env = base_env()
    quiet_libraries(env)
    env.setdefault("ARENA_WARM_MODELS", "all")
    env.setdefault("LEADERBOARD_REFRESH_S", "15")
    host = env.get("ARENA_HOST", "127.0.0.1")
    port = env.get("ARENA_PORT", "8000")
    var = _setting_path(env, "ARENA_VAR_DIR", ROOT / "var")
    var.mkdir(parents=True, exist_ok=True)
    ready_file = Path(env.setdefault("ARENA_READY_FILE", str(var / "worker-ready")))
    ready_file.unlink(missing_ok=True)
    concurrency = int(env.get("ARENA_WORKER_CONCURRENCY", "2"))
    url = f"http://{host}:{port}/"
    # The worker's queues come from prepare; its command is filled in once they are known.
    supervisor = Supervisor(run_commands(env=env, queues="", host=host, port=port), env)
    try:
        # The web server first, as soon as the schema is current (at once on a warm start; on a
        # cold one while the tiny models are built and registered); then the worker, whose
        # processes load every model, the longest step of a start. Beat waits until they are
        # warm (its first jobs, the sweeper and a board refresh, can wait), so the two cores of
        # a laptop go to what the first battle needs.
        queues = prepare(env, on_migrated=lambda: supervisor.start("web"))
        supervisor.commands["worker"] = run_commands(env=env, queues=queues, host=host, port=port)[
            "worker"
        ]
        supervisor.start("worker")
        # The address comes last, once a battle can be served: every worker process has loaded
        # every model and the web server answers.
        started = time.monotonic()
        deadline = started + READY_TIMEOUT_S
        say("waiting for the worker's processes to load the models")
        answered = False
        while warm_processes(ready_file) < concurrency or not serves_battles(url):
            supervisor.check()
            if not answered and _status(url) != 0:
                answered = True
                say("the web server answers; the worker's processes are still warming up")
            if time.monotonic() > deadline:
                say(f"still not warm after {READY_TIMEOUT_S:.0f} s; the first battles may wait")
                break
            time.sleep(0.1)
        supervisor.start("beat")
        print(box([f"Image Arena is ready at {url}", "Ctrl-C stops everything"]), flush=True)
        while True:
            supervisor.check()
            time.sleep(0.5)
    except KeyboardInterrupt:
        say("stopping")
        return 0
    except SystemExit as exit_:
        return int(exit_.code or 1)
    finally:
        supervisor.stop()


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
