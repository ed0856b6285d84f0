"""Leaderboard page."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from leaderboard import services


@require_GET
def index(request: HttpRequest) -> HttpResponse:
    board = services.board()
    return render(request, "leaderboard/index.html", {"board": board})
