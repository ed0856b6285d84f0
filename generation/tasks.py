"""Celery tasks: thin shells that take a primary key and call a service."""

from __future__ import annotations

import os

from celery import shared_task
from celery.signals import worker_process_init

from generation import services

# Hard ceiling for any generation task; each call passes its model's own, lower limit.
# It must stay below the broker's visibility timeout (a test checks every task).
GENERATE_TIME_LIMIT_S = 900


@shared_task(
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=GENERATE_TIME_LIMIT_S - 15,
    time_limit=GENERATE_TIME_LIMIT_S,
    ignore_result=True,
)
def generate(generation_id: int) -> None:
    services.run(generation_id=generation_id)


@worker_process_init.connect
def warm_pipelines(**_: object) -> None:
    """Load the listed models in each worker child at start (after fork: CUDA needs that).

    With ``ARENA_READY_FILE`` set, each child then appends its pid to that file: a readiness
    probe for containers and for the tests.
    """
    wanted = os.environ.get("ARENA_WARM_MODELS", "")
    if wanted:
        services.warm(keys=None if wanted == "all" else wanted.split(","))
    ready_file = os.environ.get("ARENA_READY_FILE")
    if ready_file:
        with open(ready_file, "a", encoding="ascii") as handle:
            handle.write(f"{os.getpid()}\n")


@shared_task(ignore_result=True, soft_time_limit=120, time_limit=150)
def sweep() -> None:
    services.sweep()
