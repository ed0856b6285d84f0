"""URL map: battle pages, the JSON API, the leaderboard and the admin."""

from django.conf import settings
from django.contrib import admin
from django.urls import include, path

from arena import views
from leaderboard import api as leaderboard_api
from leaderboard import views as leaderboard_views

arena_patterns = [
    path("", views.index, name="index"),
    path("prompts/random", views.random_prompt, name="random_prompt"),
    path("battles", views.create_battle, name="create_battle"),
    path("battles/<uuid:battle_id>", views.battle, name="battle"),
    path("battles/<uuid:battle_id>/panel", views.battle_panel, name="battle_panel"),
    path("battles/<uuid:battle_id>/vote", views.vote, name="vote"),
    path("images/<str:name>", views.image, name="image"),
    path("api/v1/session", views.api_session, name="api_session"),
    path("api/v1/battles", views.api_create_battle, name="api_create_battle"),
    path("api/v1/battles/<uuid:battle_id>", views.api_battle, name="api_battle"),
    path("api/v1/battles/<uuid:battle_id>/vote", views.api_vote, name="api_vote"),
    path("api/v1/leaderboard", leaderboard_views.api_leaderboard, name="api_leaderboard"),
    path("api/v1/models", leaderboard_api.models, name="api_models"),
    path("api/v1/models/<slug:key>", leaderboard_api.model, name="api_model"),
    path("api/v1/models/<slug:key>/history", leaderboard_api.model_history, name="api_history"),
    path("api/v1/stats", leaderboard_api.stats, name="api_stats"),
    path("api/v1/openapi.json", views.openapi, name="openapi"),
]

urlpatterns = [
    path("", include((arena_patterns, "arena"))),
    path("leaderboard/", include("leaderboard.urls")),
    path(settings.ADMIN_URL, admin.site.urls),
]
