"""Probes: ``/healthz`` (the process answers) and ``/readyz`` (it can serve battles).

``/readyz`` checks the database, the broker and the cache, and that every enabled model's
queue has a worker whose pool children are all alive and warm (their heartbeats,
``generation.worker``). It answers 503 naming the failing parts. Containers and ``deploy/dev.py``
poll it before sending traffic.

Both answer whatever the ``Host`` header says (``ProbeMiddleware``): a kubelet or a container
health check sends the pod's address, which is no name in ``ALLOWED_HOSTS``. Every other path
keeps Django's host check; under ``/api/`` its refusal is a 400 in the API's error shape
(``bad_host``), not Django's HTML page.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.core.cache import cache
from django.core.exceptions import DisallowedHost
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from generation import capacity
from generation.models import ImageModel

BROKER_TIMEOUT_S = 2


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness: answers without touching any other service."""
    return JsonResponse({"status": "ok"})


@never_cache
@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    """Readiness: 200 when every part answers, else 503 naming the parts that do not."""
    checks: dict[str, str] = {}
    for name, check in CHECKS.items():
        if name == "workers" and checks["database"] != "ok":
            checks[name] = "not checked: the database does not answer"
            continue
        try:
            checks[name] = check()
        except Exception as exc:
            checks[name] = f"does not answer: {type(exc).__name__}: {exc}"[:300]
    failing = [name for name, result in checks.items() if result != "ok"]
    if not failing:
        return JsonResponse({"status": "ready", "checks": checks})
    message = "; ".join(f"{name}: {checks[name]}" for name in failing)
    return JsonResponse(
        {
            "status": "not ready",
            "checks": checks,
            "failing": failing,
            "error": {"code": "not_ready", "message": message},
        },
        status=503,
    )


def _database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return "ok"


def _broker() -> str:
    from arena.celery import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, timeout=BROKER_TIMEOUT_S)
    return "ok"


def _cache() -> str:
    cache.set("arena:readyz", "1", timeout=10)
    if cache.get("arena:readyz") != "1":
        return "wrote a value and read back another"
    return "ok"


def _workers() -> str:
    queues = set(ImageModel.objects.enabled().filter(retired=False).values_list("queue", flat=True))
    ready = capacity.serving_workers()
    missing = sorted(q for q in queues if ready.get(q, 0) == 0)
    if missing:
        return f"no live, warm worker for queue(s): {', '.join(missing)}"
    return "ok"


# In order: the workers check reads the database.
CHECKS: dict[str, Callable[[], str]] = {
    "database": _database,
    "broker": _broker,
    "cache": _cache,
    "workers": _workers,
}


PROBES: dict[str, Callable[[HttpRequest], HttpResponse]] = {"/healthz": healthz, "/readyz": readyz}


class ProbeMiddleware:
    """Answer ``/healthz`` and ``/readyz`` before the Host check, as ``arena.metrics`` answers
    ``/metrics``: the kubelet probes each pod by its IP (``10.1.2.3:8000``) and a compose health
    check by ``127.0.0.1:8000``. It sits after the security and CSP middleware, which add their
    headers without reading the host (the probes are exempt from the HTTPS redirect), and before
    ``CommonMiddleware``, the first to call ``request.get_host()``. Only these two exact paths
    skip the check; they read no input and touch no session."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        probe = PROBES.get(request.path_info)
        if probe is not None:
            return probe(request)
        if request.path_info.startswith("/api/"):
            # The host check, done here for the API so that its refusal has the API's shape.
            try:
                request.get_host()
            except DisallowedHost as exc:
                return bad_host(request, exc)
        return self.get_response(request)


BAD_HOST_MESSAGE = "The Host header names no address this arena serves."
_security_log = logging.getLogger("django.security.DisallowedHost")


def bad_host(request: HttpRequest, exc: DisallowedHost) -> JsonResponse:
    """A disallowed Host under /api/: 400 in the API's error shape, logged as Django logs it."""
    _security_log.error(str(exc), extra={"status_code": 400, "request": request})
    return api_bad_request(request, exc)


def api_bad_request(request: HttpRequest, exc: Exception) -> JsonResponse:
    if isinstance(exc, DisallowedHost):
        code, message = "bad_host", BAD_HOST_MESSAGE
    else:
        code, message = "bad_request", "The request could not be read."
    return JsonResponse({"error": {"code": code, "message": message}}, status=400)


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    """``handler400``: a refused request (a bad Host, a body too large, too many fields) under
    /api/ in the API's error shape; Django's page elsewhere. Django calls it when DEBUG is off;
    it has logged the refusal already. With DEBUG on, the host check above still answers JSON."""
    if request.path_info.startswith("/api/"):
        return api_bad_request(request, exception)
    return defaults.bad_request(request, exception)
