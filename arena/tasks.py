"""Celery tasks of the arena: thin shells that call a service."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from arena import pool


@shared_task(ignore_result=True, soft_time_limit=120, time_limit=150)
def refill_pool() -> None:
    """Top up the single-use image pool; its jobs go out at the lowest priority, and only as
    many as ARENA_POOL_REFILL_PENDING per model queue, none while a live battle job waits."""
    pool.refill(per_pair=settings.ARENA_POOL_SIZE, max_pending=settings.ARENA_POOL_REFILL_PENDING)
