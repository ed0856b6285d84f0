"""URL map: battle pages, the JSON API, the leaderboard and the admin."""

from django.conf import settings
from django.contrib import admin
from django.urls import include, path

from arena import chat_views, views
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
    path("chat/", chat_views.chat_page, name="chat"),
    path("chat/turns", chat_views.start_turn, name="chat_turn"),
    path("chat/turns/<int:turn_id>/panel", chat_views.turn_panel, name="chat_turn_panel"),
    path("chat/turns/<int:turn_id>/again", chat_views.run_again, name="chat_again"),
    path(
        "chat/turns/<int:turn_id>/settings.json",
        chat_views.turn_settings,
        name="chat_turn_settings",
    ),
    path("chat/images/<int:generation_id>/refine", chat_views.refine, name="chat_refine"),
    path("chat/images/<int:generation_id>/download", chat_views.download, name="chat_download"),
    path("compare/", chat_views.compare_page, name="compare"),
    path("compare/start", chat_views.start_compare, name="compare_start"),
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
