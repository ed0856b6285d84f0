"""Refresh saves the board first and fills votes to flip after; unchanged counts reuse them."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest

from generation.models import ImageModel
from leaderboard import board, services

pytestmark = pytest.mark.django_db


def make_models(count: int) -> list[ImageModel]:
    return [
        ImageModel.objects.create(key=f"m{i}", display_name=f"Model {i}", source="x")
        for i in range(count)
    ]


def cast(models: list[ImageModel], votes: list[tuple[int, int, str]]) -> None:
    for left, right, choice in votes:
        services.count_vote(
            left_id=models[left].pk, right_id=models[right].pk, category="animals", choice=choice
        )


def synthetic_votes(
    rng: random.Random, n: int, strengths: list[float]
) -> list[tuple[int, int, str]]:
    votes = []
    for _ in range(n):
        left, right = rng.sample(range(len(strengths)), 2)
        p_left = 1 / (1 + math.exp(strengths[right] - strengths[left]))
        choice = "tie" if rng.random() < 0.1 else "left" if rng.random() < p_left else "right"
        votes.append((left, right, choice))
    return votes


@pytest.fixture(autouse=True)
def no_kept_flips() -> None:
    services._FLIPS.clear()


def test_a_refresh_without_votes_to_flip_saves_the_board_with_none() -> None:
    models = make_models(3)
    cast(models, synthetic_votes(random.Random(6), 300, [0.0, 0.5, 1.0]))
    snapshot = services.refresh(with_votes_to_flip=False)
    assert snapshot is not None and snapshot.compute_ms is not None
    assert [row.votes_to_flip for row in snapshot.rows.all()] == [None] * 3
    assert all(row.rating is not None for row in snapshot.rows.all())


def test_unchanged_counts_reuse_the_votes_to_flip_and_new_votes_recompute_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    models = make_models(3)
    cast(models, synthetic_votes(random.Random(6), 300, [0.0, 0.5, 1.0]))
    computed = []
    real = board.votes_to_flip

    def counting(b: board.Board) -> Any:
        computed.append(1)
        return real(b)

    monkeypatch.setattr(board, "votes_to_flip", counting)
    first = services.refresh()
    second = services.refresh()
    assert first is not None and second is not None and len(computed) == 1
    flips = sorted((row.model_id, row.votes_to_flip) for row in first.rows.all())
    assert sorted((row.model_id, row.votes_to_flip) for row in second.rows.all()) == flips
    assert all(k is not None and k >= 1 for _, k in flips)
    cast(models, [(0, 1, "left")])
    third = services.refresh()
    assert third is not None and len(computed) == 2
    assert all(row.votes_to_flip is not None for row in third.rows.all())
