"""Battle pages, the battle JSON API, and image files.

Every battle read or write is scoped to the session that created it: another session, a
forged id and a missing battle all get the same 404.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any
from uuid import UUID

from django.conf import settings
from django.core.exceptions import ValidationError
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    JsonResponse,
)
from django.middleware.csrf import get_token
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_GET, require_POST

from arena import limits, services
from arena.matchmaking import NotEnoughModels
from arena.models import Battle
from generation.models import Generation

NO_MODELS_MESSAGE = "The arena needs at least two enabled models; none can be drawn right now."


def _owner(request: HttpRequest) -> str:
    """The salted hash of this browser's session, creating the session if needed."""
    if request.session.session_key is None:
        request.session.save()
    assert request.session.session_key is not None
    return services.identity_hash(request.session.session_key)


def _battle_for(request: HttpRequest, battle_id: UUID) -> Battle:
    return get_object_or_404(
        Battle.objects.select_related(
            "generation_left", "generation_right", "model_left", "model_right"
        ),
        public_id=battle_id,
        owner=_owner(request),
    )


def _is_htmx(request: HttpRequest) -> bool:
    return request.headers.get("HX-Request") == "true"


# --- Pages ---------------------------------------------------------------------------------


@require_GET
@ensure_csrf_cookie
def index(request: HttpRequest) -> HttpResponse:
    drawn = services.draw_prompt() if request.GET.get("draw") else None
    # "Use this prompt in a battle" from direct chat arrives as ?prompt=...
    text = drawn.text if drawn else request.GET.get("prompt", "")[: settings.ARENA_MAX_PROMPT_CHARS]
    return render(request, "arena/index.html", {"prompt_text": text})


@require_GET
def random_prompt(request: HttpRequest) -> HttpResponse:
    prompt = services.draw_prompt()
    return render(request, "arena/_prompt_box.html", {"prompt_text": prompt.text if prompt else ""})


def limit_images(request: HttpRequest) -> None:
    """Count a request for images against this session's and this address's limits."""
    limits.hit(scope="images", session=_owner(request), address=limits.client_address(request))


@require_POST
def create_battle(request: HttpRequest) -> HttpResponse:
    try:
        limit_images(request)
        battle = services.create_battle(
            prompt_text=request.POST.get("prompt", ""), owner=_owner(request)
        )
    except (services.PromptError, NotEnoughModels, limits.RateLimited) as exc:
        status, message = 400, NO_MODELS_MESSAGE
        if isinstance(exc, services.PromptError):
            message = str(exc)
        elif isinstance(exc, limits.RateLimited):
            status, message = 429, exc.message
        context = {"prompt_text": request.POST.get("prompt", "")[:20000], "error": message}
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


@require_GET
@ensure_csrf_cookie
def battle(request: HttpRequest, battle_id: UUID) -> HttpResponse:
    found = _battle_for(request, battle_id)
    state = services.battle_state(found)
    return render(request, "arena/battle.html", {"battle": found, "state": state})


@require_GET
def battle_panel(request: HttpRequest, battle_id: UUID) -> HttpResponse:
    return _panel(request, _battle_for(request, battle_id))


def _panel(
    request: HttpRequest, found: Battle, *, status: int = 200, error: str = ""
) -> HttpResponse:
    state = services.battle_state(found)
    context = {"battle": found, "state": state, "error": error}
    return render(request, "arena/_battle_panel.html", context, status=status)


@require_POST
def vote(request: HttpRequest, battle_id: UUID) -> HttpResponse:
    found = _battle_for(request, battle_id)
    try:
        services.cast_vote(
            battle=found, choice=request.POST.get("choice", ""), voter=_owner(request)
        )
    except services.VoteRejected as exc:
        status = 400 if exc.code == "bad_choice" else 409
        found.refresh_from_db()
        if _is_htmx(request):
            return _panel(request, found, status=status, error=exc.message)
        state = services.battle_state(found)
        context = {"battle": found, "state": state, "error": exc.message}
        return render(request, "arena/battle.html", context, status=status)
    if _is_htmx(request):
        return _panel(request, found)
    return redirect("arena:battle", battle_id=found.public_id)


