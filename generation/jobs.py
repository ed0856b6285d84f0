"""Generation jobs and their states: create (or reuse), enqueue on commit, claim, finish, fail.

Running a claimed job in a worker is ``generation.runner``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import socket
import unicodedata
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import InterfaceError, OperationalError, transaction
from django.db.models import F, Q
from django.dispatch import Signal
from django.utils import timezone

from generation import images
from generation.models import MODEL_FAULTS, Generation, ImageModel

logger = logging.getLogger(__name__)

# Sent after a job reaches done or failed, with ``generation``; the arena listens to finish
# battles, so this app never imports the arena.
generation_finished = Signal()


def cache_key(
    *,
    model: ImageModel,
    prompt: str,
    negative_prompt: str,
    seed: int,
    steps: int,
    guidance: float,
    width: int,
    height: int,
    source_sha256: str = "",
    strength: float | None = None,
) -> str:
    """The content address of an image: everything that decides its pixels, hashed."""
    parts = {
        "model": model.key,
        "version": model.version,
        "prompt": " ".join(unicodedata.normalize("NFC", prompt).split()),
        "negative": " ".join(unicodedata.normalize("NFC", negative_prompt).split()),
        "seed": seed,
        "steps": steps,
        "guidance": round(guidance, 4),
        "size": [width, height],
        "scheduler": model.scheduler,
    }
    if source_sha256:
        parts["source"] = source_sha256
        parts["strength"] = strength
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def create_generation(
    *,
    model: ImageModel,
    prompt: str,
    seed: int,
    negative_prompt: str = "",
    steps: int | None = None,
    guidance: float | None = None,
    output_size: tuple[int, int] | None = None,
    size: tuple[int, int] | None = None,
    source_image: Generation | None = None,
    strength: float | None = None,
    use_cache: bool = True,
    purpose: str = Generation.Purpose.BATTLE,
) -> Generation:
    """A job for ``model``: already done when the same image exists, else queued (then call
    ``enqueue`` inside the same transaction; it does nothing for a finished job).

    Only direct chat and compare reuse images, and only each other's: a battle or pool image
    is never served from the cache, and never serves anything else from it, because a battle's
    pixels must belong to that battle alone.
    """
    steps = steps or model.default_steps
    guidance = model.default_guidance if guidance is None else guidance
    width, height = size or (model.width, model.height)
    decides_pixels: dict[str, Any] = {
        "model": model,
        "prompt": prompt,
        "negative_prompt": negative_prompt,
        "seed": seed,
        "steps": steps,
        "guidance": guidance,
        "width": width,
        "height": height,
    }
    key = cache_key(
        **decides_pixels,
        source_sha256=source_image.image_sha256 if source_image else "",
        strength=strength,
    )
    generation = Generation(
        **decides_pixels,
        output_width=output_size[0] if output_size else width,
        output_height=output_size[1] if output_size else height,
        source_image=source_image,
        strength=strength,
        model_version=model.version,
        # Battle and pool jobs get no content address: nothing may ever find them by it.
        cache_key=key if purpose == Generation.Purpose.CHAT else "",
        purpose=purpose,
    )
    source = None
    if use_cache and purpose == Generation.Purpose.CHAT:
        source = (
            Generation.objects.filter(
                cache_key=key,
                purpose=Generation.Purpose.CHAT,
                status=Generation.Status.DONE,
                cached_from=None,
                # Stored at the size it was made, so the copy is not a resampled resample.
                output_width=width,
                output_height=height,
            )
            .order_by("pk")
            .first()
        )
    if source is not None and source.image:
        _reuse(generation, source)
    generation.save()
    return generation


def _reuse(generation: Generation, source: Generation) -> None:
    """Fill a new chat job from a finished chat one: a fresh copy of the image under a new
    random name, re-encoded at this job's output size, so two turns never share a file."""
    from PIL import Image

    if {generation.purpose, source.purpose} != {Generation.Purpose.CHAT}:
        raise ValueError("only chat and compare images are ever reused")
    with source.image.open("rb") as handle:
        image = Image.open(handle)
        image.load()
    data = images.encode_png(image, width=generation.output_width, height=generation.output_height)
    stored = source.image.storage.save(f"images/{images.random_image_name()}", ContentFile(data))
    now = timezone.now()
    generation.status = Generation.Status.DONE
    generation.image = stored
    generation.image_sha256 = images.sha256(data)
    generation.steps_done = generation.steps
    generation.cached_from = source
    generation.scheduler = source.scheduler
    generation.device = source.device
    generation.hardware = source.hardware
    generation.worker_host = source.worker_host
    generation.started_at = generation.finished_at = now
    generation.compute_ms = generation.queue_wait_ms = 0


# Broker priority per purpose. On Redis, 0 is served first, and kombu keeps one list per step
# of CELERY_BROKER_TRANSPORT_OPTIONS["priority_steps"] and pops them in order: a live battle
# never waits behind chat, nor chat behind a pool refill (README: "Priorities").
PRIORITY = {
    Generation.Purpose.BATTLE: 0,
    Generation.Purpose.CHAT: 3,
    Generation.Purpose.POOL: 9,
}

# Errors that say the database is unreachable right now (a restart, a blip): the task retries
# them with backoff instead of failing the job.
DATABASE_UNREACHABLE = (OperationalError, InterfaceError)


