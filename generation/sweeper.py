"""The sweeper: recovers, from the database's truth, jobs whose message or worker was lost.

It runs on beat every ARENA_SWEEP_S. A queued job is sent again only when its message is no
longer in the broker: a backlog is not a loss, and a message still waiting is never duplicated.
A running job is sent again when its claim is older than its time limit plus a grace period
(the worker died). Each gets a fresh message until ARENA_MAX_ATTEMPTS; then it fails with the
kind ``attempts``, which never counts against the model.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.dispatch import Signal
from django.utils import timezone

from generation.jobs import enqueue, fail
from generation.models import Generation

logger = logging.getLogger(__name__)

# Sent at every sweep with ``now``; the arena listens and voids battles past their deadline,
# so reads (status polls) never have to write.
sweeping = Signal()

GENERATE_TASK = "generation.tasks.generate"


@dataclass(frozen=True)
class SweepResult:
    requeued: list[int]
    failed: list[int]


def sweep(*, now: datetime | None = None, waiting: set[int] | None = None) -> SweepResult:
    """Send lost jobs again and fail those out of attempts; returns what it did.

    ``waiting`` is the set of jobs whose message is in the broker; by default the broker is
    asked. When it cannot be asked, queued jobs are left alone (a duplicate is worse than a
    wait: the next sweep asks again).
    """
    now = now or timezone.now()
    requeued: list[int] = []
    failed: list[int] = []
    grace = settings.ARENA_CLAIM_GRACE_S
    jobs = list(Generation.objects.unfinished().select_related("model").order_by("pk"))
    if waiting is None and any(j.status == Generation.Status.QUEUED for j in jobs):
        waiting = messages_in_broker(
            queues={j.model.queue for j in jobs}, max_age_s=_longest_claim_s(jobs)
        )
    for job in jobs:
        if job.status == Generation.Status.QUEUED:
            lost_after = timedelta(seconds=settings.ARENA_LOST_MESSAGE_S)
            if waiting is None or job.pk in waiting or now - job.queued_at < lost_after:
                continue
        else:
            deadline = timedelta(seconds=job.model.timeout_s + grace)
            if job.started_at is None or now - job.started_at < deadline:
                continue
        if job.attempts >= settings.ARENA_MAX_ATTEMPTS:
            fail(
                generation_id=job.pk,
                error=f"gave up after {job.attempts} attempts",
                kind=Generation.FailureKind.ATTEMPTS,
            )
            failed.append(job.pk)
            continue
        with transaction.atomic():
            # Conditional on the state we saw, so a job that moved on meanwhile is left alone.
            reset = Generation.objects.filter(
                pk=job.pk, status=job.status, queued_at=job.queued_at, started_at=job.started_at
            ).update(
                status=Generation.Status.QUEUED,
                queued_at=now,
                steps_done=0,
                claimed_by="",
                # A lost message never reached a worker's claim; count its delivery here.
                attempts=F("attempts") + (1 if job.status == Generation.Status.QUEUED else 0),
            )
            if reset:
                job.refresh_from_db()
                enqueue(job)
                requeued.append(job.pk)
    if requeued or failed:
        logger.warning("sweeper re-queued %s, failed %s", requeued, failed)
    sweeping.send(sender=SweepResult, now=now)
    return SweepResult(requeued=requeued, failed=failed)


def _longest_claim_s(jobs: Iterable[Generation]) -> float:
    return max((j.model.timeout_s for j in jobs), default=0) + settings.ARENA_CLAIM_GRACE_S


def messages_in_broker(*, queues: set[str], max_age_s: float) -> set[int] | None:
    """The jobs whose ``generate`` message waits in one of ``queues``, or is reserved by a
    worker since less than ``max_age_s`` (a dead worker's reservation counts as lost); None
    when the broker cannot be read."""
    from celery import current_app as app

    try:
        with app.connection_for_read() as connection:
            channel: Any = connection.default_channel
            if str(app.conf.broker_url).startswith("filesystem://"):
                raw = _filesystem_messages(Path(channel.data_folder_in), queues)
            else:
                raw = _redis_messages(channel, queues, max_age_s)
            return {job for job in map(_generation_id, raw) if job is not None}
    except Exception:
        logger.exception("sweeper could not read the broker; queued jobs left alone")
        return None


def _redis_messages(channel: Any, queues: set[str], max_age_s: float) -> list[bytes]:
    """Every message in the queues' priority lists, and the recent reservations."""
    client = channel.client
    found: list[bytes] = []
    for queue in queues:
        for priority in channel.priority_steps:
            found.extend(client.lrange(channel._q_for_pri(queue, priority), 0, -1))
    recent = client.zrangebyscore(channel.unacked_index_key, time.time() - max_age_s, "+inf")
    if recent:
        for entry in client.hmget(channel.unacked_key, recent):
            if entry is not None:
                message, _exchange, routing_key = json.loads(entry)
                if routing_key in queues:
                    found.append(json.dumps(message).encode())
    return found


def _filesystem_messages(folder: Path, queues: set[str]) -> list[bytes]:
    found: list[bytes] = []
    wanted = {f"{queue}.msg" for queue in queues}
    for name in os.listdir(folder):
        if name.partition(".")[2] in wanted:
            try:
                found.append((folder / name).read_bytes())
            except OSError:  # taken by a worker meanwhile
                continue
    return found


def _generation_id(raw: bytes) -> int | None:
    """The job a Celery ``generate`` message is for (protocol 2, JSON body)."""
    try:
        message = json.loads(raw)
        if message.get("headers", {}).get("task") != GENERATE_TASK:
            return None
        body = message["body"]
        if message.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
        return int(args[0])
    except (ValueError, KeyError, IndexError, TypeError):
        return None
