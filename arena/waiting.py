"""What a voter waiting for a battle is told: one figure for the battle, never one per side.

While a battle generates, each side's job may wait in its model's queue, or its model may not
be loaded by any worker yet. The page shows the larger wait of the two sides (the battle is
ready only when both are), so it says how long, not which model is slow or busy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from django.db.models import Avg, Count, Q

from generation import capacity
from generation.models import Generation


@dataclass(frozen=True)
class Wait:
    """The battle's wait as one figure: jobs ahead of it, seconds expected, models loading."""

    ahead: int = 0
    estimate_s: int | None = None
    loading: bool = False

    @property
    def waiting(self) -> bool:
        return self.loading or self.ahead > 0

    def text(self) -> str:
        """The sentence the page shows; empty when nothing is waiting."""
        parts = []
        if self.loading:
            parts.append(
                "The models are still loading (the first battle after a start waits for this)"
            )
        if self.ahead:
            jobs = "image" if self.ahead == 1 else "images"
            parts.append(f"{self.ahead} {jobs} ahead of this battle in the queue")
        if not parts:
            return ""
        sentence = "; ".join(parts)
        if self.estimate_s is not None:
            sentence += f". About {_duration(self.estimate_s)} to go"
        return sentence[0].upper() + sentence[1:] + "."


def _duration(seconds: int) -> str:
    if seconds < 90:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    minutes = math.ceil(seconds / 60)
    return f"{minutes} minutes"


def _mean_compute_s(model_ids: set[int]) -> dict[int, float]:
    """Each model's mean compute time over its recent fresh images (an assumed one if none)."""
    means: dict[int, float] = {}
    for model_id in model_ids:
        recent = Generation.objects.filter(
            model_id=model_id, status=Generation.Status.DONE, cached_from=None
        ).order_by("-finished_at")[: capacity.RECENT_JOBS]
        mean_ms = Generation.objects.filter(pk__in=recent.values("pk")).aggregate(
            mean=Avg("compute_ms")
        )["mean"]
        means[model_id] = mean_ms / 1000 if mean_ms is not None else capacity.UNKNOWN_COMPUTE_S
    return means


def _side(job: Generation, workers: dict[str, int]) -> Wait:
    """One side's wait: the jobs before it on its queue, and its own compute time."""
    if job.status != Generation.Status.QUEUED:
        return Wait()
    queue = job.model.queue
    before = Q(status=Generation.Status.RUNNING) | Q(status=Generation.Status.QUEUED, pk__lt=job.pk)
    ahead_jobs = Generation.objects.filter(before, model__queue=queue).exclude(pk=job.pk)
    if job.purpose == Generation.Purpose.BATTLE:
        # Battle jobs go first (broker priority): queued chat and pool jobs are not ahead.
        ahead_jobs = ahead_jobs.exclude(
            status=Generation.Status.QUEUED,
            purpose__in=[Generation.Purpose.CHAT, Generation.Purpose.POOL],
        )
    counts = dict(
        ahead_jobs.values("model_id")
        .order_by()
        .annotate(n=Count("pk"))
        .values_list("model_id", "n")
    )
    means = _mean_compute_s(set(counts) | {job.model_id})
    serving = workers.get(queue, 0)
    work_s = sum(n * means[m] for m, n in counts.items()) / max(serving, 1)
    return Wait(
        ahead=sum(counts.values()),
        # While no worker has the model loaded, its start-up time is unknown: no estimate.
        estimate_s=math.ceil(work_s + means[job.model_id]) if serving else None,
        loading=serving == 0,
    )


def battle_wait(left: Generation, right: Generation) -> Wait:
    """The battle's one wait figure: the larger of its two sides."""
    workers = capacity.serving_workers()
    sides = [_side(left, workers), _side(right, workers)]
    loading = any(s.loading for s in sides)
    estimates = [s.estimate_s for s in sides if s.estimate_s is not None]
    return Wait(
        ahead=max(s.ahead for s in sides),
        estimate_s=max(estimates) if estimates and not loading else None,
        loading=loading,
    )