def enqueue(generation: Generation) -> None:
    """Send the job to its model's queue once the surrounding transaction commits."""
    if generation.status != Generation.Status.QUEUED:
        return
    model = generation.model

    def send() -> None:
        from generation.tasks import generate

        try:
            generate.apply_async(
                args=(generation.pk,),
                queue=model.queue,
                priority=PRIORITY[Generation.Purpose(generation.purpose)],
                soft_time_limit=model.timeout_s,
                time_limit=model.timeout_s + 15,
            )
        except Exception as exc:  # the broker is down or refused the message
            logger.exception("could not enqueue generation %s", generation.pk)
            fail(
                generation_id=generation.pk,
                error=f"enqueue failed: {exc!r}",
                kind=Generation.FailureKind.ENQUEUE,
            )

    transaction.on_commit(send)


def claim(*, generation_id: int, task_id: str = "") -> Generation | None:
    """Take the job for this worker, or None if another delivery already has it or it is over.

    A conditional UPDATE decides, so a task delivered twice runs once; a job whose claim is
    older than its time limit plus a grace period may be taken over (its worker died). The
    delivery that claimed a job (``task_id``) may take it back at once: that is its own retry
    after a database blip, and it costs no attempt.
    """
    timeouts = Generation.objects.filter(pk=generation_id).values_list("model__timeout_s")
    timeout_s = timeouts.first()
    if timeout_s is None:
        return None
    now = timezone.now()
    jobs = Generation.objects.filter(pk=generation_id)
    if task_id:
        retaken = jobs.filter(status=Generation.Status.RUNNING, claimed_by=task_id).update(
            started_at=now, steps_done=0
        )
        if retaken == 1:
            return Generation.objects.select_related("model").get(pk=generation_id)
    stale_before = now - timedelta(seconds=timeout_s[0] + settings.ARENA_CLAIM_GRACE_S)
    claimable = jobs.filter(
        Q(status=Generation.Status.QUEUED)
        | Q(status=Generation.Status.RUNNING, started_at__lt=stale_before)
    )
    taken = claimable.filter(attempts__lt=settings.ARENA_MAX_ATTEMPTS).update(
        status=Generation.Status.RUNNING,
        started_at=now,
        steps_done=0,
        attempts=F("attempts") + 1,
        claimed_by=task_id,
    )
    if taken != 1:
        if claimable.exists():  # claimable but out of attempts: the database guard ends it here
            fail(
                generation_id=generation_id,
                error="out of attempts",
                kind=Generation.FailureKind.ATTEMPTS,
            )
        return None
    return Generation.objects.select_related("model").get(pk=generation_id)


def finish(
    *,
    generation: Generation,
    data: bytes,
    compute_ms: int,
    queue_wait_ms: int,
    device: str,
    scheduler: str = "",
    hardware: str = "",
) -> None:
    """Store the bytes and mark the job done, unless another delivery finished it first."""
    name = images.random_image_name()
    stored = generation.image.storage.save(f"images/{name}", ContentFile(data))
    with transaction.atomic():
        updated = Generation.objects.filter(
            pk=generation.pk, status=Generation.Status.RUNNING
        ).update(
            status=Generation.Status.DONE,
            image=stored,
            image_sha256=images.sha256(data),
            steps_done=generation.steps,
            finished_at=timezone.now(),
            compute_ms=compute_ms,
            queue_wait_ms=queue_wait_ms,
            worker_host=socket.gethostname(),
            device=device,
            hardware=hardware[:200],
            scheduler=scheduler,
        )
        if updated != 1:
            # Someone else finished or failed it meanwhile: keep theirs, drop our file.
            transaction.on_commit(lambda: generation.image.storage.delete(stored))
            return
        generation.refresh_from_db()
        generation_finished.send(sender=Generation, generation=generation)


def fail(
    *,
    generation_id: int,
    error: str,
    kind: Generation.FailureKind = Generation.FailureKind.MODEL_ERROR,
) -> None:
    """Mark an unfinished job failed, saying why (``kind``); the error text stays internal."""
    with transaction.atomic():
        updated = (
            Generation.objects.unfinished()
            .filter(pk=generation_id)
            .update(
                status=Generation.Status.FAILED,
                error=error[:2000],
                failure_kind=kind,
                finished_at=timezone.now(),
            )
        )
        if updated == 1:
            generation = Generation.objects.get(pk=generation_id)
            if kind in MODEL_FAULTS:
                _disable_if_failing(generation.model_id)
            generation_finished.send(sender=Generation, generation=generation)


def _disable_if_failing(model_id: int) -> None:
    """Take a model out of new battles when its last N jobs that it alone decided (done, or
    failed by its own fault) all failed, saying why."""
    limit = settings.ARENA_DISABLE_AFTER_FAILURES
    recent = list(
        Generation.objects.filter(model_id=model_id)
        .filter(
            Q(status=Generation.Status.DONE)
            | Q(status=Generation.Status.FAILED, failure_kind__in=MODEL_FAULTS)
        )
        .order_by("-finished_at", "-pk")
        .values_list("status", "error")[:limit]
    )
    if len(recent) < limit or any(status == Generation.Status.DONE for status, _ in recent):
        return
    reason = f"disabled automatically after {limit} failed jobs in a row; last: {recent[0][1]}"
    changed = ImageModel.objects.filter(pk=model_id, enabled=True).update(
        enabled=False, disabled_reason=reason[:500]
    )
    if changed:
        logger.error("model %s %s", model_id, reason)


def progress(generation: Generation) -> float:
    """Fraction of this job done, from 0 to 1."""
    if generation.status == Generation.Status.DONE:
        return 1.0
    return min(generation.steps_done / max(generation.steps, 1), 1.0)
