"""/healthz says the process answers; /readyz says it can serve battles, or names what is
missing."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from generation.models import ImageModel, WorkerHeartbeat

pytestmark = pytest.mark.django_db


def beat(*, queues: list[str], ready: bool = True, age_s: float = 0, node: str = "w1@h") -> None:
    WorkerHeartbeat.objects.update_or_create(
        node=node,
        defaults={
            "queues": queues,
            "ready": ready,
            "children": 1,
            "warm_children": int(ready),
            "seen_at": timezone.now() - timedelta(seconds=age_s),
        },
    )


def test_healthz_answers_without_touching_the_database(
    django_assert_num_queries: Any,
) -> None:
    with django_assert_num_queries(0):
        response = Client().get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_readyz_is_200_when_every_enabled_models_queue_has_a_warm_worker(
    models: list[Any], test_queue: str
) -> None:
    beat(queues=[test_queue, "other"])
    response = Client().get("/readyz")
    assert response.status_code == 200, response.json()
    assert response.json()["checks"] == {
        "database": "ok",
        "broker": "ok",
        "cache": "ok",
        "workers": "ok",
    }


@pytest.mark.parametrize(
    "heartbeat",
    [
        None,
        {"ready": False},  # a child is dead or still loading
        {"age_s": 3600},  # the worker stopped reporting
        {"queues": ["someone-elses"]},
    ],
)
def test_readyz_is_503_naming_the_queue_without_a_live_warm_worker(
    models: list[Any], test_queue: str, heartbeat: dict[str, Any] | None
) -> None:
    if heartbeat is not None:
        beat(**{"queues": [test_queue], **heartbeat})
    response = Client().get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["failing"] == ["workers"]
    assert body["error"]["code"] == "not_ready"
    assert f"no live, warm worker for queue(s): {test_queue}" in body["error"]["message"]


def test_a_disabled_models_queue_needs_no_worker(models: list[Any], test_queue: str) -> None:
    beat(queues=[test_queue])
    ImageModel.objects.filter(pk=models[0].pk).update(queue="gpu-nobody", enabled=False)
    assert Client().get("/readyz").status_code == 200


def test_readyz_is_503_naming_the_broker_when_it_does_not_answer(
    models: list[Any], test_queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from arena.celery import app

    beat(queues=[test_queue])
    for key in ("broker_url", "broker_write_url"):
        monkeypatch.setitem(app.conf, key, "redis://127.0.0.1:1/0")
    body = Client().get("/readyz").json()
    assert body["failing"] == ["broker"] and body["checks"]["broker"].startswith("does not answer")


def test_readyz_is_503_naming_the_cache_when_it_does_not_answer(
    models: list[Any], test_queue: str, settings: Any
) -> None:
    beat(queues=[test_queue])
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
        }
    }
    response = Client().get("/readyz")
    assert response.status_code == 503 and response.json()["failing"] == ["cache"]


POD_ADDRESS = "10.1.2.3:8000"  # what a kubelet sends as Host: the pod's IP, no public name


def test_probes_answer_any_host_and_every_other_path_still_refuses_it(
    models: list[Any], test_queue: str, settings: Any
) -> None:
    settings.ALLOWED_HOSTS = ["arena.example.org"]
    settings.SECURE_SSL_REDIRECT = True  # the probes talk plain HTTP to the pod
    client = Client()
    live = client.get("/healthz", HTTP_HOST=POD_ADDRESS)
    assert live.status_code == 200 and live.json() == {"status": "ok"}
    unready = client.get("/readyz", HTTP_HOST=POD_ADDRESS)
    assert unready.status_code == 503 and unready.json()["failing"] == ["workers"]
    beat(queues=[test_queue])
    assert client.get("/readyz", HTTP_HOST=POD_ADDRESS).status_code == 200
    assert client.get("/readyz", HTTP_HOST="127.0.0.1:8000").status_code == 200  # compose check
    # Only the two exact paths: the same Host anywhere else is refused as before.
    for path in ("/", "/healthz/", "/readyz/x", "/leaderboard/", "/metricsz"):
        assert client.get(path, HTTP_HOST=POD_ADDRESS).status_code == 400, path
    assert client.post("/healthz", HTTP_HOST=POD_ADDRESS).status_code == 405
    # An allowed Host behaves as before, redirect and all.
    assert client.get("/", HTTP_HOST="arena.example.org").status_code == 301


@pytest.mark.parametrize("debug", [True, False], ids=["debug", "no-debug"])
def test_a_disallowed_host_under_the_api_is_a_json_400_in_the_apis_error_shape(
    models: list[Any], settings: Any, debug: bool
) -> None:
    settings.ALLOWED_HOSTS = ["arena.example.org"]
    settings.DEBUG = debug
    client = Client()
    paths = ["/api/v1/session", "/api/v1/battles/00000000-0000-0000-0000-000000000000", "/api/x"]
    for path in paths:
        refused = client.get(path, HTTP_HOST="evil.example")
        assert refused.status_code == 400, path
        assert refused["Content-Type"] == "application/json", path
        assert refused.json() == {
            "error": {
                "code": "bad_host",
                "message": "The Host header names no address this arena serves.",
            }
        }
    posted = client.post("/api/v1/battles", {"prompt": "x"}, HTTP_HOST="evil.example")
    assert posted.status_code == 400 and posted.json()["error"]["code"] == "bad_host"
    # Elsewhere Django's page as before; an allowed Host reaches the API.
    page = Client().get("/leaderboard/", HTTP_HOST="evil.example")
    assert page.status_code == 400 and not page["Content-Type"].startswith("application/json")
    assert client.get("/api/v1/session", HTTP_HOST="arena.example.org").status_code == 200


def test_behind_the_https_redirect_a_disallowed_host_under_the_api_is_still_json(
    models: list[Any], settings: Any
) -> None:
    # The redirect reads the Host before any other middleware: Django's 400 handler answers.
    settings.ALLOWED_HOSTS = ["arena.example.org"]
    settings.SECURE_SSL_REDIRECT = True
    settings.DEBUG = False
    refused = Client().get("/api/v1/session", HTTP_HOST="evil.example")
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "bad_host"
    page = Client().get("/", HTTP_HOST="evil.example")
    assert page.status_code == 400 and not page["Content-Type"].startswith("application/json")
