"""The leaderboard's public reads in the JSON API: boards, models, rating history, statistics.

Lists are paginated with ``?page=`` (from 1) and ``?page_size=`` (at most 200) and answer
``{"count", "next", "previous", "results"}``, ``next`` and ``previous`` being full URLs or null.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.core.cache import cache
from django.db.models import Count
from django.db.models.functions import TruncDate
from django.http import HttpRequest
from django.utils import timezone
from ninja import Query, Router, Schema
from pydantic import Field

from arena.api import ApiError, read
from arena.models import Battle, Category, Vote
from arena.schemas import Error
from generation.models import ImageModel
from leaderboard import exports, policy, schemas
from leaderboard.models import Snapshot, SnapshotRow

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
DEFAULT_DAYS = 30
MAX_DAYS = 366
STATS_CACHE_S = 60  # the statistics scan every vote: a public endpoint computes them once a minute
# The largest id PostgreSQL's bigint holds; a larger one names no snapshot.
MAX_ID = 2**63 - 1

router = Router(tags=["leaderboard"])


class Paging(Schema):
    page: int = Field(1, ge=1, le=10**9)
    page_size: int = Field(DEFAULT_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE)


class BoardQuery(Schema):
    category: str = Field("", description="'overall' (or empty) or a category")
    snapshot: int | None = Field(
        None, ge=1, le=MAX_ID, description="A snapshot id: that board, whatever its category"
    )


class StatsQuery(Schema):
    days: int = Field(DEFAULT_DAYS, ge=1, le=MAX_DAYS)


def _page(
    request: HttpRequest, paging: Paging, *, count: int, results: Callable[[int, int], list[Any]]
) -> dict[str, Any]:
    """One page of a list: ``results(offset, limit)`` gives its items."""
    page, size = paging.page, paging.page_size
    offset = (page - 1) * size
    if page > 1 and offset >= count:
        raise ApiError(404, "bad_page", f"page {page} is past the last page")

    def link(number: int) -> str:
        query = request.GET.copy()
        query["page"] = str(number)
        return request.build_absolute_uri(f"{request.path}?{query.urlencode()}")

    return {
        "count": count,
        "next": link(page + 1) if offset + size < count else None,
        "previous": link(page - 1) if page > 1 else None,
        "results": results(offset, size),
    }


def _number(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _current(versions: list[ImageModel]) -> ImageModel:
    """The version battles use now: the newest one not retired, else the newest."""
    return next((m for m in versions if not m.retired), versions[0])


def _describe(versions: list[ImageModel]) -> dict[str, Any]:
    """A model key's public details; ``versions`` newest first."""
    current = _current(versions)
    return {
        "key": current.key,
        "name": current.display_name,
        "organisation": current.organisation,
        "licence": current.licence,
        "in_house": current.is_in_house,
        "current_version": current.version,
        "versions": [
            {
                "version": m.version,
                "name": m.display_name,
                "enabled": m.enabled,
                "retired": m.retired,
                "created_at": m.created_at,
            }
            for m in versions
        ],
    }


def _versions(keys: list[str]) -> dict[str, list[ImageModel]]:
    grouped: dict[str, list[ImageModel]] = {key: [] for key in keys}
    for model in ImageModel.objects.filter(key__in=keys).order_by("key", "-created_at", "-pk"):
        grouped[model.key].append(model)
    return grouped


@read(
    router,
    "/leaderboard",
    response={200: schemas.Board, 400: Error, 404: Error},
    summary="The latest board, overall or for one category, or a past board by id",
)
def leaderboard(request: HttpRequest, query: Query[BoardQuery]) -> dict[str, Any]:
    category = "" if query.category == "overall" else query.category
    if category and category not in Category.values:
        known = ", ".join(["overall", *Category.values])
        raise ApiError(400, "bad_category", f"category must be one of {known}")
    if query.snapshot is not None:
        # A past board by id; its own category wins over ?category=.
        snapshot = Snapshot.objects.filter(pk=query.snapshot).first()
        if snapshot is None:
            raise ApiError(404, "not_found", "no snapshot has that id")
    else:
        snapshot = Snapshot.objects.latest_for(category)
    if snapshot is None:
        return {"snapshot": None, "rows": []}
    return {"snapshot": exports.provenance(snapshot), "rows": exports.board_rows(snapshot)}


@read(
    router,
    "/models",
    response={200: schemas.ModelPage, 400: Error, 404: Error},
    summary="Every model key, with its versions; paginated",
)
def models(request: HttpRequest, paging: Query[Paging]) -> dict[str, Any]:
    keys = ImageModel.objects.order_by("key").values_list("key", flat=True).distinct()

    def results(offset: int, limit: int) -> list[dict[str, Any]]:
        page_keys = list(keys[offset : offset + limit])
        return [_describe(versions) for versions in _versions(page_keys).values()]

    return _page(request, paging, count=keys.count(), results=results)


def _model_versions(key: str) -> list[ImageModel]:
    versions = _versions([key])[key]
    if not versions:
        raise ApiError(404, "not_found", f"no model has the key {key!r}")
    return versions


@read(
    router,
    "/models/{slug:key}",
    response={200: schemas.ModelDetail, 404: Error},
    summary="A model's details and its row on the latest overall board",
)
def model(request: HttpRequest, key: str) -> dict[str, Any]:
    versions = _model_versions(key)
    snapshot = Snapshot.objects.latest_for("")
    rows = exports.board_rows(snapshot) if snapshot else []
    on_board = {row["version"]: row for row in rows if row["key"] == key}
    rating = next((on_board[m.version] for m in versions if m.version in on_board), None)
    return {
        **_describe(versions),
        "rating": rating,
        "snapshot": exports.provenance(snapshot) if rating and snapshot else None,
    }


