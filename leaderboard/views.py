"""Leaderboard page, its plots, and the leaderboard API."""

from __future__ import annotations

from django.core.cache import cache
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from arena.models import Category
from leaderboard import exports, plots
from leaderboard.models import Snapshot

PLOT_KINDS = ("ratings", "win_rate", "battles")


def _category(request: HttpRequest) -> str:
    """The requested board: "" (overall) or a known category; anything else is a 404."""
    value = request.GET.get("category", "") or ""
    if value in {"", "overall"}:
        return ""
    if value not in Category.values:
        raise Http404("no such category")
    return value


@require_GET
def index(request: HttpRequest) -> HttpResponse:
    category = _category(request)
    snapshot = Snapshot.objects.latest_for(category)
    rows = list(snapshot.rows.select_related("model")) if snapshot else []
    boards = sorted(set(Snapshot.objects.exclude(category="").values_list("category", flat=True)))
    context = {
        "snapshot": snapshot,
        "rows": rows,
        "category": category,
        "categories": [(c, Category(c).label) for c in boards],
        "plot_kinds": PLOT_KINDS,
    }
    return render(request, "leaderboard/index.html", context)


@require_GET
def plot(request: HttpRequest, snapshot_id: int, kind: str) -> HttpResponse:
    if kind not in PLOT_KINDS:
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
    rows = list(snapshot.rows.select_related("model"))
    if kind == "ratings":
        return plots.ratings_plot(
            names=[r.model.display_name for r in rows],
            ratings=[r.rating for r in rows],
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


@require_GET
def api_leaderboard(request: HttpRequest) -> JsonResponse:
    try:
        category = _category(request)
    except Http404:
        known = ", ".join(["overall", *Category.values])
        return JsonResponse(
            {"error": {"code": "bad_category", "message": f"category must be one of {known}"}},
            status=400,
        )
    snapshot = Snapshot.objects.latest_for(category)
    if snapshot is None:
        return JsonResponse({"snapshot": None, "rows": []})
    return JsonResponse(
        {"snapshot": exports.provenance(snapshot), "rows": exports.board_rows(snapshot)}
    )
