"""Shared fixtures: tiny models on disk, registered models, a real Celery worker process.

Services the suite needs (PostgreSQL, Redis, Chromium) are used when configured. Where one is
missing, the tests that need it are skipped on a laptop and fail under CI (``CI`` set), so a
green CI run always means they ran.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent
TEST_MODELS_DIR = ROOT / "var" / "test-models"
WORKER_START_TIMEOUT_S = 90


def require(condition: bool, reason: str) -> None:
    """Skip when a service is missing, except in CI where that is a failure."""
    if condition:
        return
    if os.environ.get("CI"):
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def tiny_models_dir() -> Path:
    """The tiny offline pipelines, built once and kept under var/ between runs."""
    from generation import tiny

    tiny.build_all(TEST_MODELS_DIR)
    return TEST_MODELS_DIR


@pytest.fixture(autouse=True)
def _isolated_media(tmp_path_factory: pytest.TempPathFactory, settings: Any) -> None:
    settings.MEDIA_ROOT = str(_session_media(tmp_path_factory))
    settings.MODELS_DIR = TEST_MODELS_DIR
    # Most tests run no worker; the tests of worker-aware matchmaking turn this back on.
    settings.ARENA_MATCH_LIVE_WORKERS = False


_media: list[Path] = []


def _session_media(factory: pytest.TempPathFactory) -> Path:
    if not _media:
        _media.append(factory.mktemp("media"))
    return _media[0]


@pytest.fixture(scope="session")
def test_queue() -> str:
    """A queue name no other process uses, so the test worker only sees this run's jobs."""
    return f"test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def models(tiny_models_dir: Path, test_queue: str, db: None) -> list[Any]:
    """The tiny demo models (three Stable Diffusion, one SDXL, one PixArt), from the demo registry
    file."""
    from generation import registry_sync
    from generation.models import ImageModel

    current, _ = registry_sync.sync_models(path=ROOT / "deploy" / "models.tiny.toml")
    ImageModel.objects.update(queue=test_queue)
    for model in current:
        model.refresh_from_db()
    return current


def database_url() -> str:
    """A URL for the test database, for processes started by the tests."""
    from django.db import connection

    params = connection.settings_dict
    if params["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{params['NAME']}"
    auth = params["USER"] + (f":{params['PASSWORD']}" if params["PASSWORD"] else "")
    port = f":{params['PORT']}" if params["PORT"] else ""
    return f"postgres://{auth}@{params['HOST']}{port}/{params['NAME']}"


def child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "DATABASE_URL": database_url(),
            "MEDIA_ROOT": str(settings.MEDIA_ROOT),
            "ARENA_MODELS_DIR": str(TEST_MODELS_DIR),
            "HF_HUB_OFFLINE": "1",
            "OMP_NUM_THREADS": "1",
            "PYTHONUNBUFFERED": "1",
            # Servers started by tests show a battle when it is done (no reveal floor), like
            # the in-process ones (_votes_count_by_default).
            "ARENA_REVEAL_MIN_MS": "0",
            "ARENA_REVEAL_JITTER_MS": "0",
        }
    )
    env.update(extra)
    return env


