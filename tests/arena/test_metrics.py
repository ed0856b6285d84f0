"""The Prometheus endpoint: who may read it, and that the arena's figures follow a battle."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from arena import services
from generation import jobs as generation_jobs
from generation.models import Generation
from leaderboard import services as leaderboard_services
from tests.conftest import ROOT, _png, _purge, broker_is_redis, child_env, require

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


TOKEN = "scraper-token"


@pytest.fixture(autouse=True)
def _metrics_token(settings: Any) -> None:
    settings.ARENA_METRICS_TOKEN = TOKEN


def scrape(client: Client) -> Samples:
    response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200, response.content[:500]
    return parse(response.content.decode())


def parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.mark.django_db(transaction=True)
def test_the_arenas_metrics_move_when_a_battle_is_played(
    models: list[Any], finish_battle: Any, client: Client, test_queue: str
) -> None:
    require(broker_is_redis(), "queue depth is read from the Redis broker")
    _purge(test_queue)
    before = scrape(client)
    assert value(before, "arena_metrics_part_errors", part="queues") == 0

    battle = services.create_battle(prompt_text="a heron in the reeds", owner="o" * 64)
    queued = scrape(client)
    # Both jobs were sent to the models' queue on commit and nothing consumes it here.
    assert value(queued, "arena_queue_depth", queue=test_queue) == 2
    assert value(queued, "arena_battles", status="generating") == (
        value(before, "arena_battles", status="generating") + 1
    )
    left, right = battle.model_left.key, battle.model_right.key
    assert (
        value(queued, "arena_generations_unfinished", model=left, status="queued", purpose="battle")
        == 1
    )

    _purge(test_queue)
    finish_battle(battle)
    services.cast_vote(battle=battle, choice="left", voter="v" * 64)
    leaderboard_services.refresh_all()
    after = scrape(client)

    for key in (left, right):
        assert value(after, "arena_generation_seconds_count", model=key) == (
            value(before, "arena_generation_seconds_count", model=key) + 1
        )
        assert value(after, "arena_generation_queue_wait_seconds_count", model=key) == (
            value(before, "arena_generation_queue_wait_seconds_count", model=key) + 1
        )
        # finish_battle records 5 ms of compute: the first bucket holds it.
        assert value(after, "arena_generation_seconds_bucket", model=key, le="0.1") >= 1
    assert value(after, "arena_votes_total") == value(before, "arena_votes_total") + 1
    assert value(after, "arena_votes_last_minute", counted="true") == (
        value(before, "arena_votes_last_minute", counted="true") + 1
    )
    assert (
        value(after, "arena_battles", status="voted")
        == value(before, "arena_battles", status="voted") + 1
    )
    assert 0 <= value(after, "arena_leaderboard_age_seconds") < 30
    assert value(after, "arena_queue_depth", queue=test_queue) == 0

    failed = services.create_battle(prompt_text="a kite over dunes", owner="o" * 64)
    _purge(test_queue)
    generation_jobs.fail(
        generation_id=failed.generation_left_id,
        error="enqueue failed: test",
        kind=Generation.FailureKind.ENQUEUE,
    )
    broken = scrape(client)
    assert (
        value(
            broken, "arena_generation_failures_total", model=failed.model_left.key, kind="enqueue"
        )
        == value(
            before, "arena_generation_failures_total", model=failed.model_left.key, kind="enqueue"
        )
        + 1
    )
    # Request metrics come from django-prometheus and count the scrapes themselves.
    assert value(broken, "django_http_requests_before_middlewares_total") >= 4


@pytest.mark.django_db
def test_an_excluded_vote_moves_from_counted_to_not_counted(
    models: list[Any], finish_battle: Any, client: Client
) -> None:
    battle = services.create_battle(prompt_text="a red bicycle", owner="o" * 64)
    finish_battle(battle)
    vote = services.cast_vote(battle=battle, choice="tie", voter="v" * 64)
    before = scrape(client)
    from arena.models import Vote

    services.exclude_votes(votes=Vote.objects.filter(pk=vote.pk), reason="test", by="tester")
    after = scrape(client)
    assert (
        value(after, "arena_votes_current", counted="true")
        == value(before, "arena_votes_current", counted="true") - 1
    )
    assert (
        value(after, "arena_votes_current", counted="false")
        == value(before, "arena_votes_current", counted="false") + 1
    )


@pytest.mark.django_db
def test_without_debug_the_endpoint_needs_the_scrapers_token(client: Client, settings: Any) -> None:
    settings.DEBUG = False
    settings.ARENA_METRICS_TOKEN = ""
    assert client.get("/metrics").status_code == 404, "no token configured: never public"
    settings.ARENA_METRICS_TOKEN = TOKEN
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 404
    samples = scrape(client)
    assert ("arena_metrics_part_errors", (("part", "votes"),)) in samples


@pytest.mark.django_db
def test_prometheus_scrapes_by_address_over_plain_http(client: Client, settings: Any) -> None:
    settings.ALLOWED_HOSTS = ["arena.example.org"]
    settings.SECURE_SSL_REDIRECT = True
    response = client.get(
        "/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, HTTP_HOST="10.1.2.3:8000"
    )
    assert response.status_code == 200
    assert client.get("/metrics", HTTP_HOST="10.1.2.3:8000").status_code == 404


@pytest.mark.django_db
def test_a_broken_part_is_reported_and_the_others_still_served(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from arena import metrics

    def broken() -> Any:
        raise RuntimeError("broker down")

    monkeypatch.setitem(metrics.PARTS, "queues", broken)
    samples = scrape(client)
    assert value(samples, "arena_metrics_part_errors", part="queues") == 1
    assert value(samples, "arena_metrics_part_errors", part="votes") == 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.django_db(transaction=True)
def test_request_metrics_add_up_over_every_gunicorn_process(tmp_path: Path) -> None:
    """Two gunicorn workers with PROMETHEUS_MULTIPROC_DIR: a scrape sums what both served."""
    port = free_port()
    multiproc = tmp_path / "prom"
    access = tmp_path / "access.log"
    gunicorn = Path(sys.executable).parent / "gunicorn"
    command = [
        str(gunicorn),
        "arena.wsgi:application",
        "--config",
        str(ROOT / "deploy" / "gunicorn.conf.py"),
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        "2",
        "--access-logfile",
        str(access),
        "--access-logformat",
        "%(p)s %(U)s",
    ]
    env = child_env(
        PROMETHEUS_MULTIPROC_DIR=str(multiproc),
        ARENA_METRICS_TOKEN=TOKEN,
        ARENA_LIMIT_SESSIONS="address=1000000/60",
    )
    with (tmp_path / "gunicorn.log").open("wb") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                get(url + "/api/v1/session")
                break
            except OSError:
                assert time.monotonic() < deadline, (tmp_path / "gunicorn.log").read_text()
                assert process.poll() is None, (tmp_path / "gunicorn.log").read_text()
                time.sleep(0.3)
        before = sessions_served(parse(get(url + "/metrics", token=TOKEN).decode()))
        # Concurrent clients, so both processes serve some of the requests.
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda _: get(url + "/api/v1/session"), range(80)))
        text = get(url + "/metrics", token=TOKEN).decode()
    finally:
        process.terminate()
        process.wait(timeout=20)
    serving = {line.split()[0] for line in access.read_text().splitlines() if "/api/" in line}
    assert len(serving) == 2, f"both processes served requests: {serving}"
    samples = parse(text)
    assert sessions_served(samples) - before == 80
    assert ("arena_votes_total", ()) in samples


def sessions_served(samples: Samples) -> float:
    """GETs of the session call, whatever its route is named (the API is django-ninja's)."""
    return sum(
        count
        for (name, labels), count in samples.items()
        if name == "django_http_requests_total_by_view_transport_method_total"
        and ("method", "GET") in labels
        and any(k == "view" and "session" in v for k, v in labels)
    )


def get(url: str, token: str = "") -> bytes:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 - loopback http
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback http
        return bytes(response.read())


@pytest.mark.django_db
def test_every_series_the_grafana_dashboard_draws_is_exported(
    models: list[Any], finish_battle: Any, client: Client
) -> None:
    import json
    import re

    client.get("/")
    owner = services.identity_hash(client.session.session_key or "")
    battle = services.create_battle(prompt_text="a quiet library", owner=owner)
    client.get(f"/battles/{battle.public_id}/panel")
    finish_battle(battle)
    services.cast_vote(battle=battle, choice="left", voter="v" * 64)
    failed = services.create_battle(prompt_text="a failing job", owner=owner)
    generation_jobs.fail(generation_id=failed.generation_left_id, error="boom")
    pool = generation_jobs.create_generation(
        model=models[0], prompt="a pool image", seed=5, purpose="pool"
    )
    claimed = generation_jobs.claim(generation_id=pool.pk)
    assert claimed is not None
    generation_jobs.finish(
        generation=claimed, data=_png(), compute_ms=5, queue_wait_ms=1, device="cpu"
    )
    leaderboard_services.refresh_all()
    exported = {name for name, _ in scrape(client)}

    dashboard = json.loads((ROOT / "deploy" / "grafana" / "arena-dashboard.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    drawn = {n for e in exprs for n in re.findall(r"\b((?:arena|django)_[a-z_]+)\b", e)}
    assert len(drawn) >= 10
    assert drawn <= exported, drawn - exported
