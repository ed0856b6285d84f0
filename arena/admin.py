"""Admin for prompts, battles and votes.

Battles and votes are never edited by hand: a changed choice or side would silently disagree
with the pair counts. They change only through actions that call the services (exclude or
restore votes, which recount and refresh the boards) or a conditional update (void).
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path
from django.utils import timezone

from arena import moderation, pool, services
from arena.models import Battle, BlockedTerm, PoolImage, Prompt, PromptRefusal, Vote, Voter
from generation.admin import RecordAdmin, export_csv_action
from generation.models import ImageModel
from leaderboard import dataset

admin.site.site_header = "Image Arena administration"
admin.site.site_title = "Image Arena admin"


class EitherSideModelFilter(admin.SimpleListFilter):
    """Rows where a model plays either side; subclasses name the two lookups."""

    title = "model"
    parameter_name = "model"
    sides: tuple[str, str] = ("model_left", "model_right")

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(str(model.pk), str(model)) for model in ImageModel.objects.all()]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if not value:
            return queryset
        if not value.isdigit():
            return queryset.none()
        left, right = self.sides
        return queryset.filter(Q(**{left: int(value)}) | Q(**{right: int(value)}))


class BattleModelFilter(EitherSideModelFilter):
    sides = ("model_left", "model_right")


class VoteModelFilter(EitherSideModelFilter):
    sides = ("battle__model_left", "battle__model_right")


@admin.register(Prompt)
class PromptAdmin(admin.ModelAdmin):
    list_display = ("short_text", "category", "curated", "active", "created_at")
    list_filter = ("category", "curated", "active", "created_at")
    list_editable = ("active",)
    search_fields = ("text",)
    date_hierarchy = "created_at"
    readonly_fields = ("created_at",)

    @admin.display(description="prompt", ordering="text")
    def short_text(self, prompt: Prompt) -> str:
        return str(prompt)


BATTLE_CSV_FIELDS = (
    "public_id",
    "status",
    "category",
    "prompt_text",
    "model_left__key",
    "model_left__version",
    "model_right__key",
    "model_right__version",
    "seed",
    "anonymous",
    "void_reason",
    "created_at",
    "ready_at",
)


@admin.register(Battle)
class BattleAdmin(RecordAdmin):
    list_display = (
        "public_id",
        "status",
        "category",
        "model_left",
        "model_right",
        "anonymous",
        "created_at",
    )
    list_filter = ("status", "category", "anonymous", BattleModelFilter, "created_at")
    list_select_related = ("model_left", "model_right")
    search_fields = ("=public_id", "prompt_text", "model_left__key", "model_right__key")
    date_hierarchy = "created_at"
    actions = (
        "void_battles",
        export_csv_action(fields=BATTLE_CSV_FIELDS, name="battles"),
    )

    @admin.action(
        description="Void selected battles (generating or ready only)", permissions=["change"]
    )
    def void_battles(self, request: HttpRequest, queryset: QuerySet[Battle]) -> None:
        voided = services.void_battles(battles=queryset, by=request.user.get_username())
        skipped = queryset.count() - voided
        self.message_user(request, f"Voided {voided} battle(s); {skipped} left as they were.")


class ExcludeVotesForm(forms.Form):
    reason = forms.CharField(
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Kept with each vote; for example the abuse pattern found.",
    )


VOTE_CSV_FIELDS = (
    "id",
    "battle__public_id",
    "battle__category",
    "battle__model_left__key",
    "battle__model_right__key",
    "choice",
    "voter",
    "ms_to_vote",
    "created_at",
    "excluded",
    "standing",
    "excluded_reason",
    "excluded_by",
    "excluded_at",
)


@admin.register(Vote)
class VoteAdmin(RecordAdmin):
    change_list_template = "admin/arena/vote/change_list.html"
    list_display = (
        "battle_id_short",
        "choice",
        "left_model",
        "right_model",
        "category",
        "excluded",
        "standing",
        "ms_to_vote",
        "created_at",
    )
    list_filter = (
        "choice",
        "excluded",
        "standing",
        "battle__category",
        VoteModelFilter,
        "created_at",
    )
    list_select_related = ("battle__model_left", "battle__model_right")
    search_fields = (
        "=battle__public_id",
        "voter",
        "excluded_reason",
        "battle__prompt_text",
        "battle__model_left__key",
        "battle__model_right__key",
    )
    date_hierarchy = "created_at"
    actions = (
        "exclude_votes",
        "restore_votes",
        export_csv_action(fields=VOTE_CSV_FIELDS, name="votes"),
    )

    @admin.display(description="battle", ordering="battle__public_id")
    def battle_id_short(self, vote: Vote) -> str:
        return str(vote.battle.public_id)

    @admin.display(description="left (A)", ordering="battle__model_left__key")
    def left_model(self, vote: Vote) -> str:
        return vote.battle.model_left.display_name

    @admin.display(description="right (B)", ordering="battle__model_right__key")
    def right_model(self, vote: Vote) -> str:
        return vote.battle.model_right.display_name

    @admin.display(description="category", ordering="battle__category")
    def category(self, vote: Vote) -> str:
        return vote.battle.category

    @admin.action(description="Exclude selected votes from the counts…", permissions=["change"])
    def exclude_votes(self, request: HttpRequest, queryset: QuerySet[Vote]) -> HttpResponse | None:
        form = ExcludeVotesForm(request.POST if "confirm" in request.POST else None)
        if form.is_valid():
            changed = services.exclude_votes(
                votes=queryset, reason=form.cleaned_data["reason"], by=request.user.get_username()
            )
            self.message_user(
                request, f"Excluded {changed} vote(s); counts recomputed, boards refresh shortly."
            )
            return None
        select_across = request.POST.get("select_across") == "1"
        context = {
            **self.admin_site.each_context(request),
            "title": "Exclude votes from the counts",
            "opts": self.model._meta,
            "form": form,
            "count": queryset.count(),
            "sample": queryset.select_related("battle__model_left", "battle__model_right")[:20],
            "select_across": select_across,
            "selected": [] if select_across else request.POST.getlist(ACTION_CHECKBOX_NAME),
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/arena/vote/exclude_votes.html", context)

    @admin.action(description="Restore selected excluded votes", permissions=["change"])
    def restore_votes(self, request: HttpRequest, queryset: QuerySet[Vote]) -> None:
        changed = services.restore_votes(votes=queryset, by=request.user.get_username())
        self.message_user(
            request,
            f"Restored {changed} vote(s); counts recomputed, boards refresh shortly. "
            "Gold-battle votes never count and stay as they were.",
        )

    def get_urls(self) -> list[URLPattern]:
        export = path(
            "dataset.<str:fmt>",
            self.admin_site.admin_view(self.export_dataset),
            name="arena_vote_dataset",
        )
        return [export, *super().get_urls()]

    def export_dataset(self, request: HttpRequest, fmt: str) -> StreamingHttpResponse:
        """The whole vote dataset (leaderboard.dataset) as a download; ?excluded=0 leaves out
        the excluded votes."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        if fmt not in dataset.FORMATS:
            raise Http404("no such format")
        # Streamed as it is read, a bounded batch of rows at a time, however many votes there
        # are; the first bytes leave before the last rows are read.
        stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
        response = StreamingHttpResponse(
            dataset.stream_votes(fmt=fmt, include_excluded=request.GET.get("excluded") != "0"),
            content_type=dataset.CONTENT_TYPES[fmt],
        )
        response["Content-Disposition"] = f'attachment; filename="votes-{stamp}.{fmt}"'
        return response


