"""The JSON API (django-ninja): battles here, the leaderboard's reads in ``leaderboard.api``.

Every parameter and body is parsed by a schema in ``arena.schemas`` or ``leaderboard.schemas``,
and the OpenAPI document at /api/v1/openapi.json is generated from them. Every error has one
shape, ``{"error": {"code", "message"}}``: a parameter or body field that does not parse is a
400 whose code is ``bad_<field>``.

Every battle read or write is scoped to the session that created it: another session, a
forged id and a missing battle all get the same 404.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any, TypeVar
from uuid import UUID

from django.http import Http404, HttpRequest, HttpResponse
from django.middleware.csrf import get_token
from django.urls import get_script_prefix, get_urlconf, reverse
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.http import require_safe
from ninja import NinjaAPI, Router, Status
from ninja.decorators import decorate_view
from ninja.errors import HttpError, ValidationError
from ninja.parser import Parser

from arena import (
    captcha,
    challenge,
    limits,
    moderation,
    outages,
    polling,
    schemas,
    services,
    visitors,
)
from arena.matchmaking import NotEnoughModels
from arena.models import Battle
from arena.views import NO_MODELS_MESSAGE
from arena.visitors import battle_for, owner_of

BAD_BODY = "The request body must be a JSON object (or a form)."
# Codes for ninja's own HTTP errors (authentication and throttling, if ever turned on).
HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 429: "rate_limited"}
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
# Where a parameter or field sits in a validation error's location, not its name.
LOCATIONS = {"body", "query", "path", "header", "cookie", "form", "payload", "params"}

View = TypeVar("View", bound=Callable[..., Any])


class BodyParser(Parser):
    """A JSON object, or a form for clients that post forms; anything else is refused."""

    def parse_body(self, request: HttpRequest) -> dict[str, Any]:
        if request.content_type in FORM_TYPES:
            return request.POST.dict()
        # Too deep a nesting raises RecursionError here; ninja answers 400 for any failure.
        data = json.loads(request.body)
        if not isinstance(data, dict):
            raise ValueError("not an object")
        return data


class ApiError(Exception):
    """An answer in the API's one error shape: ``{"error": {"code", "message"}}``."""

    def __init__(
        self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}


def create_api(*, routers: list[Router]) -> NinjaAPI:
    """The API under /api/v1/, its error answers, and the routers it serves."""
    api = NinjaAPI(
        title="Image Arena API",
        version="1",
        description="Blind battles between text-to-image models, and the leaderboard. "
        "POSTs need the session cookie and the CSRF token from GET /api/v1/session.",
        urls_namespace="api",
        parser=BodyParser(),
        openapi_url="/openapi.json",
        docs_url=None,
        docs_decorator=require_safe,  # the document answers GET and HEAD only
    )

    def answer(request: HttpRequest, exc: ApiError) -> HttpResponse:
        body = {"error": {"code": exc.code, "message": exc.message}}
        response = api.create_response(request, body, status=exc.status)
        for name, value in exc.headers.items():
            response[name] = value
        return response

    def invalid(request: HttpRequest, exc: ValidationError) -> HttpResponse:
        first = exc.errors[0] if exc.errors else {}
        field = _field(list(first.get("loc", [])))
        if field is None:
            return answer(request, ApiError(400, "bad_request", BAD_BODY))
        reason = str(first.get("msg", "is not valid")).removeprefix("Value error, ")
        return answer(request, ApiError(400, f"bad_{field}", f"{field}: {reason}"))

    def http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
        if exc.status_code == 400 and exc.__cause__ is not None:
            return answer(request, ApiError(400, "bad_request", BAD_BODY))  # see BodyParser
        code = HTTP_CODES.get(exc.status_code, "error")
        return answer(request, ApiError(exc.status_code, code, exc.message))

    def not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
        return answer(request, ApiError(404, "not_found", str(exc) or "Not found."))

    def rate_limited(request: HttpRequest, exc: limits.RateLimited) -> HttpResponse:
        retry = {"Retry-After": str(exc.retry_after)}
        return answer(request, ApiError(429, "rate_limited", exc.message, headers=retry))

    def no_models(request: HttpRequest, exc: NotEnoughModels) -> HttpResponse:
        return answer(request, ApiError(503, "no_models", NO_MODELS_MESSAGE))

    handlers: dict[type[Exception], Callable[..., HttpResponse]] = {
        ApiError: answer,
        ValidationError: invalid,
        HttpError: http_error,
        Http404: not_found,
        limits.RateLimited: rate_limited,
        NotEnoughModels: no_models,
    }
    for kind, handler in handlers.items():
        api.add_exception_handler(kind, handler)
    # A lost database, broker or cache: 503 with its code, as everywhere (arena.outages);
    # ninja would otherwise answer its own 500 under DEBUG.
    for kinds, _, _ in outages.PARTS:
        for outage in kinds:
            api.add_exception_handler(outage, outages.unavailable_api_response)
    for router in routers:
        api.add_router("", router)
    return api


def _field(location: list[Any]) -> str | None:
    names = [part for part in location if isinstance(part, str) and part not in LOCATIONS]
    return names[-1] if names else None


