"""Prometheus metrics: request metrics from django-prometheus, and the arena's own.

The arena's own values live in PostgreSQL and in the broker, which every web process shares, so
they are read at scrape time by one collector (``ArenaCollector``) instead of being counted in
each process: any web process answers a scrape with the same figures, and a worker on another
host needs no exporter of its own. Each part is one function in ``PARTS``; a part that fails is
reported in ``arena_metrics_part_errors`` and the others are still served.

Under gunicorn with several processes, set ``PROMETHEUS_MULTIPROC_DIR`` (deploy/gunicorn.conf.py
clears it at start): the request metrics are then summed over the processes.
"""

from __future__ import annotations

import hmac
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import Count, Q, Sum
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Seconds; generation on a GPU runs from a fifth of a second (turbo) to a minute (large models).
LATENCY_BUCKETS_S = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
QUEUE_WAIT_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
RECENT_VOTES_WINDOW = timedelta(minutes=1)


def _queues() -> list[str]:
    """Every queue a job can be sent to: the models' queues, the sweeper's and the board's."""
    from generation.models import ImageModel

    names = set(ImageModel.objects.filter(retired=False).values_list("queue", flat=True))
    names.update({settings.CELERY_TASK_DEFAULT_QUEUE, settings.LEADERBOARD_QUEUE})
    return sorted(names)


def queue_depth() -> Iterator[Metric]:
    """Messages waiting in each queue, all priorities together (kombu keeps one list each)."""
    from arena.celery import app

    gauge = GaugeMetricFamily(
        "arena_queue_depth", "Messages waiting in a broker queue", labels=["queue"]
    )
    with app.connection_for_read() as connection:
        channel = connection.default_channel
        for queue in _queues():
            gauge.add_metric([queue], float(channel._size(queue)))  # type: ignore[attr-defined]
    yield gauge


def _histogram(
    name: str, documentation: str, field: str, buckets: tuple[float, ...]
) -> HistogramMetricFamily:
    """A cumulative histogram per model over every finished job's ``field`` (milliseconds)."""
    from generation.models import Generation

    counts = {
        f"le_{i}": Count("pk", filter=Q(**{f"{field}__lte": b * 1000}))
        for i, b in enumerate(buckets)
    }
    rows = (
        Generation.objects.filter(
            status=Generation.Status.DONE, cached_from=None, **{f"{field}__isnull": False}
        )
        .values("model__key")
        .annotate(total=Count("pk"), sum_ms=Sum(field), **counts)
        .order_by("model__key")
    )
    family = HistogramMetricFamily(name, documentation, labels=["model"])
    for row in rows:
        counted: dict[str, Any] = dict(row)
        cumulative = [(str(b), float(counted[f"le_{i}"])) for i, b in enumerate(buckets)]
        cumulative.append(("+Inf", float(row["total"])))
        family.add_metric([row["model__key"]], cumulative, (row["sum_ms"] or 0) / 1000)
    return family


def generation_times() -> Iterator[Metric]:
    """Compute time and queue wait of finished jobs, per model (reused images left out)."""
    yield _histogram(
        "arena_generation_seconds",
        "Seconds a finished job computed, per model",
        "compute_ms",
        LATENCY_BUCKETS_S,
    )
    yield _histogram(
        "arena_generation_queue_wait_seconds",
        "Seconds a finished job waited in its queue, per model",
        "queue_wait_ms",
        QUEUE_WAIT_BUCKETS_S,
    )


def jobs() -> Iterator[Metric]:
    """Failed jobs by model and kind, and jobs in flight by model and status."""
    from generation.models import Generation

    failures = CounterMetricFamily(
        "arena_generation_failures", "Failed jobs, per model and kind", labels=["model", "kind"]
    )
    rows = (
        Generation.objects.filter(status=Generation.Status.FAILED)
        .values("model__key", "failure_kind")
        .annotate(n=Count("pk"))
        .order_by("model__key", "failure_kind")
    )
    for row in rows:
        kind = row["failure_kind"] or "unknown"
        failures.add_metric([row["model__key"], kind], float(row["n"]))
    yield failures

    in_flight = GaugeMetricFamily(
        "arena_generations_unfinished",
        "Jobs queued or running, per model, status and purpose",
        labels=["model", "status", "purpose"],
    )
    unfinished = (
        Generation.objects.unfinished()
        .values("model__key", "status", "purpose")
        .annotate(n=Count("pk"))
        .order_by("model__key", "status", "purpose")
    )
    for job in unfinished:
        in_flight.add_metric([job["model__key"], job["status"], job["purpose"]], float(job["n"]))
    yield in_flight


def _counted() -> Q:
    """Votes that count on the anonymous board: anonymous battles, vote not excluded."""
    return Q(excluded=False, battle__anonymous=True)


