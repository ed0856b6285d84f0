"""The project's URLs plus the benchmark's bare insert (bench_vote_path.py only).

``bench/bare-vote/<battle id>`` is what a vote would cost if it did nothing but store a row: the
same middleware (session, CSRF, auth, limits, metrics), the same JSON body and answer shape, and
one INSERT into a table that exists only in the benchmark's scratch database.
"""

from __future__ import annotations

import json
from uuid import UUID

from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.urls import path
from django.views.decorators.http import require_POST

from arena.urls import urlpatterns as project_urlpatterns

BARE_TABLE = "bench_bare_vote"


@require_POST
def bare_vote(request: HttpRequest, battle_id: UUID) -> JsonResponse:
    try:
        choice = str(json.loads(request.body)["choice"])[:10]
    except (ValueError, KeyError, TypeError):
        return JsonResponse({"error": {"code": "bad_choice", "message": "no choice"}}, status=400)
    with connection.cursor() as cursor:
        cursor.execute(
            # A constant table name; the values are parameters.
            f"INSERT INTO {BARE_TABLE} (battle, session, choice) VALUES (%s, %s, %s)",  # noqa: S608
            [str(battle_id), request.session.session_key or "", choice],
        )
    return JsonResponse({"id": str(battle_id), "status": "voted", "vote": choice})


urlpatterns = [
    path("bench/bare-vote/<uuid:battle_id>", bare_vote),
    *project_urlpatterns,
]