class Worker:
    """A real ``celery worker`` process; ``kill()`` is kill -9 of the whole process group."""

    def __init__(
        self,
        queue: str,
        log_path: Path,
        concurrency: int = 2,
        env: dict[str, str] | None = None,
        hostname: str = "",
    ) -> None:
        # Celery replaces %h with the host name; the same value restarts the same node.
        self.hostname = hostname or f"test-{uuid.uuid4().hex[:6]}@%h"
        self.queue = queue
        self.log_path = log_path
        self.concurrency = concurrency
        self.env = env or {}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        ready_file = self.log_path.with_suffix(".ready")
        ready_file.unlink(missing_ok=True)
        celery = Path(sys.executable).parent / "celery"
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                str(celery),
                "-A",
                "arena",
                "worker",
                "--pool",
                "prefork",
                "--concurrency",
                str(self.concurrency),
                "--queues",
                self.queue,
                "--without-mingle",
                "--without-gossip",
                "--loglevel",
                "INFO",
                "--hostname",
                self.hostname,
            ],
            cwd=ROOT,
            env=child_env(
                **{"ARENA_WARM_MODELS": "all", "ARENA_READY_FILE": str(ready_file), **self.env}
            ),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + WORKER_START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited early:\n{self.log()}")
            if ready_file.exists() and len(ready_file.read_text().split()) >= self.concurrency:
                return
            time.sleep(0.1)
        raise RuntimeError(f"worker not ready in {WORKER_START_TIMEOUT_S}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]

    def child_pids(self) -> list[int]:
        assert self.process is not None
        out = subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True)
        return [int(pid) for pid in out.stdout.split()]

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=15)
        self.kill()
        self._log.close()


def broker_is_redis() -> bool:
    return str(settings.CELERY_BROKER_URL).startswith("redis://")


@contextlib.contextmanager
def running_worker(
    queue: str, log_path: Path, concurrency: int = 2, env: dict[str, str] | None = None
) -> Iterator[Worker]:
    """A started worker on ``queue``, stopped and its queue purged afterwards."""
    if os.environ.get("CI"):
        require(broker_is_redis(), "CI runs the worker tests on the Redis broker")
    started = Worker(queue, log_path, concurrency=concurrency, env=env)
    try:
        started.start()  # inside the try: a worker that never got ready is stopped too
        yield started
    finally:
        started.stop()
        _purge(queue)


@pytest.fixture
def worker(
    models: list[Any], test_queue: str, tmp_path: Path, transactional_db: None
) -> Iterator[Worker]:
    """A real Celery worker process with two pool children on this run's queue."""
    with running_worker(test_queue, tmp_path / "worker.log") as started:
        yield started


def _purge(queue: str) -> None:
    from arena.celery import app

    try:
        with app.connection_for_write() as conn:
            channel: Any = conn.default_channel
            channel.queue_purge(queue)
    except Exception:  # noqa: S110 - an absent queue has nothing to purge
        pass


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


# Debian's Chromium, never a downloaded one; no background traffic off this machine.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


# Every 5xx answer any browser test's page received: pages, fragments, images, plots.
SERVER_ERRORS: list[str] = []


def _record_server_error(response: Any) -> None:
    if response.status >= 500:
        SERVER_ERRORS.append(f"{response.status} {response.request.method} {response.url}")


class GuardedBrowser:
    """Chromium whose every page and context records 5xx answers for the guard below."""

    def __init__(self, browser: Any) -> None:
        self._browser = browser

    def __getattr__(self, name: str) -> Any:
        return getattr(self._browser, name)

    def new_context(self, **kwargs: Any) -> Any:
        context = self._browser.new_context(**kwargs)
        context.on("response", _record_server_error)
        return context

    def new_page(self, **kwargs: Any) -> Any:
        page = self._browser.new_page(**kwargs)
        page.on("response", _record_server_error)
        return page


