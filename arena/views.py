"""Battle pages and image files (the JSON API is ``arena.api``).

Every battle read or write is scoped to the session that created it: another session, a
forged id and a missing battle all get the same 404.
"""

from __future__ import annotations

import math
from uuid import UUID

from django.conf import settings
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    JsonResponse,
    QueryDict,
)
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_POST, require_safe

from arena import (
    captcha,
    challenge,
    limits,
    media,
    moderation,
    polling,
    services,
    visitors,
    waiting,
)
from arena.forms import ECHO_CHARS, PromptForm, PromptQuery, VoteForm, first_error
from arena.matchmaking import NotEnoughModels
from arena.models import Battle
from arena.visitors import battle_for, owner_of
from generation.models import Generation

NO_MODELS_MESSAGE = "The arena needs at least two enabled models; none can be drawn right now."


def _is_htmx(request: HttpRequest) -> bool:
    return request.headers.get("HX-Request") == "true"


# --- Pages ---------------------------------------------------------------------------------


@require_safe
@ensure_csrf_cookie
def index(request: HttpRequest) -> HttpResponse:
    query = PromptQuery(request.GET)
    given = query.cleaned_data if query.is_valid() else {}
    drawn = services.draw_prompt() if given.get("draw") else None
    text = drawn.text if drawn else given.get("prompt", "")[: settings.ARENA_MAX_PROMPT_CHARS]
    context = {"prompt_text": text, "max_chars": settings.ARENA_MAX_PROMPT_CHARS}
    return render(request, "arena/index.html", context)


@require_safe
def random_prompt(request: HttpRequest) -> HttpResponse:
    prompt = services.draw_prompt()
    context = {
        "prompt_text": prompt.text if prompt else "",
        "max_chars": settings.ARENA_MAX_PROMPT_CHARS,
    }
    return render(request, "arena/_prompt_box.html", context)


def _with_drawn_prompt(data: QueryDict) -> QueryDict:
    """``random=1`` (the "random battle" button and key) replaces the prompt with a drawn one."""
    if not data.get("random"):
        return data
    drawn = services.draw_prompt()
    data = data.copy()
    data["prompt"] = drawn.text if drawn else data.get("prompt", "")
    return data


@require_POST
def create_battle(request: HttpRequest) -> HttpResponse:
    form = PromptForm(_with_drawn_prompt(request.POST))
    try:
        if not form.is_valid():
            raise services.PromptError(first_error(form))
        # A refused prompt or a missing check costs no token from the limits.
        moderation.check_prompt(services.clean_prompt(form.cleaned_data["prompt"]))
        visitors.check_new_session(
            request,
            altcha=request.POST.get("altcha"),
            captcha_token=request.POST.get(captcha.field_name()) if captcha.enabled() else None,
        )
        visitors.limit(request, "battles")
        battle = services.create_battle(
            prompt_text=form.cleaned_data["prompt"], owner=owner_of(request)
        )
    except (
        services.PromptError,
        NotEnoughModels,
        limits.RateLimited,
        challenge.ChallengeFailed,
    ) as exc:
        status, message = 400, NO_MODELS_MESSAGE
        if isinstance(exc, services.PromptError):
            message = str(exc)
        elif isinstance(exc, limits.RateLimited):
            status, message = 429, exc.message
        elif isinstance(exc, challenge.ChallengeFailed):
            status, message = (403 if exc.code.endswith("_required") else 400), exc.message
        echo = form.cleaned_data.get("prompt", "") if form.is_valid() else ""
        context = {
            "prompt_text": echo[:ECHO_CHARS],
            "error": message,
            "max_chars": settings.ARENA_MAX_PROMPT_CHARS,
        }
        template = "arena/_arena_start.html" if _is_htmx(request) else "arena/index.html"
        response = render(request, template, context, status=status)
        if isinstance(exc, limits.RateLimited):
            response["Retry-After"] = str(exc.retry_after)
        return response
    url = reverse("arena:battle", args=[battle.public_id])
    if _is_htmx(request):
        response = _panel(request, battle)
        response["HX-Push-Url"] = url
        return response
    return redirect(url, permanent=False)


@require_safe
@ensure_csrf_cookie
def battle(request: HttpRequest, battle_id: UUID) -> HttpResponse:
    try:
        found = battle_for(request, battle_id)
    except Http404:
        # A link opened in another browser: a plain page (never DEBUG's 404 page), same status.
        message = (
            "This battle is not yours to see: battles stay with the browser that started them "
            "until they are shared. Start your own battle instead."
        )
        return render(request, "arena/error.html", {"message": message}, status=404)
    state = services.battle_state(found)
    context = {
        "battle": found,
        "state": state,
        "wait": _wait(found, state),
        "floor": _floor(found, state),
        "poll": _next_poll(found, state),
    }
    return render(request, "arena/battle.html", context)


@require_safe
def battle_panel(request: HttpRequest, battle_id: UUID) -> HttpResponse:
    # The tag is read before the battle, so it is never newer than what it labels.
    tag = polling.status_etag(kind="panel", battle_id=battle_id, owner=owner_of(request))
    if polling.matches(request, tag):
        return polling.not_modified(tag or "")
    found = polling.panel_battle(battle_id=battle_id, owner=owner_of(request))
    return polling.with_etag(_panel(request, found), tag)


