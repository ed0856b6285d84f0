"""Generation jobs: create, enqueue on commit, claim, run, finish."""

from __future__ import annotations

import logging
import socket
import time
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction
from django.db.models import F, Q
from django.dispatch import Signal
from django.utils import timezone

from generation import images
from generation.models import Generation, ImageModel
from generation.registry import ModelEntry, load_registry

if TYPE_CHECKING:
    from generation.pipelines import PipelineSpec

logger = logging.getLogger(__name__)

# Sent after a job reaches done or failed, with ``generation``; the arena listens to finish
# battles, so this app never imports the arena.
generation_finished = Signal()

# Progress is written at most this often: enough for a smooth bar, cheap for the database.
PROGRESS_INTERVAL_S = 0.25
# Time a worker may hold a claimed job beyond its model's time limit before a new delivery
# of the same task may take it over.
CLAIM_GRACE_S = 30


def sync_models(*, path: Path | None = None) -> tuple[list[ImageModel], list[ImageModel]]:
    """Bring the registry file into the database; returns (created or updated, retired).

    A new version of a key becomes a new row; older versions of it are retired, never
    deleted, because their votes stay in the history.
    """
    entries = load_registry(path or settings.MODEL_REGISTRY, models_dir=settings.MODELS_DIR)
    current: list[ImageModel] = []
    retired: list[ImageModel] = []
    with transaction.atomic():
        for entry in entries:
            model, _ = ImageModel.objects.update_or_create(
                key=entry.key, version=entry.version, defaults=_model_fields(entry)
            )
            current.append(model)
            older = ImageModel.objects.filter(key=entry.key, retired=False).exclude(pk=model.pk)
            retired.extend(older)
            older.update(retired=True, enabled=False, disabled_reason="superseded by a new version")
    return current, retired


def _model_fields(entry: ModelEntry) -> dict[str, object]:
    return {
        "display_name": entry.display_name,
        "organisation": entry.organisation,
        "licence": entry.licence,
        "is_in_house": entry.in_house,
        "backend": entry.backend,
        "pipeline_class": entry.pipeline_class,
        "source": entry.source,
        "revision": entry.revision,
        "dtype": entry.dtype,
        "default_steps": entry.steps,
        "default_guidance": entry.guidance,
        "width": entry.width,
        "height": entry.height,
        "scheduler": entry.scheduler,
        "queue": entry.queue,
        "timeout_s": entry.timeout_s,
        "sampling_weight": entry.sampling_weight,
        "enabled": entry.enabled,
        "retired": False,
    }


def create_generation(
    *,
    model: ImageModel,
    prompt: str,
    seed: int,
    negative_prompt: str = "",
    steps: int | None = None,
    guidance: float | None = None,
    output_size: tuple[int, int] | None = None,
) -> Generation:
    """A queued job for ``model``; call ``enqueue`` inside the same transaction."""
    return Generation.objects.create(
        model=model,
        prompt=prompt,
        negative_prompt=negative_prompt,
        seed=seed,
        steps=steps or model.default_steps,
        guidance=model.default_guidance if guidance is None else guidance,
        width=model.width,
        height=model.height,
        output_width=output_size[0] if output_size else model.width,
        output_height=output_size[1] if output_size else model.height,
    )


def enqueue(generation: Generation) -> None:
    """Send the job to its model's queue once the surrounding transaction commits."""
    model = generation.model

    def send() -> None:
        from generation.tasks import generate

        try:
            generate.apply_async(
                args=(generation.pk,),
                queue=model.queue,
                soft_time_limit=model.timeout_s,
                time_limit=model.timeout_s + 15,
            )
        except Exception as exc:  # the broker is down or refused the message
            logger.exception("could not enqueue generation %s", generation.pk)
            fail(generation_id=generation.pk, error=f"enqueue failed: {exc!r}")

    transaction.on_commit(send)


def claim(*, generation_id: int) -> Generation | None:
    """Take the job for this worker, or None if another delivery already has it or it is over.

    A conditional UPDATE decides, so a task delivered twice runs once; a job whose claim is
    older than its time limit plus a grace period may be taken over (its worker died).
    """
    timeouts = Generation.objects.filter(pk=generation_id).values_list("model__timeout_s")
    timeout_s = timeouts.first()
    if timeout_s is None:
        return None
    now = timezone.now()
    stale_before = now - timedelta(seconds=timeout_s[0] + CLAIM_GRACE_S)
    claimable = Q(status=Generation.Status.QUEUED) | Q(
        status=Generation.Status.RUNNING, started_at__lt=stale_before
    )
    taken = Generation.objects.filter(claimable, pk=generation_id).update(
        status=Generation.Status.RUNNING, started_at=now, steps_done=0, attempts=F("attempts") + 1
    )
    if taken != 1:
        return None
    return Generation.objects.select_related("model").get(pk=generation_id)