@pytest.fixture(autouse=True)
def no_server_error_reaches_the_browser() -> Iterator[None]:
    """The global guard: a browser test fails when any request it made answered 5xx."""
    SERVER_ERRORS.clear()
    yield
    found, SERVER_ERRORS[:] = list(SERVER_ERRORS), []
    assert not found, f"5xx answers in the browser: {found}"


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Chromium through Playwright, shared by the browser tests."""
    executable = chromium_path()
    require(executable is not None, "Chromium is not installed (apt-get install chromium)")
    playwright_api = pytest.importorskip("playwright.sync_api")
    # Playwright's sync API runs an event loop in this thread; the ORM calls the tests make
    # beside it are ordinary blocking calls, which Django would otherwise refuse.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "1"
    with playwright_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        yield GuardedBrowser(launched)
        launched.close()
    os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


def _png(color: tuple[int, int, int] = (10, 20, 30)) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), color).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def finish_battle() -> Any:
    """Finish both sides of a battle by hand, through the real services, without a worker."""
    from generation import jobs as generation_jobs

    def finish(battle: Any) -> None:
        for generation in (battle.generation_left, battle.generation_right):
            claimed = generation_jobs.claim(generation_id=generation.pk)
            assert claimed is not None
            generation_jobs.finish(
                generation=claimed, data=_png(), compute_ms=5, queue_wait_ms=1, device="cpu"
            )
        battle.refresh_from_db()

    return finish


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    """Rate-limit counters and cached plots must not leak from one test into the next."""
    from django.core.cache import cache

    from arena import polling

    cache.clear()
    polling.forget_fastest_runs()


@functools.cache
def _api_operations() -> list[tuple[re.Pattern[str], str, dict[str, Any], dict[str, Any]]]:
    """(path regex, method, responses, components) for each operation of the generated
    OpenAPI document."""
    from arena.urls import json_api

    # As served: through JSON, so status codes are strings.
    document = json.loads(json.dumps(json_api.get_openapi_schema()))
    operations = []
    for route, methods in document["paths"].items():
        pattern = re.compile("^" + re.sub(r"\{\w+\}", "[^/]+", route) + "$")
        for method, operation in methods.items():
            operations.append(
                (pattern, method.upper(), operation["responses"], document["components"])
            )
    return operations


def check_api_answer(path: str, method: str, response: Any) -> None:
    """Validate an /api/v1/ answer against the generated schema of its route and status; an
    error status the route does not declare must still have the one error shape."""
    import jsonschema

    if not path.startswith("/api/v1/") or path == "/api/v1/openapi.json":
        return
    if method == "HEAD" or response.status_code == 405:
        return  # no body
    found = [(r, c) for p, m, r, c in _api_operations() if m == method and p.match(path)]
    if not found:
        assert response.status_code == 404, f"{method} {path}: no such operation"
        ref = "#/components/schemas/Error"
        components = _api_operations()[0][3]
    else:
        responses, components = found[0]
        declared = responses.get(str(response.status_code))
        assert declared or response.status_code >= 400, (
            f"{method} {path} answered {response.status_code}, which its schema does not declare"
        )
        if declared and "content" not in declared:
            # A declared answer without a body (304 Not Modified): there must be none.
            assert response.content == b"", f"{method} {path}: a {response.status_code} has a body"
            return
        schema = declared["content"]["application/json"]["schema"] if declared else None
        ref = schema["$ref"] if schema else "#/components/schemas/Error"
    validator = jsonschema.Draft202012Validator(
        {"$ref": ref, "components": components},
        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
    )
    validator.validate(json.loads(response.content))


@pytest.fixture(autouse=True)
def _api_answers_match_their_schema(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every API answer a test receives through Django's test client is checked against the
    generated OpenAPI document, whose answer schemas forbid undeclared fields."""
    from django.test.client import Client

    original = Client.request

    def checked(self: Client, **request: Any) -> Any:
        response = original(self, **request)
        check_api_answer(request["PATH_INFO"], request["REQUEST_METHOD"], response)
        return response

    monkeypatch.setattr(Client, "request", checked)


@pytest.fixture(autouse=True)
def _votes_count_by_default(settings: Any) -> None:
    """Tests vote the moment a battle is ready and start battles without a browser: the
    time-to-vote floor, the reveal floor, the proof-of-work check and gold battles are off
    unless a test turns them on."""
    settings.ARENA_MIN_MS_TO_VOTE = 0
    settings.ARENA_REVEAL_MIN_MS = 0
    settings.ARENA_REVEAL_JITTER_MS = 0
    settings.ARENA_CHALLENGE_MAX_NUMBER = 0
    settings.ARENA_GOLD_RATE = 0.0
