"""The registry in the database: bring the registry file into ``ImageModel`` rows, and let
models into new battles or keep them out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet

from generation.models import ImageModel
from generation.registry import (
    ModelEntry,
    RegistryError,
    check_deployable,
    load_registry,
    pipeline_class_name,
)


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
