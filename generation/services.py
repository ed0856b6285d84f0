"""Generation jobs: create, enqueue on commit, claim, run, finish."""

from __future__ import annotations

import hashlib
import json
import logging
import socket
import time
import unicodedata
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.files.base import ContentFile
from django.db import InterfaceError, OperationalError, transaction
from django.db.models import F, Q, QuerySet
from django.dispatch import Signal
from django.utils import timezone

from generation import images
from generation.models import MODEL_FAULTS, Generation, ImageModel
from generation.registry import (
    ModelEntry,
    RegistryError,
    check_deployable,
    load_registry,
    pipeline_class_name,
)

if TYPE_CHECKING:
    from generation.pipelines import PipelineSpec

logger = logging.getLogger(__name__)

# Sent after a job reaches done or failed, with ``generation``; the arena listens to finish
# battles, so this app never imports the arena.
generation_finished = Signal()

HTTP_RETRIES = 2
# Steps of the warm-up run each worker process makes per model at start.
WARM_UP_STEPS = 2
# Progress is written at most this often: enough for a smooth bar, cheap for the database.
PROGRESS_INTERVAL_S = 0.25
# A pool job looks this often for a live job waiting on its queue, and gives way to it.
PREEMPT_LOOK_S = 0.05


def sync_models(*, path: Path | None = None) -> tuple[list[ImageModel], list[ImageModel]]:
    """Bring the registry file into the database; returns (created or updated, retired).

    A new version of a key becomes a new row; older versions of it are retired, never
    deleted, because their votes stay in the history. Nothing is written unless every entry can
    be served: classes exist, hub sources are pinned, local directories hold a pipeline.
    """
    options: dict[str, Any] = settings.CELERY_BROKER_TRANSPORT_OPTIONS
    visibility = int(options.get("visibility_timeout", 3600))
    registry = path or settings.MODEL_REGISTRY
    entries = load_registry(registry, models_dir=settings.MODELS_DIR, max_timeout_s=visibility)
    check_deployable(registry, entries)
    refinable = _check_classes(registry, entries)
    current: list[ImageModel] = []
    retired: list[ImageModel] = []
    with transaction.atomic():
        for entry in entries:
            fields = _model_fields(entry, can_refine=refinable[entry.key, entry.version])
            model, _ = ImageModel.objects.update_or_create(
                key=entry.key, version=entry.version, defaults=fields
            )
            current.append(model)
            older = ImageModel.objects.filter(key=entry.key, retired=False).exclude(pk=model.pk)
            retired.extend(older)
            older.update(retired=True, enabled=False, disabled_reason="superseded by a new version")
    return current, retired


def set_enabled(*, models: QuerySet[ImageModel], enabled: bool, by: str) -> int:
    """Let models into new battles or keep them out (retired ones stay out); returns how many
    changed."""
    if enabled:
        return models.filter(enabled=False, retired=False).update(enabled=True, disabled_reason="")
    return models.filter(enabled=True).update(
        enabled=False, disabled_reason=f"disabled by {by}"[:500]
    )


def _check_classes(registry: Path, entries: list[ModelEntry]) -> dict[tuple[str, str], bool]:
    """Catch a misspelt pipeline, scheduler or custom class here rather than in a worker later;
    returns whether each entry can refine images (diffusers has an image-to-image twin)."""
    from generation import pipelines

    refinable: dict[tuple[str, str], bool] = {}
    for entry in entries:
        for field, name in (
            ("pipeline_class", entry.pipeline_class),
            ("scheduler", entry.scheduler),
        ):
            if name and not pipelines.has_pipeline_class(name):
                raise RegistryError(
                    f"{registry}: model {entry.key}: field '{field}': diffusers has no {name}"
                )
        class_name = pipeline_class_name(entry)
        if entry.custom_pipeline:
            try:
                class_name = pipelines.import_custom_pipeline(entry.custom_pipeline).__name__
            except ValueError as exc:
                raise RegistryError(
                    f"{registry}: model {entry.key}: field 'custom_pipeline': {exc}"
                ) from None
        refinable[entry.key, entry.version] = entry.backend == "diffusers" and pipelines.can_refine(
            class_name
        )
    return refinable


