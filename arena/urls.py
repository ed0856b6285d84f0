"""URL map: battle pages, the JSON API, the leaderboard and the admin."""

from django.conf import settings
from django.contrib import admin
from django.urls import include, path, re_path, register_converter

from arena import api, chat_views, health, personal_views, views
from leaderboard import api as leaderboard_api


class FileName:
    """A stored file's name: letters, digits, dot, dash and underscore; nothing else (no NUL,
    no slash) reaches the database."""

    regex = r"[A-Za-z0-9_.-]+"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


class ShareToken:
    """A share link's token (arena.personal): URL-safe base64 of random bytes."""

    regex = r"[A-Za-z0-9_-]{16,64}"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


# A refused request (SuspiciousOperation) under /api/ answers in the API's error shape.
handler400 = "arena.health.bad_request"

register_converter(FileName, "filename")
register_converter(ShareToken, "sharetoken")
json_api = api.create_api(routers=[api.battles, leaderboard_api.router])

arena_patterns = [
    path("", views.index, name="index"),
    path("prompts/random", views.random_prompt, name="random_prompt"),
    path("battles", views.create_battle, name="create_battle"),
    path("battles/<uuid:battle_id>", views.battle, name="battle"),
    path("battles/<uuid:battle_id>/panel", views.battle_panel, name="battle_panel"),
    path("battles/<uuid:battle_id>/vote", views.vote, name="vote"),
    path("battles/<uuid:battle_id>/share", personal_views.share, name="share"),
    path("shared/<sharetoken:token>", personal_views.shared, name="shared"),
    path("votes/", personal_views.your_votes, name="your_votes"),
    path("images/<filename:name>", views.image, name="image"),
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
]

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("", include((arena_patterns, "arena"))),
    path("api/v1/", json_api.urls),
    re_path(r"^api/", views.api_not_found),  # any other /api/ address: a JSON 404
    path("leaderboard/", include("leaderboard.urls")),
    path(settings.ADMIN_URL, admin.site.urls),
]
if settings.ARENA_ACCOUNTS:
    urlpatterns.append(path("accounts/", include("allauth.urls")))