def read(router: Router, path: str, **options: Any) -> Callable[[View], View]:
    """Register a GET operation that also answers HEAD (HEAD stays out of the document)."""

    def register(view: View) -> View:
        router.api_operation(["HEAD"], path, include_in_schema=False, **options)(view)
        return router.get(path, **options)(view)

    return register


ERRORS: dict[int, Any] = {400: schemas.Error, 404: schemas.Error}
battles = Router(tags=["battles"])


@read(battles, "/session", response=schemas.Session, summary="Start a session, get the token")
def session(request: HttpRequest) -> dict[str, Any]:
    """Start a session and hand out the CSRF token that POSTs must send back."""
    owner_of(request)
    return {"csrf_token": get_token(request)}


def _image_path(name: str) -> str:
    """reverse("arena:image", args=[name]), with the prefix looked up once per URLconf (the
    name is a random hex file name, which reverse would leave as it is)."""
    prefix = _image_prefix(get_urlconf(), get_script_prefix())
    return f"{prefix}{name}"


@functools.lru_cache(maxsize=8)
def _image_prefix(urlconf: str | None, script_prefix: str) -> str:
    marker = "0123456789abcdef.png"
    path = reverse("arena:image", args=[marker], urlconf=urlconf)
    assert path.startswith(script_prefix), path
    assert path.endswith(marker), path
    return path[: -len(marker)]


def _battle_json(request: HttpRequest, found: Battle) -> dict[str, Any]:
    state = services.battle_state(found)
    data: dict[str, Any] = {
        "id": str(found.public_id),
        "status": state.status,
        "progress": state.progress,
    }
    if state.left_image and state.right_image:
        data["images"] = {
            "left": request.build_absolute_uri(_image_path(state.left_image)),
            "right": request.build_absolute_uri(_image_path(state.right_image)),
        }
    if state.status == "void":
        data["message"] = state.message
    if state.left_name and state.right_name:
        data["vote"] = state.choice
        data["models"] = {"left": state.left_name, "right": state.right_name}
    return data


@battles.post(
    "/battles",
    response={
        201: schemas.Battle,
        400: schemas.Error,
        403: schemas.Error,
        429: schemas.Error,
        503: schemas.Error,
    },
    summary="Start a battle for a prompt",
    exclude_none=True,
)
@decorate_view(csrf_protect)
def create_battle(request: HttpRequest, payload: schemas.BattleIn) -> Any:
    try:
        # A refused prompt or a missing check costs no token from the limits.
        moderation.check_prompt(services.clean_prompt(payload.prompt))
        visitors.check_new_session(request, altcha=payload.altcha, captcha_token=payload.captcha)
        visitors.limit(request, "battles")
        created = services.create_battle(prompt_text=payload.prompt, owner=owner_of(request))
    except services.PromptError as exc:
        raise ApiError(400, "bad_prompt", str(exc)) from exc
    except challenge.ChallengeFailed as exc:
        status = 403 if exc.code.endswith("_required") else 400
        raise ApiError(status, exc.code, exc.message) from exc
    return Status(201, _battle_json(request, battle_for(request, created.public_id)))


@read(
    battles,
    "/battles/{uuid:battle_id}",
    response={200: schemas.Battle, 304: None, 404: schemas.Error},
    summary="A battle's status and combined progress; images once ready. Send the ETag back "
    "as If-None-Match: an unchanged status is an empty 304",
    exclude_none=True,
)
def battle(request: HttpRequest, battle_id: UUID, response: HttpResponse) -> Any:
    # The tag is read before the battle, so it is never newer than what it labels.
    tag = polling.status_etag(kind="api", battle_id=battle_id, owner=owner_of(request))
    if polling.matches(request, tag):
        return polling.not_modified(tag or "")
    data = _battle_json(request, battle_for(request, battle_id))
    polling.with_etag(response, tag)
    return data


@battles.post(
    "/battles/{uuid:battle_id}/vote",
    response={
        200: schemas.Battle,
        400: schemas.Error,
        403: schemas.Error,
        404: schemas.Error,
        409: schemas.Error,
        429: schemas.Error,
    },
    summary="Vote once; the answer reveals both models",
    exclude_none=True,
)
@decorate_view(csrf_protect)
def vote(request: HttpRequest, battle_id: UUID, payload: schemas.VoteIn) -> Any:
    found = visitors.battle_to_vote(request, battle_id)
    try:
        visitors.cast(request, found, payload.choice)
    except services.VoteRejected as exc:
        raise ApiError(visitors.vote_status(exc.code), exc.code, exc.message) from exc
    return _battle_json(request, found)


@read(
    battles,
    "/challenge",
    response=schemas.Challenge,
    summary="A proof-of-work puzzle",
    exclude_none=True,
)
def new_challenge(request: HttpRequest) -> dict[str, Any]:
    """The puzzle a new session solves before its first battle; ``required`` is false when it
    has passed one already (or none is needed: signed in, or a captcha provider instead)."""
    if (
        visitors.account_of(request) is not None
        or challenge.passed(request.session)
        or captcha.enabled()
    ):
        return {"required": False}
    return {"required": True, **challenge.new_challenge()}
