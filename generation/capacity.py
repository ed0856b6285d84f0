"""Which queues have a live, warm worker, and how long a new battle job would wait on each.

Read from the database: the workers' heartbeats (``generation.worker``) and the unfinished jobs.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Avg, Count
from django.utils import timezone

from generation.models import Generation, ImageModel, WorkerHeartbeat

# A heartbeat this many intervals old belongs to a dead worker.
STALE_AFTER_BEATS = 3
# Recent jobs per model that estimate its compute time.
RECENT_JOBS = 20
# Assumed compute time of a model with no finished job yet.
UNKNOWN_COMPUTE_S = 10.0


def serving_workers(*, now: datetime | None = None) -> dict[str, int]:
    """Queue name -> number of live workers with at least one warm child on it.

    A worker whose one child of several is being replaced still serves its queue (it is not
    "ready" for its own probe until every child is warm again, but it takes jobs).
    """
    now = now or timezone.now()
    fresh = now - timedelta(seconds=STALE_AFTER_BEATS * settings.ARENA_WORKER_HEARTBEAT_S)
    live = WorkerHeartbeat.objects.filter(warm_children__gt=0, seen_at__gte=fresh)
    counts: dict[str, int] = {}
    for queues in live.values_list("queues", flat=True):
        for queue in queues:
            counts[queue] = counts.get(queue, 0) + 1
    return counts


def expected_waits(*, models: list[ImageModel], workers: dict[str, int]) -> dict[int, float]:
    """Model id -> seconds a battle job sent now would wait before it starts.

    Battle jobs go first (broker priority), so only the battle jobs already queued on the same
    queue and the jobs running there are ahead; each costs its model's recent mean compute time,
    shared among the queue's serving workers.
    """
    queues = {m.queue for m in models}
    mean_s: dict[int, float] = {}
    for model_id in ImageModel.objects.filter(queue__in=queues).values_list("pk", flat=True):
        recent = Generation.objects.filter(
            model_id=model_id, status=Generation.Status.DONE, cached_from=None
        ).order_by("-finished_at")[:RECENT_JOBS]
        mean_ms = Generation.objects.filter(pk__in=recent.values("pk")).aggregate(
            mean=Avg("compute_ms")
        )["mean"]
        mean_s[model_id] = mean_ms / 1000 if mean_ms is not None else UNKNOWN_COMPUTE_S
    ahead = (
        Generation.objects.filter(model__queue__in=queues)
        .filter(
            status__in=[Generation.Status.QUEUED, Generation.Status.RUNNING],
        )
        .exclude(status=Generation.Status.QUEUED, purpose__in=_behind_battles())
        .values("model_id", "model__queue")
        .annotate(n=Count("pk"))
    )
    work_s: dict[str, float] = {}
    for row in ahead:
        queue = row["model__queue"]
        work_s[queue] = work_s.get(queue, 0.0) + row["n"] * mean_s.get(row["model_id"], 0.0)
    return {m.pk: work_s.get(m.queue, 0.0) / max(workers.get(m.queue, 0), 1) for m in models}


def _behind_battles() -> list[str]:
    return [Generation.Purpose.CHAT, Generation.Purpose.POOL]