def run(*, generation_id: int) -> None:
    """Claim the job, make the image, store it under a random name, and mark the job done."""
    generation = claim(generation_id=generation_id)
    if generation is None:
        logger.info("generation %s already taken or finished; nothing to do", generation_id)
        return
    from generation import pipelines

    model = generation.model
    assert generation.started_at is not None  # set by the claim
    queue_wait_ms = int((generation.started_at - generation.created_at).total_seconds() * 1000)
    last_write = 0.0

    def on_step(done: int) -> None:
        nonlocal last_write
        now = time.monotonic()
        if now - last_write >= PROGRESS_INTERVAL_S or done == generation.steps:
            last_write = now
            Generation.objects.filter(pk=generation.pk, status=Generation.Status.RUNNING).update(
                steps_done=min(done, generation.steps)
            )

    started = time.monotonic()
    try:
        pipe = pipelines.get_pipeline(spec_for(model))
        image = pipelines.generate(
            pipe,
            prompt=generation.prompt,
            negative_prompt=generation.negative_prompt,
            seed=generation.seed,
            steps=generation.steps,
            guidance=generation.guidance,
            width=generation.width,
            height=generation.height,
            on_step=on_step,
        )
        data = images.encode_png(
            image, width=generation.output_width, height=generation.output_height
        )
    except SoftTimeLimitExceeded:
        fail(generation_id=generation.pk, error="timed out")
        return
    except Exception as exc:
        logger.exception("generation %s failed", generation.pk)
        fail(generation_id=generation.pk, error=repr(exc))
        return
    compute_ms = int((time.monotonic() - started) * 1000)
    try:
        finish(
            generation=generation,
            data=data,
            compute_ms=compute_ms,
            queue_wait_ms=queue_wait_ms,
            device=pipelines.device_name(),
        )
    except Exception as exc:
        # A job must never stay "running" because its bookkeeping failed.
        logger.exception("could not record generation %s", generation.pk)
        fail(generation_id=generation.pk, error=f"recording failed: {exc!r}")


def spec_for(model: ImageModel) -> PipelineSpec:
    from generation.pipelines import PipelineSpec

    return PipelineSpec(
        key=model.key,
        version=model.version,
        source=model.source,
        pipeline_class=model.pipeline_class,
        revision=model.revision,
        dtype=model.dtype,
        scheduler=model.scheduler,
    )


def finish(
    *, generation: Generation, data: bytes, compute_ms: int, queue_wait_ms: int, device: str
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
        )
        if updated != 1:
            # Someone else finished or failed it meanwhile: keep theirs, drop our file.
            transaction.on_commit(lambda: generation.image.storage.delete(stored))
            return
        generation.refresh_from_db()
        generation_finished.send(sender=Generation, generation=generation)


def fail(*, generation_id: int, error: str) -> None:
    """Mark an unfinished job failed; the error stays internal."""
    with transaction.atomic():
        updated = (
            Generation.objects.unfinished()
            .filter(pk=generation_id)
            .update(status=Generation.Status.FAILED, error=error[:2000], finished_at=timezone.now())
        )
        if updated == 1:
            generation = Generation.objects.get(pk=generation_id)
            generation_finished.send(sender=Generation, generation=generation)


def progress(generation: Generation) -> float:
    """Fraction of this job done, from 0 to 1."""
    if generation.status == Generation.Status.DONE:
        return 1.0
    return min(generation.steps_done / max(generation.steps, 1), 1.0)


def warm(*, keys: list[str] | None) -> None:
    """Load and cache the pipelines of the enabled diffusers models (or only ``keys``)."""
    from django.db import connections

    from generation import pipelines

    models = ImageModel.objects.enabled().filter(backend=ImageModel.Backend.DIFFUSERS)
    if keys is not None:
        models = models.filter(key__in=keys)
    for model in models:
        try:
            pipelines.get_pipeline(spec_for(model))
        except Exception:
            logger.exception("could not warm %s", model)
    # The connection opened here belongs to this child; close it so the first task opens its own.
    connections.close_all()