def votes() -> Iterator[Metric]:
    """Votes in all (a counter), and counted and not counted: in all and in the last minute."""
    from arena.models import Battle, Vote

    since = timezone.now() - RECENT_VOTES_WINDOW
    totals = Vote.objects.aggregate(
        all=Count("pk"),
        counted=Count("pk", filter=_counted()),
        recent_counted=Count("pk", filter=_counted() & Q(created_at__gte=since)),
        recent=Count("pk", filter=Q(created_at__gte=since)),
    )
    yield CounterMetricFamily("arena_votes", "Votes cast", value=float(totals["all"]))
    current = GaugeMetricFamily(
        "arena_votes_current",
        "Votes now, counted on the anonymous board or not (exclusions move them)",
        labels=["counted"],
    )
    current.add_metric(["true"], float(totals["counted"]))
    current.add_metric(["false"], float(totals["all"] - totals["counted"]))
    yield current
    recent = GaugeMetricFamily(
        "arena_votes_last_minute", "Votes cast in the last 60 seconds", labels=["counted"]
    )
    recent.add_metric(["true"], float(totals["recent_counted"]))
    recent.add_metric(["false"], float(totals["recent"] - totals["recent_counted"]))
    yield recent

    battles = GaugeMetricFamily("arena_battles", "Battles per status", labels=["status"])
    by_status = dict(
        Battle.objects.values("status").annotate(n=Count("pk")).values_list("status", "n")
    )
    for status in Battle.Status.values:
        battles.add_metric([status], float(by_status.get(status, 0)))
    yield battles


def board_age() -> Iterator[Metric]:
    """Seconds since the overall anonymous board was last computed (absent before the first)."""
    from leaderboard.models import Snapshot

    board = Snapshot.objects.latest_for("")
    gauge = GaugeMetricFamily(
        "arena_leaderboard_age_seconds", "Seconds since the overall board was computed"
    )
    if board is not None:
        gauge.add_metric([], (timezone.now() - board.created_at).total_seconds())
    yield gauge


def pool_levels() -> Iterator[Metric]:
    """The single-use image pool per drawable model (arena.pool.levels)."""
    from arena import pool

    levels = pool.levels()
    images = GaugeMetricFamily(
        "arena_pool_images",
        "Unused pool images per model: ready, or still being made (pending)",
        labels=["model", "state"],
    )
    empty = GaugeMetricFamily(
        "arena_pool_empty_prompts",
        "Curated prompts with no ready pool image, per model",
        labels=["model"],
    )
    for level in levels.models:
        images.add_metric([level.key, "ready"], float(level.ready))
        images.add_metric([level.key, "pending"], float(level.pending))
        empty.add_metric([level.key], float(level.empty_prompts))
    yield images
    yield empty


# Each part reads one source; add a function here to export more.
PARTS: dict[str, Callable[[], Iterable[Metric]]] = {
    "queues": queue_depth,
    "generation_times": generation_times,
    "jobs": jobs,
    "votes": votes,
    "board": board_age,
    "pool": pool_levels,
}


class ArenaCollector(Collector):
    """The arena's metrics, read from the database and the broker when Prometheus scrapes."""

    def collect(self) -> Iterator[Metric]:
        errors = GaugeMetricFamily(
            "arena_metrics_part_errors",
            "1 when a part of the arena's metrics could not be read in this scrape",
            labels=["part"],
        )
        for part, read in PARTS.items():
            try:
                metrics = list(read())
            except Exception:
                logger.exception("metrics part %s failed", part)
                errors.add_metric([part], 1.0)
                continue
            errors.add_metric([part], 0.0)
            yield from metrics
        yield errors


def render() -> bytes:
    """The exposition text: request metrics (summed over processes if multi-process) + ours."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        processes = CollectorRegistry()
        MultiProcessCollector(processes)
        requests = generate_latest(processes)
    else:
        requests = generate_latest(REGISTRY)
    arena = CollectorRegistry(auto_describe=False)
    arena.register(ArenaCollector())
    return requests + generate_latest(arena)


def authorised(request: HttpRequest) -> bool:
    """The scraper's bearer token when one is configured; with DEBUG off one is required."""
    token = settings.ARENA_METRICS_TOKEN
    if not token:
        return bool(settings.DEBUG)
    sent = request.headers.get("Authorization", "")
    return hmac.compare_digest(sent.encode(), f"Bearer {token}".encode())


class MetricsMiddleware:
    """Answer ``/metrics`` before the Host check and the HTTPS redirect: Prometheus scrapes each
    web process by its address (``10.1.2.3:8000``, ``web:8000``), which is no public host name,
    over plain HTTP inside the cluster. The bearer token is what guards it."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info == "/metrics":
            if request.method != "GET" or not authorised(request):
                return HttpResponse(status=404)
            return HttpResponse(render(), content_type=CONTENT_TYPE)
        return self.get_response(request)
