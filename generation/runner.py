"""Running a job inside a worker child: claim it, make the image (giving way to live jobs if
it is a pool image), and record it; and warming the pipelines a worker serves.

The job states themselves are ``generation.jobs``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from celery.exceptions import SoftTimeLimitExceeded
from django.db.models import F
from django.utils import timezone

from generation import images
from generation.http_backend import HttpConfigurationError
from generation.jobs import DATABASE_UNREACHABLE, claim, enqueue, fail, finish
from generation.models import Generation, ImageModel

if TYPE_CHECKING:
    from generation.pipelines import PipelineSpec

logger = logging.getLogger(__name__)

HTTP_RETRIES = 2
# Steps of the warm-up run each worker process makes per model at start.
WARM_UP_STEPS = 2
# Progress is written at most this often: enough for a smooth bar, cheap for the database.
PROGRESS_INTERVAL_S = 0.25
# A pool job looks this often for a live job waiting on its queue, and gives way to it.
PREEMPT_LOOK_S = 0.05
# A pool job gives way to live jobs sent at most this long before it started. The broker hands
# out live messages first, so a live job still queued when a pool job starts either is not in
# the broker yet (its transaction is committing: milliseconds) or lost its message (the
# sweeper sends it again, as new); giving way to a lost one would only bounce the pool job.
GIVE_WAY_WINDOW_S = 2.0


class WarmUpError(Exception):
    """A worker cannot serve what it was told to: an unknown model key, or a model that failed
    to load or to run once."""


def run(*, generation_id: int, task_id: str = "") -> None:
    """Claim the job, make the image, store it under a random name, and mark the job done.

    A lost database connection is raised to the caller (the task retries it), never recorded
    as the model's failure. A pool job gives way to a live job waiting on its queue: before it
    starts, and at each step while it runs (see ``_give_way_before_start`` and ``Preempted``).
    """
    if _give_way_before_start(generation_id):
        return
    generation = claim(generation_id=generation_id, task_id=task_id)
    if generation is None:
        logger.info("generation %s already taken or finished; nothing to do", generation_id)
        return
    assert generation.started_at is not None  # set by the claim
    queue_wait_ms = int((generation.started_at - generation.created_at).total_seconds() * 1000)
    last_write = last_look = 0.0
    yields = generation.purpose == Generation.Purpose.POOL
    started_at, window = generation.started_at, timedelta(seconds=GIVE_WAY_WINDOW_S)

    def on_step(done: int) -> None:
        nonlocal last_write, last_look
        now = time.monotonic()
        if yields and now - last_look >= PREEMPT_LOOK_S:
            last_look = now
            if _someone_waits(generation, since=started_at - window):
                raise Preempted
        if now - last_write >= PROGRESS_INTERVAL_S or done == generation.steps:
            last_write = now
            try:
                Generation.objects.filter(
                    pk=generation.pk, status=Generation.Status.RUNNING
                ).update(steps_done=min(done, generation.steps))
            except DATABASE_UNREACHABLE:
                # Progress is only for the bar; the image goes on, and recording it retries.
                logger.warning("progress of generation %s not written", generation.pk)

    started = time.monotonic()
    try:
        image, device, scheduler, hardware = _make_image(generation, on_step=on_step)
        data = images.encode_png(
            image, width=generation.output_width, height=generation.output_height
        )
    except DATABASE_UNREACHABLE:
        raise
    except Preempted:
        _requeue_preempted(generation)
        return
    except SoftTimeLimitExceeded:
        fail(generation_id=generation.pk, error="timed out", kind=Generation.FailureKind.TIMEOUT)
        return
    except HttpConfigurationError as exc:
        # The deployment's fault (a missing secret), never the model's: it does not count
        # towards disabling the model. The message names the model and the variable only.
        logger.error("generation %s: model %s: %s", generation.pk, generation.model.key, exc)
        error = f"configuration of model {generation.model.key}: {exc}"
        fail(generation_id=generation.pk, error=error, kind=Generation.FailureKind.CONFIG)
        return
    except Exception as exc:
        logger.exception("generation %s failed", generation.pk)
        fail(generation_id=generation.pk, error=repr(exc), kind=Generation.FailureKind.MODEL_ERROR)
        return
    compute_ms = int((time.monotonic() - started) * 1000)
    try:
        finish(
            generation=generation,
            data=data,
            compute_ms=compute_ms,
            queue_wait_ms=queue_wait_ms,
            device=device,
            scheduler=scheduler,
            hardware=hardware,
        )
    except DATABASE_UNREACHABLE:
        raise
    except Exception as exc:
        # A job must never stay "running" because its bookkeeping failed.
        logger.exception("could not record generation %s", generation.pk)
        fail(
            generation_id=generation.pk,
            error=f"recording failed: {exc!r}",
            kind=Generation.FailureKind.RECORDING,
        )


class Preempted(Exception):
    """A pool image gives way: a battle or chat job waits on the same queue."""


def _someone_waits(generation: Generation, *, since: datetime) -> bool:
    """Whether a live (battle or chat) job sent at ``since`` or later is queued for this job's
    queue."""
    return Generation.objects.filter(
        status=Generation.Status.QUEUED,
        purpose__in=[Generation.Purpose.BATTLE, Generation.Purpose.CHAT],
        model__queue=generation.model.queue,
        queued_at__gte=since,
    ).exists()


def _give_way_before_start(generation_id: int) -> bool:
    """A queued pool job that finds a live job waiting on its queue goes back to the queue
    unclaimed (no attempt spent, nothing recorded against the model) and returns True.

    Its process then takes the live job: the broker hands out the lowest priority last. The
    worker took the pool message before the live one only because the live job's message was
    not in the broker yet; the pool job's new message goes in behind it.
    """
    job = (
        Generation.objects.filter(
            pk=generation_id, status=Generation.Status.QUEUED, purpose=Generation.Purpose.POOL
        )
        .select_related("model")
        .first()
    )
    if job is None:
        return False
    now = timezone.now()
    if not _someone_waits(job, since=now - timedelta(seconds=GIVE_WAY_WINDOW_S)):
        return False
    # Conditional on the send we hold: of two deliveries of one job, one sends it again.
    if Generation.objects.filter(
        pk=job.pk, status=Generation.Status.QUEUED, queued_at=job.queued_at
    ).update(queued_at=now):
        logger.info("pool generation %s gave way to a live job before it started", job.pk)
        job.queued_at = now
        enqueue(job)
    return True


def _requeue_preempted(generation: Generation) -> None:
    """Put a preempted pool job back in the queue, behind the live job, without spending an
    attempt: the broker priority sends the waiting live job to this process first."""
    requeued = Generation.objects.filter(
        pk=generation.pk, status=Generation.Status.RUNNING, claimed_by=generation.claimed_by
    ).update(
        status=Generation.Status.QUEUED,
        steps_done=0,
        started_at=None,
        claimed_by="",
        attempts=F("attempts") - 1,
        queued_at=timezone.now(),
    )
    if requeued:
        logger.info("pool generation %s gave way to a live job", generation.pk)
        generation.refresh_from_db()
        enqueue(generation)


def _make_image(
    generation: Generation, *, on_step: Callable[[int], None]
) -> tuple[Any, str, str, str]:
    """Run the model's backend; returns the image, the device, the scheduler and the hardware
    (the device by name; empty where an HTTP backend does not say) that made it."""
    model = generation.model
    params: dict[str, Any] = {
        "prompt": generation.prompt,
        "negative_prompt": generation.negative_prompt,
        "seed": generation.seed,
        "steps": generation.steps,
        "guidance": generation.guidance,
        "width": generation.width,
        "height": generation.height,
    }
    if model.backend == ImageModel.Backend.HTTP:
        from generation.http_backend import generate_http, headers_from_env

        # Three tries must fit in the model's time limit; HTTP reports no step progress.
        per_try = max(model.timeout_s / (HTTP_RETRIES + 1), 1.0)
        image = generate_http(
            url=model.source,
            timeout_s=per_try,
            retries=HTTP_RETRIES,
            headers=headers_from_env(model.http_header_env),
            **params,
        )
        return image, "http", "", ""
    from generation import pipelines

    pipe = pipelines.get_pipeline(spec_for(model))
    if generation.source_image_id is not None:
        from PIL import Image

        with generation.source_image.image.open("rb") as handle:  # type: ignore[union-attr]
            params["init_image"] = Image.open(handle).convert("RGB")
        params["strength"] = generation.strength
    image = pipelines.generate(pipe, on_step=on_step, **params)
    return (
        image,
        pipelines.device_name(),
        type(pipe.scheduler).__name__,
        pipelines.hardware_name(),
    )


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
        vae_tiling=model.vae_tiling,
        custom_pipeline=model.custom_pipeline,
    )


def warm(*, keys: list[str] | None) -> list[str]:
    """Load and cache the pipelines of the enabled diffusers models (or only ``keys``), and run
    each once at its own size, so the first real job does not pay for lazy initialisation
    (CUDA kernels, cuDNN autotuning, compilation). Returns the keys warmed.

    Raises WarmUpError for a key no current model has, and for a model that fails to load or
    run: a worker that cannot serve its models must not look ready.
    """
    from django.db import connections

    from generation import pipelines

    current = ImageModel.objects.filter(retired=False)
    if keys is not None:
        unknown = sorted(
            set(keys) - set(current.filter(key__in=keys).values_list("key", flat=True))
        )
        if unknown:
            raise WarmUpError(f"ARENA_WARM_MODELS names unknown model keys: {', '.join(unknown)}")
    models = current.enabled().filter(backend=ImageModel.Backend.DIFFUSERS)
    if keys is not None:
        models = models.filter(key__in=keys)
    warmed: list[str] = []
    for model in models:
        try:
            pipe = pipelines.get_pipeline(spec_for(model))
            pipelines.generate(
                pipe,
                prompt="warm-up",
                negative_prompt="",
                seed=0,
                steps=WARM_UP_STEPS,
                guidance=model.default_guidance,
                width=model.width,
                height=model.height,
            )
        except Exception as exc:
            raise WarmUpError(
                f"model {model.key}@{model.version} failed to warm up: {exc!r}"
            ) from exc
        warmed.append(model.key)
    # The connection opened here belongs to this child; close it so the first task opens its own.
    connections.close_all()
    return warmed
