"""Leaderboard page and its plots (the leaderboard's JSON answers are ``leaderboard.api``)."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.core.cache import cache
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_safe
from pydantic import BaseModel, Field, ValidationError

from arena import personal
from arena.categories import LABELS
from arena.models import Category
from arena.schemas import MAX_ID, OptionalInt, Text
from generation.models import ImageModel
from leaderboard import plots, profiles, speed
from leaderboard.models import BoardOptions, Snapshot, SnapshotRow

PLOT_KINDS = ("ratings", "win_rate", "battles")
# A board's rating-over-time plot: drawn from the stored boards of its kind up to it.
HISTORY_KIND = "history"
# Lines in a board's history plot: its best-ranked models.
HISTORY_MODELS = 10
# A model's history plot shows at most this many snapshots per version (evenly spread).
HISTORY_POINTS = 400
# Past boards offered in the page's picker.
PAST_BOARDS = 50


class BoardPageQuery(BaseModel):
    """The board page's query: ``?category=``, ``?snapshot=<id>`` and ``?votes=all``."""

    category: Text = ""
    snapshot: OptionalInt = Field(None, ge=1, le=MAX_ID)
    votes: Text = ""


def _query(request: HttpRequest) -> BoardPageQuery:
    """The parsed query; a value that does not parse names no board, so it is a 404."""
    try:
        return BoardPageQuery.model_validate(request.GET.dict())
    except ValidationError:
        raise Http404("no such board") from None


def _category(value: str) -> str:
    """The requested board: "" (overall) or a known category; anything else is a 404."""
    if value in {"", "overall"}:
        return ""
    if value not in Category.values:
        raise Http404("no such category")
    return value


@require_safe
def index(request: HttpRequest) -> HttpResponse:
    query = _query(request)
    requested = get_object_or_404(Snapshot, pk=query.snapshot) if query.snapshot else None
    category = requested.category if requested else _category(query.category)
    # The "all votes" board (named comparisons too) exists only where the admin turned it on.
    offered = BoardOptions.all_votes_published()
    wants_all = query.votes == "all" and offered
    all_votes = requested.all_votes if requested else wants_all and not category
    latest = Snapshot.objects.latest_for(category, all_votes=all_votes)
    snapshot = requested or latest
    rows = list(snapshot.rows.select_related("model")) if snapshot else []
    speeds = speed.median_speeds(row.model_id for row in rows)
    for row in rows:
        row.speed = speeds.get(row.model_id)  # type: ignore[attr-defined]
    boards = sorted(set(Snapshot.objects.exclude(category="").values_list("category", flat=True)))
    groups: dict[int, list[str]] = {}
    for row in rows:
        groups.setdefault(row.component + 1, []).append(row.model.display_name)
    context = {
        "groups": sorted(groups.items()),
        "snapshot": snapshot,
        "historical": requested is not None and requested != latest,
        "rows": rows,
        "category": category,
        # A board of a category since removed from the data file keeps its name as label.
        "categories": [(c, LABELS.get(c, c)) for c in boards],
        "plot_kinds": PLOT_KINDS,
        "all_votes_offered": offered,
        "all_votes": all_votes,
        "min_votes": settings.LEADERBOARD_CATEGORY_MIN_VOTES,
        # The picker of past boards: the newest of this kind (each stored on a change of counts).
        "past_boards": Snapshot.objects.filter(category=category, all_votes=all_votes)
        .only("pk", "created_at", "votes_used")
        .order_by("-created_at", "-pk")[:PAST_BOARDS],
        # The visitor's own board sits next to the current overall one only.
        "personal": None if category or all_votes or query.snapshot else _personal(request),
        "has_speed": bool(speeds),
    }
    return render(request, "leaderboard/index.html", context)


def _personal(request: HttpRequest) -> dict[str, object]:
    """The visitor's own board, shown next to the public overall board."""
    owner, account = personal.visitor_of(request)
    battles = personal.revealed_battles(owner=owner, user_id=account)
    board = personal.personal_board(battles)
    return {"board": board, "min_votes": personal.PERSONAL_BOARD_MIN_VOTES}


