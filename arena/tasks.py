"""Celery tasks of the arena: thin shells that call a service."""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.core.cache import cache

from arena import integrity, pool, retention

# One refill at a time: two at once would each see room in a queue and overfill it.
REFILL_LOCK = "arena-pool-refill"


@shared_task(ignore_result=True, soft_time_limit=120, time_limit=150)
def refill_pool() -> None:
    """Top up the single-use image pool; its jobs go out at the lowest priority, and only as
    many as ARENA_POOL_REFILL_PENDING per model queue, none while a live battle job waits."""
    if not cache.add(REFILL_LOCK, 1, timeout=120):
        return
    try:
        pool.refill(
            per_pair=settings.ARENA_POOL_SIZE, max_pending=settings.ARENA_POOL_REFILL_PENDING
        )
    finally:
        cache.delete(REFILL_LOCK)


@shared_task(ignore_result=True, soft_time_limit=1800, time_limit=1900)
def prune_images() -> None:
    retention.prune_images(
        unvoted_after=timedelta(days=settings.ARENA_RETENTION_UNVOTED_DAYS),
        chat_after=timedelta(days=settings.ARENA_RETENTION_CHAT_DAYS),
    )


# A scan reads a week of votes once; far below any broker visibility timeout.
SCAN_TIME_LIMIT_S = 600


@shared_task(
    ignore_result=True, soft_time_limit=SCAN_TIME_LIMIT_S - 30, time_limit=SCAN_TIME_LIMIT_S
)
def scan_votes() -> None:
    """Score voters and addresses; flag anomalies and stop counting their votes."""
    integrity.scan()
