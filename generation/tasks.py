"""Celery tasks: thin shells that take a primary key and call a service."""

from __future__ import annotations

from typing import Any

from celery import shared_task
from celery.signals import worker_process_init

from generation import jobs, runner, sweeper, worker

# Hard ceiling for any generation task; each call passes its model's own, lower limit.
# It must stay below the broker's visibility timeout (a test checks every task).
GENERATE_TIME_LIMIT_S = 900
# A database blip (a restart, a failover) is retried this many times, waiting 1, 2, 4, then
# at most DATABASE_RETRY_MAX_S seconds between tries: about a minute in all, after which the
# sweeper still has the job.
DATABASE_RETRIES = 15
DATABASE_RETRY_MAX_S = 4


@shared_task(
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=GENERATE_TIME_LIMIT_S - 15,
    time_limit=GENERATE_TIME_LIMIT_S,
    ignore_result=True,
)
def generate(self: Any, generation_id: int) -> None:
    try:
        runner.run(generation_id=generation_id, task_id=self.request.id or "")
    except jobs.DATABASE_UNREACHABLE as exc:
        delay = min(2**self.request.retries, DATABASE_RETRY_MAX_S)
        raise self.retry(exc=exc, countdown=delay, max_retries=DATABASE_RETRIES) from exc


@worker_process_init.connect
def warm_pipelines(**_: object) -> None:
    """Load the models of ARENA_WARM_MODELS in each pool child (after fork: CUDA needs that);
    a child that cannot exits, and its worker stops (generation.worker)."""
    worker.prepare_child()


@shared_task(ignore_result=True, soft_time_limit=120, time_limit=150)
def sweep() -> None:
    sweeper.sweep()