@require_safe
def model(request: HttpRequest, key: str) -> HttpResponse:
    versions = list(ImageModel.objects.filter(key=key).order_by("-created_at", "-pk"))
    if not versions:
        raise Http404("no such model")
    current = next((m for m in versions if not m.retired), versions[0])
    snapshot = Snapshot.objects.latest_for("")
    rows = (
        list(snapshot.rows.filter(model__key=key).select_related("model").order_by("rank"))
        if snapshot
        else []
    )
    history = SnapshotRow.objects.filter(
        model__key=key, snapshot__category="", snapshot__all_votes=False
    )
    context = {
        "model": current,
        "versions": versions,
        "snapshot": snapshot,
        "rows": rows,
        "has_history": history.exists(),
        "samples": profiles.samples(key),
        "head_to_head": profiles.head_to_head(key),
    }
    return render(request, "leaderboard/model.html", context)


@require_safe
def model_plot(request: HttpRequest, key: str) -> HttpResponse:
    if not ImageModel.objects.filter(key=key).exists():
        raise Http404("no such model")
    latest = Snapshot.objects.latest_for("")
    # A new overall board makes a new plot; until then the cached one stands.
    cache_key = f"leaderboard-model-plot:{key}:{latest.pk if latest else 0}"
    svg = cache.get(cache_key)
    if svg is None:
        svg = plots.rating_history_plot(lines=_history_lines(key))
        cache.set(cache_key, svg, timeout=24 * 3600)
    response = HttpResponse(svg, content_type="image/svg+xml")
    response["Cache-Control"] = "public, max-age=60"
    return response


