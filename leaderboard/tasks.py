"""Celery tasks for the leaderboard: thin shells around services."""

from celery import shared_task

from leaderboard import services

# Well below any broker visibility timeout; a refresh from counts takes milliseconds.
REFRESH_TIME_LIMIT_S = 300


@shared_task(
    ignore_result=True, soft_time_limit=REFRESH_TIME_LIMIT_S - 30, time_limit=REFRESH_TIME_LIMIT_S
)
def refresh() -> None:
    services.refresh_all(only_if_changed=True)
