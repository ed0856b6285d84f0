"""Admin for boards, their rows, the pair and style counts and imported logs, all read-only,
and the board options, the one thing here an admin edits.

Counts change only through votes, exclusions and imports (the services), never by hand. Any
snapshot can be downloaded as CSV, JSON or Parquet from its page or the list.
"""

from __future__ import annotations

import io
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html_join

from arena.admin import EitherSideModelFilter
from generation.admin import RecordAdmin
from leaderboard import exports
from leaderboard.models import (
    STYLE_DIFFERENCES,
    BoardOptions,
    ImportedBattle,
    OnlineElo,
    PairCount,
    Snapshot,
    SnapshotRow,
    StyleCount,
    TieModel,
)

CONTENT_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "json": "application/json",
    "parquet": "application/vnd.apache.parquet",
}


class PairModelFilter(EitherSideModelFilter):
    sides = ("model_a", "model_b")


class CategoryFilter(admin.SimpleListFilter):
    """The board's category, with the overall board (stored as "") named."""

    title = "board"
    parameter_name = "board"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        categories = Snapshot.objects.order_by("category").values_list("category", flat=True)
        return [(value or "overall", value or "overall") for value in categories.distinct()]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if not value:
            return queryset
        return queryset.filter(category="" if value == "overall" else value)