def _model_fields(entry: ModelEntry, *, can_refine: bool) -> dict[str, object]:
    return {
        "display_name": entry.display_name,
        "organisation": entry.organisation,
        "licence": entry.licence,
        "is_in_house": entry.in_house,
        "backend": entry.backend,
        "pipeline_class": entry.pipeline_class,
        "custom_pipeline": entry.custom_pipeline,
        "source": entry.source,
        "revision": entry.revision,
        "dtype": entry.dtype,
        "default_steps": entry.steps,
        "default_guidance": entry.guidance,
        "width": entry.width,
        "height": entry.height,
        "scheduler": entry.scheduler,
        "vae_tiling": entry.vae_tiling,
        "can_refine": can_refine,
        # Names of environment variables only: the secrets stay in the workers' environment.
        "http_header_env": dict(entry.headers_from_env),
        "queue": entry.queue,
        "timeout_s": entry.timeout_s,
        "sampling_weight": entry.sampling_weight,
        "max_steps": entry.max_steps or max(2 * entry.steps, 1),
        "min_guidance": entry.min_guidance,
        "max_guidance": entry.max_guidance or max(2 * entry.guidance, 10.0),
        "sizes": list(entry.sizes),
        "enabled": entry.enabled,
        "retired": False,
    }


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


class WarmUpError(Exception):
    """A worker cannot serve what it was told to: an unknown model key, or a model that failed
    to load or to run once."""


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


def run(*, generation_id: int, task_id: str = "") -> None:
    """Claim the job, make the image, store it under a random name, and mark the job done.

    A lost database connection is raised to the caller (the task retries it), never recorded
    as the model's failure.
    """
    generation = claim(generation_id=generation_id, task_id=task_id)
    if generation is None:
        logger.info("generation %s already taken or finished; nothing to do", generation_id)
        return
    assert generation.started_at is not None  # set by the claim
    queue_wait_ms = int((generation.started_at - generation.created_at).total_seconds() * 1000)
    last_write = last_look = 0.0
    yields = generation.purpose == Generation.Purpose.POOL

    def on_step(done: int) -> None:
        nonlocal last_write, last_look
        now = time.monotonic()
        if yields and now - last_look >= PREEMPT_LOOK_S:
            last_look = now
            if _someone_waits(generation):
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
        image, device, scheduler = _make_image(generation, on_step=on_step)
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


def _someone_waits(generation: Generation) -> bool:
    """Whether a live (battle or chat) job is queued for this job's queue."""
    return Generation.objects.filter(
        status=Generation.Status.QUEUED,
        purpose__in=[Generation.Purpose.BATTLE, Generation.Purpose.CHAT],
        model__queue=generation.model.queue,
    ).exists()


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


def _make_image(generation: Generation, *, on_step: Callable[[int], None]) -> tuple[Any, str, str]:
    """Run the model's backend; returns the image, the device and the scheduler that made it."""
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
        return image, "http", ""
    from generation import pipelines

    pipe = pipelines.get_pipeline(spec_for(model))
    if generation.source_image_id is not None:
        from PIL import Image

        with generation.source_image.image.open("rb") as handle:  # type: ignore[union-attr]
            params["init_image"] = Image.open(handle).convert("RGB")
        params["strength"] = generation.strength
    image = pipelines.generate(pipe, on_step=on_step, **params)
    return image, pipelines.device_name(), type(pipe.scheduler).__name__


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


def finish(
    *,
    generation: Generation,
    data: bytes,
    compute_ms: int,
    queue_wait_ms: int,
    device: str,
    scheduler: str = "",
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