@require_GET
def image(request: HttpRequest, name: str) -> HttpResponseBase:
    generation = get_object_or_404(
        Generation, image=f"images/{name}", status=Generation.Status.DONE
    )
    response = FileResponse(generation.image.open("rb"), content_type="image/png")
    # Names are random and content never changes; let the browser keep the file privately.
    response["Cache-Control"] = "private, max-age=86400, immutable"
    return response


# --- JSON API ------------------------------------------------------------------------------


def _error(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse({"error": {"code": code, "message": message}}, status=status)


def json_errors(view: Callable[..., JsonResponse]) -> Callable[..., JsonResponse]:
    """Answer a missing or foreign battle with a JSON 404 instead of an HTML page."""

    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
        try:
            return view(request, *args, **kwargs)
        except Http404:
            return _error(404, "not_found", "No such battle.")

    return wrapped


def _payload(request: HttpRequest) -> dict[str, Any]:
    """Fields from a JSON body, or from a form body for clients that post forms."""
    if request.content_type == "application/json":
        try:
            data = json.loads(request.body or b"{}")
        except (ValueError, UnicodeDecodeError):
            raise ValidationError("The request body is not valid JSON.") from None
        if not isinstance(data, dict):
            raise ValidationError("The request body must be a JSON object.")
        return data
    return request.POST.dict()


def _state_json(request: HttpRequest, found: Battle) -> dict[str, Any]:
    state = services.battle_state(found)
    data: dict[str, Any] = {
        "id": str(found.public_id),
        "status": state.status,
        "progress": state.progress,
    }
    if state.left_image and state.right_image:
        data["images"] = {
            "left": request.build_absolute_uri(reverse("arena:image", args=[state.left_image])),
            "right": request.build_absolute_uri(reverse("arena:image", args=[state.right_image])),
        }
    if state.status == "void":
        data["message"] = state.message
    if state.left_name and state.right_name:
        data["vote"] = state.choice
        data["models"] = {"left": state.left_name, "right": state.right_name}
    return data


@require_GET
@ensure_csrf_cookie
def api_session(request: HttpRequest) -> JsonResponse:
    """Start a session and hand out the CSRF token that POSTs must send back."""
    _owner(request)
    return JsonResponse({"csrf_token": get_token(request)})


@require_POST
def api_create_battle(request: HttpRequest) -> JsonResponse:
    try:
        data = _payload(request)
        limit_images(request)
        found = services.create_battle(prompt_text=data.get("prompt", ""), owner=_owner(request))
    except limits.RateLimited as exc:
        response = _error(429, "rate_limited", exc.message)
        response["Retry-After"] = str(exc.retry_after)
        return response
    except ValidationError as exc:
        return _error(400, "bad_request", exc.messages[0])
    except services.PromptError as exc:
        return _error(400, "bad_prompt", str(exc))
    except NotEnoughModels:
        return _error(503, "no_models", NO_MODELS_MESSAGE)
    found = _battle_for(request, found.public_id)
    return JsonResponse(_state_json(request, found), status=201)


@require_GET
@json_errors
def api_battle(request: HttpRequest, battle_id: UUID) -> JsonResponse:
    return JsonResponse(_state_json(request, _battle_for(request, battle_id)))


@require_POST
@json_errors
def api_vote(request: HttpRequest, battle_id: UUID) -> JsonResponse:
    found = _battle_for(request, battle_id)
    try:
        data = _payload(request)
        services.cast_vote(battle=found, choice=data.get("choice", ""), voter=_owner(request))
    except ValidationError as exc:
        return _error(400, "bad_request", exc.messages[0])
    except services.VoteRejected as exc:
        return _error(400 if exc.code == "bad_choice" else 409, exc.code, exc.message)
    found.refresh_from_db()
    return JsonResponse(_state_json(request, found))


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """CSRF rejections: JSON for the API, a short page for browsers; always 403."""
    if request.path.startswith("/api/"):
        return _error(403, "csrf", "CSRF token missing or incorrect; GET /api/v1/session first.")
    return render(
        request,
        "arena/error.html",
        {
            "message": "Your session expired or the form "
            "was sent from elsewhere. Reload the page and try again."
        },
        status=403,
    )


@require_GET
def openapi(request: HttpRequest) -> JsonResponse:
    """The API's OpenAPI description."""
    from arena.openapi import SCHEMA

    return JsonResponse(SCHEMA)
