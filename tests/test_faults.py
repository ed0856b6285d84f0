"""Faults on loopback: a broker, a cache or a database that does not answer.

A battle started while the broker is down is voided at once (its jobs fail with the kind
``enqueue``); anything else that loses a backing service answers 503 with an ``error.code``
under /api/ and a readable page elsewhere, never 500 (``arena.outages``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import cache
from django.db import connection
from django.db.utils import load_backend
from django.http import HttpRequest, HttpResponse
from django.test import Client
from django.urls import path

ROOT = Path(__file__).resolve().parent.parent
# Nothing listens on port 1: every connection is refused at once.
NOWHERE = "127.0.0.1:1"

SCRIPT = """
import json
from arena import services
from generation.models import Generation
battle = services.create_battle(prompt_text="a lighthouse", owner="me")
battle.refresh_from_db()
state = services.battle_state(battle)
kinds = sorted(Generation.objects.values_list("failure_kind", flat=True))
print(json.dumps({"status": state.status, "message": state.message, "kinds": kinds}))
"""


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


def test_a_battle_started_while_the_broker_is_down_is_voided_at_once(
    tmp_path: Path, tiny_models_dir: Path
) -> None:
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'arena.sqlite3'}",
        "CELERY_BROKER_URL": f"redis://{NOWHERE}/0",
        "ARENA_MODELS_DIR": str(tiny_models_dir),
        "ARENA_VAR_DIR": str(tmp_path),
        # No worker runs here; matchmaking must still draw.
        "ARENA_MATCH_LIVE_WORKERS": "0",
    }
    manage("migrate", "--verbosity", "0", env=env)
    manage("sync_models", env=env)
    result = json.loads(manage("shell", "-c", SCRIPT, env=env).stdout.strip().splitlines()[-1])
    assert result["status"] == "void"
    assert result["message"] == "This battle could not be completed. Please start a new one."
    assert result["kinds"] == ["enqueue", "enqueue"]


# --- 503, never 500 ----------------------------------------------------------------------------
# Views that use a backing service that is away, through the real clients (redis-py, kombu,
# psycopg), so the exceptions are the ones a real outage raises.


def uses_cache(request: HttpRequest) -> HttpResponse:
    cache.get("anything")
    return HttpResponse("unreachable")


def uses_broker(request: HttpRequest) -> HttpResponse:
    from kombu import Connection

    with Connection(f"redis://{NOWHERE}/0", connect_timeout=1) as broker:
        broker.ensure_connection(max_retries=1, interval_start=0)
    return HttpResponse("unreachable")


def uses_database(request: HttpRequest) -> HttpResponse:
    params = {**connection.settings_dict, "HOST": "127.0.0.1", "PORT": "1"}
    if params["ENGINE"].endswith("sqlite3"):
        params["NAME"] = "/nonexistent/folder/db.sqlite3"
    down = load_backend(params["ENGINE"]).DatabaseWrapper(params, alias="down")
    down.ensure_connection()
    return HttpResponse("unreachable")


def session_write(request: HttpRequest) -> HttpResponse:
    """The failure happens after the view, in the session middleware's response phase."""
    request.session["visited"] = True
    return HttpResponse("ok")


def bug(request: HttpRequest) -> HttpResponse:
    raise ValueError("a bug, not an outage")


urlpatterns = [
    path("api/bug", bug),
    path("api/cache", uses_cache),
    path("cache", uses_cache),
    path("api/broker", uses_broker),
    path("api/database", uses_database),
    path("page/database", uses_database),
    path("session", session_write),
]


@pytest.fixture
def client(db: None) -> Client:
    # Like a real server: an exception becomes a response instead of failing the test.
    return Client(raise_request_exception=False)


@pytest.fixture
def cache_away(settings: Any) -> None:
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://{NOWHERE}/0",
        }
    }


@pytest.mark.urls("tests.test_faults")
@pytest.mark.parametrize(
    ("url", "code"),
    [("/api/broker", "broker_unavailable"), ("/api/database", "database_unavailable")],
)
def test_an_api_call_that_loses_a_service_answers_503_with_a_json_code(
    client: Client, url: str, code: str
) -> None:
    response = client.get(url)
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    error = response.json()["error"]
    assert error["code"] == code and "Try again" in error["message"]


@pytest.mark.urls("tests.test_faults")
def test_an_api_call_without_its_cache_answers_503_cache_unavailable(
    client: Client, cache_away: None
) -> None:
    response = client.get("/api/cache")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "cache_unavailable"


@pytest.mark.urls("tests.test_faults")
def test_a_page_without_its_cache_answers_a_readable_503_page(
    client: Client, cache_away: None
) -> None:
    response = client.get("/cache")
    assert response.status_code == 503 and response["Content-Type"].startswith("text/html")
    assert b"cannot reach the cache right now" in response.content


@pytest.mark.urls("tests.test_faults")
def test_a_page_without_its_database_answers_a_readable_503_page(client: Client) -> None:
    response = client.get("/page/database")
    assert response.status_code == 503
    assert b"cannot reach the database right now" in response.content


@pytest.mark.urls("tests.test_faults")
def test_a_failure_after_the_view_in_a_middleware_also_answers_503(
    client: Client, settings: Any, cache_away: None
) -> None:
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.cache"
    response = client.get("/session")
    assert response.status_code == 503


@pytest.mark.urls("tests.test_faults")
def test_a_bug_still_answers_500(client: Client) -> None:
    """Only lost connections become 503: a bug must still look like one."""
    assert client.get("/api/bug").status_code == 500


def test_the_json_api_answers_503_when_its_database_is_away(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """django-ninja catches exceptions itself; its handlers answer the same 503."""
    import uuid

    from arena import api

    monkeypatch.setattr(api, "battle_for", lambda *args, **kwargs: uses_database(None))  # type: ignore[arg-type]
    response = client.get(f"/api/v1/battles/{uuid.uuid4()}")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "database_unavailable"