@read(
    router,
    "/models/{slug:key}/history",
    response={200: schemas.HistoryPage, 400: Error, 404: Error},
    summary="A model's overall rating and interval at each snapshot, newest first; paginated",
)
def model_history(request: HttpRequest, key: str, paging: Query[Paging]) -> dict[str, Any]:
    _model_versions(key)
    rows = SnapshotRow.objects.filter(
        model__key=key, snapshot__category="", snapshot__all_votes=False
    ).order_by("-snapshot__created_at", "-snapshot_id")

    def results(offset: int, limit: int) -> list[dict[str, Any]]:
        fields = "snapshot_id snapshot__created_at model__version rank votes rating lower upper"
        return [
            {
                "snapshot_id": row["snapshot_id"],
                "created_at": row["snapshot__created_at"],
                "version": row["model__version"],
                "rank": row["rank"],
                "rating": _number(row["rating"]),
                "lower": _number(row["lower"]),
                "upper": _number(row["upper"]),
                "votes": row["votes"],
                "provisional": row["provisional"],
            }
            for row in rows.values(*fields.split(), "provisional")[offset : offset + limit]
        ]

    return _page(request, paging, count=rows.count(), results=results)


@read(
    router,
    "/sampling-policy",
    response={200: schemas.SamplingPolicy},
    summary="Matchmaking's weights, boost and uncertainty share, and each model's actual share",
)
def sampling_policy(request: HttpRequest) -> dict[str, Any]:
    return policy_answer()


def policy_answer() -> dict[str, Any]:
    """The published policy as plain data (leaderboard.policy.published), for API and page."""
    from arena.services import match_weights

    models = list(ImageModel.objects.enabled().filter(retired=False).order_by("key"))
    return policy.published(models=models, weights=match_weights(models))


@read(
    router,
    "/stats",
    response={200: schemas.Stats, 400: Error},
    summary="Votes per day, share of ties and of both bad, voided battles",
)
def stats(request: HttpRequest, query: Query[StatsQuery]) -> dict[str, Any]:
    key = f"leaderboard-api-stats:{query.days}"
    data = cache.get(key)
    if data is None:
        data = vote_stats(days=query.days)
        cache.set(key, data, timeout=STATS_CACHE_S)
    return data


def _outcomes(votes: int, ties: int, both_bad: int) -> dict[str, Any]:
    return {
        "votes": votes,
        "tie_share": ties / votes if votes else None,
        "both_bad_share": both_bad / votes if votes else None,
    }


def vote_stats(*, days: int) -> dict[str, Any]:
    """Counted votes per UTC day for the last ``days`` days, the share of ties and of "both
    bad" overall and per category, and totals. Counted: anonymous and not excluded."""
    counted = Vote.objects.filter(battle__anonymous=True, excluded=False)
    today = timezone.now().date()
    first = today - timedelta(days=days - 1)
    per_day = dict(
        counted.filter(created_at__date__gte=first)
        .annotate(day=TruncDate("created_at"))
        .order_by()
        .values("day")
        .annotate(n=Count("pk"))
        .values_list("day", "n")
    )
    # Every stored anonymous vote per day, counted or not: the share counted is published.
    stored_per_day = dict(
        Vote.objects.filter(battle__anonymous=True, created_at__date__gte=first)
        .annotate(day=TruncDate("created_at"))
        .order_by()
        .values("day")
        .annotate(n=Count("pk"))
        .values_list("day", "n")
    )
    tally: dict[str, dict[str, int]] = {}
    for category, choice, n in (
        counted.order_by()
        .values("battle__category", "choice")
        .annotate(n=Count("pk"))
        .values_list("battle__category", "choice", "n")
    ):
        tally.setdefault(category, {}).setdefault(choice, 0)
        tally[category][choice] += n
    by_category = {
        category: _outcomes(
            sum(choices.values()),
            choices.get("tie", 0),
            choices.get("both_bad", 0),
        )
        for category, choices in sorted(tally.items())
    }
    total = sum(c["votes"] for c in by_category.values())
    return {
        "days": days,
        "votes_per_day": [
            {
                "date": day.isoformat(),
                "votes": per_day.get(day, 0),
                "stored_votes": stored_per_day.get(day, 0),
                "counted_share": (
                    per_day.get(day, 0) / stored_per_day[day] if stored_per_day.get(day) else None
                ),
            }
            for day in (first + timedelta(days=i) for i in range(days))
        ],
        "total_votes": Vote.objects.count(),
        "counted_votes": total,
        "excluded_votes": Vote.objects.filter(excluded=True).count(),
        "battles_voided": Battle.objects.filter(status=Battle.Status.VOID).count(),
        "pool": _pool_totals(),
        "outcomes": {
            "overall": _outcomes(
                total,
                sum(c.get("tie", 0) for c in tally.values()),
                sum(c.get("both_bad", 0) for c in tally.values()),
            ),
            "categories": by_category,
        },
    }


def _pool_totals() -> dict[str, int]:
    """The battle image pool's totals; per-model levels stay in the admin, since which model
    runs dry would hint at which models an instant battle cannot hold."""
    from arena import pool

    levels = pool.levels()
    return {
        "per_pair": levels.per_pair,
        "prompts": levels.prompts,
        "models": len(levels.models),
        "ready": levels.ready,
        "pending": levels.pending,
        "empty_pairs": levels.empty_pairs,
    }
