"""Admin for the model registry and the image jobs, and the read-only record admin and CSV
export action that the other apps' admins build on.

A model's key and version are its identity (votes and boards point at the row), so they are
read-only; a job's results are what a worker recorded and are never edited.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from django.contrib import admin
from django.db.models import Model, QuerySet
from django.http import HttpRequest, StreamingHttpResponse

from generation import registry_sync
from generation.models import Generation, ImageModel, WorkerHeartbeat
from generation.records import csv_response

ExportAction = Callable[[Any, HttpRequest, QuerySet[Any]], StreamingHttpResponse]


class RecordAdmin(admin.ModelAdmin):
    """A record nobody edits by hand: listed and viewed, changed only by actions."""

    def has_add_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        # Without an object this is the permission the changelist's actions need.
        return obj is None and super().has_change_permission(request)


def export_csv_action(*, fields: Sequence[str], name: str) -> ExportAction:
    """An admin action that downloads the selected rows' ``fields`` as CSV."""

    @admin.action(description="Export selected as CSV")
    def export_selected_csv(
        modeladmin: Any, request: HttpRequest, queryset: QuerySet[Any]
    ) -> StreamingHttpResponse:
        return csv_response(queryset=queryset, fields=fields, name=name)

    return export_selected_csv


MODEL_CSV_FIELDS = (
    "key",
    "version",
    "display_name",
    "organisation",
    "licence",
    "is_in_house",
    "backend",
    "pipeline_class",
    "source",
    "revision",
    "dtype",
    "default_steps",
    "default_guidance",
    "width",
    "height",
    "queue",
    "sampling_weight",
    "enabled",
    "retired",
    "disabled_reason",
    "created_at",
    "updated_at",
)


@admin.register(ImageModel)
class ImageModelAdmin(admin.ModelAdmin):
    list_display = (
        "key",
        "version",
        "display_name",
        "organisation",
        "is_in_house",
        "enabled",
        "retired",
        "sampling_weight",
        "queue",
        "updated_at",
    )
    list_filter = ("enabled", "retired", "is_in_house", "backend", "organisation", "queue")
    search_fields = ("key", "display_name", "organisation")
    # Which code runs and which environment variables a request may carry come from the registry
    # file only: an admin edit must not point a header at another secret.
    readonly_fields = (
        "key",
        "version",
        "custom_pipeline",
        "http_header_env",
        "can_refine",
        "created_at",
        "updated_at",
    )
    actions = (
        "enable_models",
        "disable_models",
        export_csv_action(fields=MODEL_CSV_FIELDS, name="models"),
    )

    def has_delete_permission(self, request: HttpRequest, obj: ImageModel | None = None) -> bool:
        return False  # battles, votes and boards point at the row: disable it instead

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # models come from the registry file (sync_models)

    @admin.action(description="Enable selected models (not retired ones)", permissions=["change"])
    def enable_models(self, request: HttpRequest, queryset: QuerySet[ImageModel]) -> None:
        enabled = registry_sync.set_enabled(
            models=queryset, enabled=True, by=request.user.get_username()
        )
        retired = queryset.filter(retired=True).count()
        note = f"; {retired} retired model(s) left disabled" if retired else ""
        self.message_user(request, f"Enabled {enabled} model(s){note}.")

    @admin.action(description="Disable selected models", permissions=["change"])
    def disable_models(self, request: HttpRequest, queryset: QuerySet[ImageModel]) -> None:
        disabled = registry_sync.set_enabled(
            models=queryset, enabled=False, by=request.user.get_username()
        )
        self.message_user(request, f"Disabled {disabled} model(s); no new battles will use them.")


@admin.register(Generation)
class GenerationAdmin(RecordAdmin):
    list_display = (
        "pk",
        "model",
        "status",
        "failure_kind",
        "purpose",
        "steps",
        "size",
        "attempts",
        "queue_wait_ms",
        "compute_ms",
        "device",
        "created_at",
    )
    list_filter = (
        "status",
        "failure_kind",
        "purpose",
        "model",
        "device",
        "hardware",
        "created_at",
    )
    list_select_related = ("model",)
    search_fields = ("=id", "prompt", "image_sha256", "worker_host", "model__key")
    date_hierarchy = "created_at"

    @admin.display(description="size")
    def size(self, generation: Generation) -> str:
        return f"{generation.width}×{generation.height}"


@admin.register(WorkerHeartbeat)
class WorkerHeartbeatAdmin(RecordAdmin):
    """What each worker reported last: whether all its children are alive and warm."""

    list_display = ("node", "ready", "warm_children", "children", "queues", "seen_at")
    list_filter = ("ready",)
