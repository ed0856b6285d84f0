"""Pages of a voter's own: "your votes" with their personal board, and shared battles."""

from __future__ import annotations

import re
from uuid import UUID

from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_POST, require_safe

from arena import personal, services
from arena.models import Battle
from arena.visitors import battle_for

VOTES_PER_PAGE = 20


def _is_htmx(request: HttpRequest) -> bool:
    return request.headers.get("HX-Request") == "true"


@require_safe
def your_votes(request: HttpRequest) -> HttpResponse:
    owner, account = personal.visitor_of(request)
    battles = personal.revealed_battles(owner=owner, user_id=account)
    pages = Paginator(battles, VOTES_PER_PAGE)
    number = request.GET.get("page", "1")
    if not re.fullmatch(r"[0-9]{1,9}", number) or not 1 <= int(number) <= pages.num_pages:
        raise Http404("no such page")
    page = pages.page(int(number))
    context = {
        "page": page,
        "entries": [(b, services.battle_state(b)) for b in page.object_list],
        "board": personal.personal_board(battles),
        "min_votes": personal.PERSONAL_BOARD_MIN_VOTES,
    }
    return render(request, "arena/your_votes.html", context)


@require_POST
def share(request: HttpRequest, battle_id: UUID) -> HttpResponse:
    found = battle_for(request, battle_id)
    try:
        token = personal.share_battle(battle=found)
    except personal.NotShareable as exc:
        template = "arena/_share.html" if _is_htmx(request) else "arena/error.html"
        context = {"battle": found, "error": str(exc), "message": str(exc)}
        return render(request, template, context, status=409)
    url = request.build_absolute_uri(reverse("arena:shared", args=[token]))
    context = {"battle": found, "share_url": url}
    template = "arena/_share.html" if _is_htmx(request) else "arena/share_created.html"
    return render(request, template, context)


@require_safe
def shared(request: HttpRequest, token: str) -> HttpResponse:
    # Only a voted battle has a token, and only after its voter asked: anything else is a 404.
    found = get_object_or_404(
        Battle.objects.select_related(
            "vote", "model_left", "model_right", "generation_left", "generation_right"
        ),
        share_token=token,
        status=Battle.Status.VOTED,
    )
    response = render(
        request,
        "arena/shared.html",
        {"battle": found, "state": services.battle_state(found)},
    )
    response["X-Robots-Tag"] = "noindex"
    return response
