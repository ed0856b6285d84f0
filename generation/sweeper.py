"""The sweeper: recovers, from the database's truth, jobs whose message or worker was lost.

It runs on beat every ARENA_SWEEP_S. A queued job is sent again only when its message is no
longer in the broker, neither waiting nor reserved by a live worker process: a backlog is not a
loss, and a message still waiting, or taken by a worker that has not claimed its job yet, is
never duplicated.
A running job is sent again when its claim is older than its time limit plus a grace period
(the worker died). Each gets a fresh message until ARENA_MAX_ATTEMPTS; then it fails with the
kind ``attempts``, which never counts against the model.

On Redis a dead worker is noticed sooner when it comes back: a message it had reserved stays in
kombu's ``unacked`` table until the visibility timeout (an hour). When every live worker serving
the message's queue started after the reservation (a restarted node writes its new start time
before it consumes, generation.worker), the reserving process is gone: its job (if that
delivery had claimed it) goes back to queued and the reserved message itself goes back to its
queue, at once; no second message is made. A worker is live while its heartbeat is fresh
(``capacity.STALE_AFTER_BEATS`` intervals, as matchmaking counts it), so a dead node's
reservations come back as soon as a replacement serves the queue, under its old name or a new
one. A reservation whose job already has a message waiting, or that another delivery has
claimed, is dropped instead.
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

from generation.capacity import STALE_AFTER_BEATS
from generation.jobs import enqueue, fail
from generation.models import Generation, WorkerHeartbeat

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
    restored = restore_orphaned_reservations(jobs, now=now) if waiting is None else set()
    requeued.extend(sorted(restored))
    jobs = [j for j in jobs if j.pk not in restored]
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


def restore_orphaned_reservations(jobs: list[Generation], *, now: datetime) -> set[int]:
    """Give back to their queues the Redis reservations of worker processes that are gone (see
    the module's docstring); returns the jobs whose message went back. Any error leaves
    everything to the slower paths."""
    from celery import current_app as app

    if not str(app.conf.broker_url).startswith("redis"):
        return set()
    by_pk = {j.pk: j for j in jobs}
    queues = {j.model.queue for j in jobs}
    if not queues:
        return set()
    # A node whose heartbeat stopped is dead: what it reserved is lost whatever it was called.
    fresh = now - timedelta(seconds=STALE_AFTER_BEATS * settings.ARENA_WORKER_HEARTBEAT_S)
    live = WorkerHeartbeat.objects.filter(seen_at__gte=fresh)
    starts: dict[str, list[datetime | None]] = {}
    for queues_served, started_at in live.values_list("queues", "started_at"):
        for queue in queues_served or []:
            starts.setdefault(queue, []).append(started_at)
    restored: set[int] = set()
    try:
        with app.connection_for_read() as connection:
            channel: Any = connection.default_channel
            client = channel.client
            scores = dict(client.zrange(channel.unacked_index_key, 0, -1, withscores=True))
            if not scores:
                return set()
            entries = client.hmget(channel.unacked_key, list(scores))
            waiting: set[int] | None = None
            for tag, entry in zip(scores, entries, strict=True):
                if entry is None:
                    continue
                message, _exchange, routing_key = json.loads(entry)
                job = by_pk.get(_generation_id(json.dumps(message).encode()) or 0)
                reserved_at = datetime.fromtimestamp(scores[tag], tz=now.tzinfo)
                if job is None or not _reserver_gone(starts.get(routing_key, []), reserved_at):
                    continue
                if waiting is None:
                    waiting = {
                        pk
                        for pk in map(_generation_id, _redis_messages(channel, queues, 0))
                        if pk is not None
                    }
                task_id = message.get("headers", {}).get("id", "")
                if job.pk in waiting or job.pk in restored or not _take_back(job, task_id, now):
                    # Another message of the job waits, or another delivery has it: a copy.
                    channel.qos._remove_from_indices(tag).execute()
                    logger.warning("sweeper dropped a dead worker's copy of generation %s", job.pk)
                    continue
                channel.qos.restore_by_tag(tag)
                restored.add(job.pk)
    except Exception:
        logger.exception("sweeper could not restore dead workers' reservations")
    if restored:
        logger.warning("sweeper gave back dead workers' reservations of %s", sorted(restored))
    return restored


def _reserver_gone(starts: list[datetime | None], reserved_at: datetime) -> bool:
    """Whether no live worker serving the queue can hold a message reserved at ``reserved_at``:
    there is one, and each started after it (a worker without a start time may hold anything)."""
    return bool(starts) and all(s is not None and s > reserved_at for s in starts)


def _take_back(job: Generation, task_id: str, now: datetime) -> bool:
    """Make the job queued again if the dead delivery ``task_id`` is what holds it."""
    if job.status == Generation.Status.QUEUED:
        return True
    if not task_id or job.claimed_by != task_id:
        return False
    return bool(
        Generation.objects.filter(
            pk=job.pk, status=job.status, claimed_by=task_id, started_at=job.started_at
        ).update(status=Generation.Status.QUEUED, queued_at=now, steps_done=0, claimed_by="")
    )


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
                raw = _filesystem_messages(
                    Path(channel.data_folder_in), queues, Path(channel.claim_folder), max_age_s
                )
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


def _filesystem_messages(
    folder: Path, queues: set[str], claims: Path, max_age_s: float
) -> list[bytes]:
    """Every message in the queue folder, then the reservations: messages a live worker process
    took less than ``max_age_s`` ago and has not acknowledged yet (arena.broker keeps each in
    the claim folder under the taker's process id). Read in that order, a message taken while
    the queue folder is read is found in the claim folder."""
    found: list[bytes] = []
    wanted = {f"{queue}.msg" for queue in queues}
    for name in os.listdir(folder):
        if name.partition(".")[2] in wanted:
            try:
                found.append((folder / name).read_bytes())
            except OSError:  # taken by a worker meanwhile: it is in the claim folder now
                continue
    try:
        held = os.listdir(claims)
    except FileNotFoundError:
        return found
    oldest = time.time() - max_age_s
    for claimed in held:
        pid, _, name = claimed.partition("-")
        if name.partition(".")[2] not in wanted or not pid.isdigit() or not _alive(int(pid)):
            continue
        try:
            taken = (claims / claimed).stat()  # renamed (ctime) and touched (mtime) when taken
            if max(taken.st_mtime, taken.st_ctime) >= oldest:
                found.append((claims / claimed).read_bytes())
        except OSError:  # acknowledged meanwhile
            continue
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


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