class SnapshotRowInline(admin.TabularInline):
    model = SnapshotRow
    fields = (
        "rank",
        "model",
        "shown_rating",
        "interval",
        "votes",
        "shown_win_rate",
        "shown_online_elo",
        "provisional",
        "component",
    )
    readonly_fields = fields
    ordering = ("rank", "-rating")
    extra = 0
    can_delete = False

    @admin.display(description="rating")
    def shown_rating(self, row: SnapshotRow) -> str:
        return "open" if row.rating is None else f"{row.rating:.1f}"

    @admin.display(description="95% interval")
    def interval(self, row: SnapshotRow) -> str:
        return f"{row.lower:.1f} to {row.upper:.1f}"

    @admin.display(description="win rate")
    def shown_win_rate(self, row: SnapshotRow) -> str:
        return f"{row.win_rate:.3f}"

    @admin.display(description="online Elo")
    def shown_online_elo(self, row: SnapshotRow) -> str:
        return "" if row.online_elo is None else f"{row.online_elo:.1f}"

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Snapshot)
class SnapshotAdmin(RecordAdmin):
    change_form_template = "admin/leaderboard/snapshot/change_form.html"
    list_display = (
        "pk",
        "board",
        "all_votes",
        "created_at",
        "votes_used",
        "interval_method",
        "components",
        "code_version",
        "downloads",
    )
    list_filter = (CategoryFilter, "all_votes", "interval_method", "created_at")
    date_hierarchy = "created_at"
    search_fields = ("=id", "code_version")
    exclude = ("matrices",)  # large; the plots and exports show it
    inlines = (SnapshotRowInline,)

    @admin.display(description="board", ordering="category")
    def board(self, snapshot: Snapshot) -> str:
        return snapshot.category or "overall"

    @admin.display(description="download")
    def downloads(self, snapshot: Snapshot) -> str:
        return format_html_join(
            " ",
            '<a href="{}">{}</a>',
            (
                (reverse("admin:leaderboard_snapshot_export", args=[snapshot.pk, fmt]), fmt)
                for fmt in exports.FORMATS
            ),
        )

    def get_urls(self) -> list[URLPattern]:
        export = path(
            "<int:snapshot_id>/export.<str:fmt>",
            self.admin_site.admin_view(self.export_board),
            name="leaderboard_snapshot_export",
        )
        return [export, *super().get_urls()]

    def export_board(self, request: HttpRequest, snapshot_id: int, fmt: str) -> HttpResponse:
        """One stored board as a CSV, JSON or Parquet download, with its provenance."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        if fmt not in exports.FORMATS:
            raise Http404("no such format")
        snapshot = get_object_or_404(Snapshot, pk=snapshot_id)
        out = io.BytesIO()
        exports.write_board(snapshot=snapshot, fmt=fmt, out=out)
        response = HttpResponse(out.getvalue(), content_type=CONTENT_TYPES[fmt])
        name = f"leaderboard-{snapshot.category or 'overall'}-{snapshot.pk}.{fmt}"
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response


@admin.register(StyleCount)
class StyleCountAdmin(RecordAdmin):
    list_display = (
        "model_left",
        "model_right",
        *STYLE_DIFFERENCES,
        "wins_left",
        "wins_right",
        "ties",
        "both_bad",
        "total",
    )
    list_select_related = ("model_left", "model_right")
    search_fields = ("model_left__key", "model_right__key")


@admin.register(PairCount)
class PairCountAdmin(RecordAdmin):
    list_display = (
        "category",
        "anonymous",
        "model_a",
        "model_b",
        "wins_a",
        "wins_b",
        "ties",
        "both_bad",
        "total",
    )
    list_filter = ("category", "anonymous", PairModelFilter)
    list_select_related = ("model_a", "model_b")
    search_fields = (
        "model_a__key",
        "model_a__display_name",
        "model_b__key",
        "model_b__display_name",
    )


@admin.register(OnlineElo)
class OnlineEloAdmin(RecordAdmin):
    list_display = ("model", "rating", "votes")
    list_select_related = ("model",)
    ordering = ("-rating",)
    search_fields = ("model__key", "model__display_name")


@admin.register(ImportedBattle)
class ImportedBattleAdmin(RecordAdmin):
    list_display = (
        "source",
        "line",
        "model_a",
        "model_b",
        "winner",
        "category",
        "anonymous",
        "tstamp",
        "imported_at",
    )
    list_filter = ("source", "winner", "category", "anonymous", PairModelFilter, "imported_at")
    list_select_related = ("model_a", "model_b")
    search_fields = (
        "source",
        "judge",
        "model_a__key",
        "model_a__display_name",
        "model_b__key",
        "model_b__display_name",
    )
    date_hierarchy = "imported_at"


class BoardOptionsForm(forms.ModelForm):
    # A form sent without a tie model (an older form, a script) keeps the default, half.
    tie_model = forms.ChoiceField(
        choices=TieModel.choices,
        required=False,
        help_text=BoardOptions._meta.get_field("tie_model").help_text,
    )

    class Meta:
        model = BoardOptions
        fields = ("publish_all_votes", "tie_model")

    def clean_tie_model(self) -> str:
        return str(self.cleaned_data.get("tie_model") or TieModel.HALF)


@admin.register(BoardOptions)
class BoardOptionsAdmin(admin.ModelAdmin):
    """One row of switches; until it is saved once, the settings decide."""

    form = BoardOptionsForm
    fields = ("in_force", "publish_all_votes", "tie_model")
    readonly_fields = ("in_force",)
    list_display = ("__str__", "publish_all_votes", "tie_model", "changed_at")

    @admin.display(description="In force now")
    def in_force(self, obj: Any = None) -> str:
        """The value the site uses at this moment, and where it comes from."""
        value = "on" if BoardOptions.all_votes_published() else "off"
        ties = f"tie model: {BoardOptions.tie_model_in_use()}"
        if obj is not None and obj.pk:
            saved = f"{obj.changed_at:%Y-%m-%d %H:%M}"
            return f"All-votes board: {value}; {ties} (saved here on {saved} UTC)"
        return (
            f"All-votes board: {value} (from the LEADERBOARD_ALL_VOTES setting); "
            f"{ties} (the default; not saved yet)"
        )

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        """One row of switches: the list opens the row itself, or the form to save it first,
        so the value in force is always on screen."""
        if BoardOptions.objects.filter(pk=1).exists():
            return redirect(reverse("admin:leaderboard_boardoptions_change", args=[1]))
        if self.has_add_permission(request):
            return redirect(reverse("admin:leaderboard_boardoptions_add"))
        return super().changelist_view(request, extra_context)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return super().has_add_permission(request) and not BoardOptions.objects.exists()

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        return {"publish_all_votes": settings.LEADERBOARD_ALL_VOTES}

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        obj.pk = 1
        super().save_model(request, obj, form, change)
