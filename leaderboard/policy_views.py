"""The published matchmaking policy page (the same numbers as /api/v1/sampling-policy)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe

from leaderboard.api import policy_answer


@require_safe
def policy_page(request: HttpRequest) -> HttpResponse:
    return render(request, "leaderboard/policy.html", {"policy": policy_answer()})