def _panel(
    request: HttpRequest, found: Battle, *, status: int = 200, error: str = ""
) -> HttpResponse:
    state = services.battle_state(found)
    context = {
        "battle": found,
        "state": state,
        "error": error,
        "wait": _wait(found, state),
        "floor": _floor(found, state),
        "poll": _next_poll(found, state),
    }
    return render(request, "arena/_battle_panel.html", context, status=status)


# How long after the floor's end the page under it polls: its poll reaches the server past the
# floor, so it is answered in full rather than with the floor's 304.
FLOOR_POLL_MARGIN_MS = 100


def _floor(found: Battle, state: services.BattleState) -> dict[str, int] | None:
    """Under the reveal floor: when the floor ends, in milliseconds from now, its length, and
    when the page polls next.

    Under the floor nothing can be shown (the battle shows at the floor's end at the earliest), so
    the page polls once, at the floor's end, instead of every 400 ms; a battle voided under the
    floor shows there too. The page animates the progress (the time elapsed towards the floor)
    from these in the meantime; a poll under the floor all the same (a page opened twice) is a 304
    (arena.polling). All come from the submit time and the secret draw of the floor alone, never
    from the pair."""
    if state.status != "generating" or found.reveal_at is None:
        return None
    left = found.reveal_at - timezone.now()
    if left.total_seconds() <= 0:
        return None
    window = found.reveal_at - found.created_at
    in_ms = math.ceil(left.total_seconds() * 1000)
    return {
        "in_ms": in_ms,
        "length_ms": max(round(window.total_seconds() * 1000), 1),
        # The page polls once, just past the floor's end, not every 400 ms under it.
        "next_ms": in_ms + FLOOR_POLL_MARGIN_MS,
    }


def _next_poll(found: Battle, state: services.BattleState) -> polling.NextPoll | None:
    """Past the floor (or without one): when the page asks again, from the battle's one
    earliest-shown estimate (arena.polling.next_poll), instead of every 400 ms."""
    if state.status != "generating":
        return None
    now = timezone.now()
    if found.reveal_at is not None and now < found.reveal_at:
        return None  # under the floor: _floor says when
    return polling.battle_next_poll(found, now=now)


def _wait(found: Battle, state: services.BattleState) -> waiting.Wait | None:
    """The one wait figure of a generating battle (queue position, estimate, loading).

    None under the reveal floor: the figure depends on the pair's queues and speeds, and before
    the floor the page must look the same for every pair. Past the floor the battle is late, which
    the voter sees anyway (README: what timing past the floor can tell)."""
    if state.status != "generating":
        return None
    if found.reveal_at is not None and timezone.now() < found.reveal_at:
        return None
    sides = (found.generation_left, found.generation_right)
    if Generation.Status.QUEUED not in (sides[0].status, sides[1].status):
        return waiting.Wait()  # both running or done: nothing waits (no need to ask workers)
    return waiting.battle_wait(*sides)


@require_POST
def vote(request: HttpRequest, battle_id: UUID) -> HttpResponse:
    found = visitors.battle_to_vote(request, battle_id)
    form = VoteForm(request.POST)
    retry_after = None
    try:
        if not form.is_valid():
            raise services.VoteRejected("bad_choice", first_error(form))
        visitors.cast(request, found, form.cleaned_data["choice"])
    except (services.VoteRejected, limits.RateLimited) as exc:
        if isinstance(exc, limits.RateLimited):
            status, retry_after = 429, exc.retry_after
        else:
            status = visitors.vote_status(exc.code)
            found.refresh_from_db()
        if _is_htmx(request):
            response = _panel(request, found, status=status, error=exc.message)
        else:
            state = services.battle_state(found)
            context = {"battle": found, "state": state, "error": exc.message}
            response = render(request, "arena/battle.html", context, status=status)
        if retry_after is not None:
            response["Retry-After"] = str(retry_after)
        return response
    if _is_htmx(request):
        return _panel(request, found)
    return redirect("arena:battle", battle_id=found.public_id)


@require_safe
def image(request: HttpRequest, name: str) -> HttpResponseBase:
    # A job whose file retention deleted keeps its name but not its checksum: 404.
    generation = get_object_or_404(
        Generation.objects.exclude(image_sha256=""),
        image=f"images/{name}",
        status=Generation.Status.DONE,
    )
    return media.image_response(generation.image)


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """CSRF rejections: JSON for the API, a short page for browsers; always 403."""
    if request.path.startswith("/api/"):
        message = "CSRF token missing or incorrect; GET /api/v1/session first."
        return JsonResponse({"error": {"code": "csrf", "message": message}}, status=403)
    return render(
        request,
        "arena/error.html",
        {
            "message": "Your session expired or the form "
            "was sent from elsewhere. Reload the page and try again."
        },
        status=403,
    )


def api_not_found(request: HttpRequest) -> JsonResponse:
    """An /api/ address that names nothing: the API's error shape, not an HTML page."""
    return JsonResponse({"error": {"code": "not_found", "message": "No such address."}}, status=404)
