"""A lost connection to the database, the broker or the cache answers 503, never 500.

Django turns an exception raised anywhere inside the middleware stack into a 500 response
before the outer middleware sees it, so the exception is noted when Django reports it
(``got_request_exception``) and the outermost middleware swaps that 500 for a 503: JSON with an
``error.code`` under ``/api/``, a short page elsewhere, and ``Retry-After`` either way.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import kombu.exceptions
import redis.exceptions
from django.core.signals import got_request_exception
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string

RETRY_AFTER_S = 5

# Which part is away, by the exception that said so; "code" goes into the JSON answer.
PARTS: list[tuple[tuple[type[Exception], ...], str, str]] = [
    ((OperationalError, InterfaceError), "database_unavailable", "the database"),
    ((kombu.exceptions.OperationalError,), "broker_unavailable", "the job queue"),
    (
        (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError),
        "cache_unavailable",
        "the cache",
    ),
]
_NOTE = "_arena_unavailable"


def unavailable_part(exc: BaseException | None) -> tuple[str, str] | None:
    """(code, words) for an exception that means a backing service is unreachable."""
    for kinds, code, words in PARTS:
        if isinstance(exc, kinds):
            return code, words
    return None


def _note(sender: Any, request: HttpRequest | None = None, **_: Any) -> None:
    part = unavailable_part(sys.exc_info()[1])
    if request is not None and part is not None:
        setattr(request, _NOTE, part)


got_request_exception.connect(_note, dispatch_uid="arena.outages.note")


def unavailable_response(request: HttpRequest, code: str, words: str) -> HttpResponse:
    message = f"Image Arena cannot reach {words} right now. Try again in a few seconds."
    response: HttpResponse
    if request.path.startswith("/api/"):
        response = JsonResponse({"error": {"code": code, "message": message}}, status=503)
    else:
        # No request context: the page must render with every backing service away.
        page = render_to_string("arena/unavailable.html", {"message": message})
        response = HttpResponse(page, status=503)
    response["Retry-After"] = str(RETRY_AFTER_S)
    return response


def unavailable_api_response(request: HttpRequest, exc: Any) -> HttpResponse:
    """The 503 for an exception the JSON API caught itself (django-ninja's handlers)."""
    part = unavailable_part(exc)
    assert part is not None, "registered only for the exceptions in PARTS"
    return unavailable_response(request, *part)


class ServiceUnavailableMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        part = getattr(request, _NOTE, None)
        if response.status_code == 500 and part is not None:
            return unavailable_response(request, *part)
        return response
