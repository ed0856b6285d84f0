"""The leaderboard refresh in a real one-process Celery worker: boards extend their rounds."""

from __future__ import annotations

import random
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from leaderboard import services, tasks
from leaderboard.models import Snapshot

from ..conftest import running_worker

pytestmark = pytest.mark.worker

REFRESH_TIMEOUT_S = 60


def cast(models: list[Any], count: int, seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(count):
        left, right = rng.sample(models, 2)
        choice = rng.choice(["left", "right", "tie", "both_bad"])
        services.count_vote(left_id=left.pk, right_id=right.pk, category="animals", choice=choice)


def refreshed(after: int) -> Snapshot:
    """Wait for the overall board newer than snapshot ``after``."""
    deadline = time.monotonic() + REFRESH_TIMEOUT_S
    while time.monotonic() < deadline:
        board = Snapshot.objects.filter(category="", pk__gt=after).order_by("-pk").first()
        if board is not None:
            return board
        time.sleep(0.1)
    raise AssertionError("no new overall board")


def test_a_one_process_board_worker_extends_each_boards_rounds_between_refreshes(
    models: list[Any], tmp_path: Path, transactional_db: None
) -> None:
    queue = f"board-{uuid.uuid4().hex[:10]}"
    cast(models, 400, seed=1)
    with running_worker(
        queue,
        tmp_path / "board-worker.log",
        concurrency=1,
        env={"LEADERBOARD_INTERVALS": "bootstrap", "LEADERBOARD_BOOTSTRAP_ROUNDS": "200"},
    ) as board_worker:
        tasks.refresh.apply_async(queue=queue)
        first = refreshed(after=0)
        cast(models, 2, seed=2)  # few enough for 10 pairs' 30 cells to be worth extending
        tasks.refresh.apply_async(queue=queue)
        second = refreshed(after=first.pk)

    assert (first.interval_method, first.bootstrap_rounds) == ("bootstrap", 200)
    assert (first.resampled_from, first.resample_steps) == (None, 0)
    assert (second.resampled_from, second.resample_steps) == (first, 1), board_worker.log()
    assert second.votes_used == first.votes_used + 2
    # The category board kept its own rounds as well.
    animals = Snapshot.objects.filter(category="animals").order_by("pk")
    assert [board.resample_steps for board in animals] == [0, 1]