def _history_lines(key: str) -> list[plots.HistoryLine]:
    """One line per version of the model: its overall rating and interval at each snapshot."""
    points: dict[str, list[tuple[datetime, float, float, float]]] = {}
    for version, when, rating, lower, upper in (
        SnapshotRow.objects.filter(model__key=key, snapshot__category="", snapshot__all_votes=False)
        .order_by("snapshot__created_at", "snapshot_id")
        .values_list("model__version", "snapshot__created_at", "rating", "lower", "upper")
    ):
        if rating is None:
            continue  # the data bound it on one side at most: no rating to draw
        points.setdefault(version, []).append((when, rating, lower, upper))
    lines = []
    for version, series in points.items():
        step = -(-len(series) // HISTORY_POINTS)  # ceiling division
        kept = series[::step]
        if kept[-1] is not series[-1]:
            kept.append(series[-1])  # always end at the latest board
        lines.append(
            plots.HistoryLine(
                label=f"version {version}",
                times=[p[0] for p in kept],
                ratings=[p[1] for p in kept],
                lower=[p[2] for p in kept],
                upper=[p[3] for p in kept],
            )
        )
    return lines


@require_safe
def plot(request: HttpRequest, snapshot_id: int, kind: str) -> HttpResponse:
    if kind not in (*PLOT_KINDS, HISTORY_KIND):
        raise Http404("no such plot")
    snapshot = get_object_or_404(Snapshot, pk=snapshot_id)
    key = f"leaderboard-plot:{snapshot.pk}:{kind}"
    svg = cache.get(key)
    if svg is None:
        svg = _render_plot(snapshot, kind)
        cache.set(key, svg, timeout=24 * 3600)
    response = HttpResponse(svg, content_type="image/svg+xml")
    # A snapshot never changes, so its plots can be cached anywhere for a day.
    response["Cache-Control"] = "public, max-age=86400"
    return response


def _render_plot(snapshot: Snapshot, kind: str) -> str:
    if kind == HISTORY_KIND:
        return plots.rating_history_plot(
            lines=_board_history(snapshot), bands=False, empty="No rated models on this board"
        )
    rows = list(snapshot.rows.select_related("model"))
    if kind == "ratings":
        # Open intervals have no rating to draw; the table lists them with their bound.
        rated = [(r, r.rating) for r in rows if r.rating is not None]
        rows = [r for r, _ in rated]
        return plots.ratings_plot(
            names=[r.model.display_name for r in rows],
            ratings=[rating for _, rating in rated],
            lower=[r.lower for r in rows],
            upper=[r.upper for r in rows],
            in_house=[r.model.is_in_house for r in rows],
        )
    order = [r.model_id for r in rows]
    ids = snapshot.matrices["model_ids"]
    index = [ids.index(pk) for pk in order]
    matrix = snapshot.matrices[kind]
    return plots.heatmap(
        matrix=[[matrix[i][j] for j in index] for i in index],
        names=[r.model.display_name for r in rows],
        title="Win rate of row model against column model"
        if kind == "win_rate"
        else "Battles between each pair",
        percent=kind == "win_rate",
    )


@require_safe
def speed_plot(request: HttpRequest, snapshot_id: int) -> HttpResponse:
    """Quality against speed: the board's ratings over each model's median generation time."""
    snapshot = get_object_or_404(Snapshot, pk=snapshot_id)
    key = f"leaderboard-speed-plot:{snapshot.pk}"
    svg = cache.get(key)
    if svg is None:
        rated = [
            (r, r.rating) for r in snapshot.rows.select_related("model") if r.rating is not None
        ]
        speeds = speed.median_speeds(r.model_id for r, _ in rated)
        timed = [(r, speeds[r.model_id], rating) for r, rating in rated if r.model_id in speeds]
        places = sorted({s.hardware for _, s, _ in timed})
        svg = plots.speed_plot(
            names=[r.model.display_name for r, _, _ in timed],
            seconds=[max(s.median_s, 0.001) for _, s, _ in timed],
            ratings=[rating for _, _, rating in timed],
            lower=[r.lower for r, _, _ in timed],
            upper=[r.upper for r, _, _ in timed],
            in_house=[r.model.is_in_house for r, _, _ in timed],
            hardware=places[0] if len(places) == 1 else "hardware per model in the table",
        )
        cache.set(key, svg, timeout=speed.CACHE_SECONDS)
    response = HttpResponse(svg, content_type="image/svg+xml")
    # The times move with new images, unlike the snapshot's own plots.
    response["Cache-Control"] = f"public, max-age={speed.CACHE_SECONDS}"
    return response


def _board_history(snapshot: Snapshot) -> list[plots.HistoryLine]:
    """The ratings of this board's best-ranked models on every stored board of its kind up to
    it (the same category and votes), thinned evenly to HISTORY_POINTS boards."""
    top = list(
        snapshot.rows.filter(rating__isnull=False)
        .select_related("model")
        .order_by("rank", "pk")[:HISTORY_MODELS]
    )
    boards = list(
        Snapshot.objects.filter(
            category=snapshot.category,
            all_votes=snapshot.all_votes,
            created_at__lte=snapshot.created_at,
        )
        .order_by("created_at", "pk")
        .values_list("pk", flat=True)
    )
    step = -(-len(boards) // HISTORY_POINTS)  # ceiling division
    kept = set(boards[::step]) | {snapshot.pk}
    series: dict[int, list[tuple[datetime, float]]] = {row.model_id: [] for row in top}
    for model_id, when, rating in (
        SnapshotRow.objects.filter(
            snapshot_id__in=kept, model_id__in=list(series), rating__isnull=False
        )
        .order_by("snapshot__created_at", "snapshot_id")
        .values_list("model_id", "snapshot__created_at", "rating")
    ):
        if rating is not None:  # filtered above; the column itself is nullable
            series[model_id].append((when, rating))
    return [
        plots.HistoryLine(
            label=row.model.display_name,
            times=[p[0] for p in series[row.model_id]],
            ratings=[p[1] for p in series[row.model_id]],
            lower=[],
            upper=[],
        )
        for row in top
    ]
