"""The Celery application: configuration comes from Django settings (``CELERY_*``)."""

import os
from pathlib import Path

from celery import Celery

from generation.worker import Readiness

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "arena.settings")
# Celery runs Django's system checks when a worker starts, and they import every URL module and
# view (the leaderboard's plotting, the API): seconds of each worker (re)start that serve no
# task. They still run where deploy/README.md has them, `manage.py check --deploy` and
# `migrate`. Only Celery's worker reads this variable.
os.environ.setdefault("CELERY_SKIP_CHECKS", "1")

app = Celery("arena")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# Every worker reports whether all its pool children are alive and warm (generation.worker).
app.steps["worker"].add(Readiness)


def ensure_broker_folders() -> None:
    """Create the file-system broker's folders; kombu expects them to exist."""
    options = app.conf.broker_transport_options or {}
    for key in ("data_folder_in", "data_folder_out", "processed_folder", "control_folder"):
        if key in options:
            Path(options[key]).mkdir(parents=True, exist_ok=True)


if str(app.conf.broker_url).startswith("filesystem://"):
    ensure_broker_folders()
