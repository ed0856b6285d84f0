"""Settings: bad values fail loudly at start; task limits stay inside the broker's window."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def start(**env: str) -> subprocess.CompletedProcess[str]:
    """Import the settings in a fresh process, as a server start would."""
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "arena.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DEBUG": "0", "SECRET_KEY": ""}, "SECRET_KEY must be set"),
        ({"DEBUG": "maybe"}, "DEBUG must be a boolean"),
        ({"ARENA_MAX_PROMPT_CHARS": "lots"}, "ARENA_MAX_PROMPT_CHARS must be an integer"),
        ({"DATABASE_URL": "mysql://x/y"}, "DATABASE_URL must start with"),
        ({"LEADERBOARD_INTERVALS": "jackknife"}, "LEADERBOARD_INTERVALS must be"),
    ],
)
def test_a_bad_setting_stops_the_start_naming_the_variable(
    env: dict[str, str], message: str
) -> None:
    result = start(**env)
    assert result.returncode != 0
    assert message in result.stderr


def test_the_defaults_start_without_any_environment() -> None:
    env = {k: "" for k in ("DATABASE_URL", "CELERY_BROKER_URL", "REDIS_URL", "DEBUG")}
    assert start(**env).returncode == 0


def test_every_tasks_hard_time_limit_is_below_the_visibility_timeout() -> None:
    from django.conf import settings

    from arena.celery import app

    visibility = 3600  # the Redis transport's default, and our setting's default
    options = settings.CELERY_BROKER_TRANSPORT_OPTIONS
    visibility = int(options.get("visibility_timeout", visibility))  # type: ignore[call-overload]
    app.loader.import_default_modules()
    ours = {name: task for name, task in app.tasks.items() if not name.startswith("celery.")}
    assert {"generation.tasks.generate", "leaderboard.tasks.refresh"} <= set(ours)
    for name, task in ours.items():
        assert task.time_limit is not None, f"{name} has no hard time limit"
        assert task.time_limit < visibility, f"{name}: {task.time_limit}s >= {visibility}s"
        assert task.soft_time_limit is not None and task.soft_time_limit < task.time_limit


def test_leaderboard_refreshes_go_to_their_own_queue() -> None:
    from django.conf import settings

    from arena.celery import app

    route = app.amqp.router.route({}, "leaderboard.tasks.refresh")
    assert route["queue"].name == settings.LEADERBOARD_QUEUE == "leaderboard"
    assert app.amqp.router.route({}, "generation.tasks.sweep")["queue"].name == "default"