@admin.register(PoolImage)
class PoolImageAdmin(RecordAdmin):
    """The single-use battle image pool; its levels head the list."""

    change_list_template = "admin/arena/poolimage/change_list.html"
    list_display = ("pk", "model", "prompt", "status", "created_at", "taken_at")
    list_filter = (("taken_at", admin.EmptyFieldListFilter), "model", "created_at")
    list_select_related = ("model", "prompt", "generation")
    date_hierarchy = "created_at"

    @admin.display(description="job", ordering="generation__status")
    def status(self, image: PoolImage) -> str:
        return image.generation.status

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        return super().changelist_view(
            request, extra_context={**(extra_context or {}), "pool_levels": pool.levels()}
        )


@admin.register(Voter)
class VoterAdmin(RecordAdmin):
    """Voters, flagged ones first for review; unflagging restores their flagged votes."""

    list_display = (
        "__str__",
        "flagged",
        "flagged_at",
        "vote_count",
        "gold_passed",
        "gold_failed",
        "verified_at",
        "user",
        "created_at",
    )
    list_filter = ("flagged", "created_at")
    search_fields = ("=session", "=address", "user__username")
    readonly_fields = ("evidence",)
    ordering = ("-flagged", "-flagged_at", "-created_at")
    actions = ("unflag",)

    @admin.display(description="votes")
    def vote_count(self, voter: Voter) -> int:
        return voter.votes.count()

    @admin.action(description="Unflag selected voters and restore their flagged votes")
    def unflag(self, request: HttpRequest, queryset: QuerySet[Voter]) -> None:
        voters = list(queryset.filter(flagged=True).values_list("pk", flat=True))
        Voter.objects.filter(pk__in=voters).update(flagged=False, flagged_at=None)
        restored = services.restore_votes(
            votes=Vote.objects.filter(
                voter_record__in=voters, standing=Vote.Standing.VOTER_FLAGGED
            ),
            by=request.user.get_username(),
        )
        self.message_user(
            request, f"Unflagged {len(voters)} voter(s); restored {restored} vote(s)."
        )


@admin.register(BlockedTerm)
class BlockedTermAdmin(admin.ModelAdmin):
    """The prompt blocklist; a change applies to new prompts at once."""

    list_display = ("term", "reason", "active", "created_at")
    list_filter = ("reason", "active")
    list_editable = ("active",)
    search_fields = ("term",)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        moderation.forget_terms()

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        super().delete_model(request, obj)
        moderation.forget_terms()

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        super().delete_queryset(request, queryset)
        moderation.forget_terms()


@admin.register(PromptRefusal)
class PromptRefusalAdmin(RecordAdmin):
    """Refused prompts counted per day and reason (the prompts themselves are not kept)."""

    list_display = ("day", "reason", "count")
    list_filter = ("reason",)
    date_hierarchy = "day"
