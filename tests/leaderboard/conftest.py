"""Fixtures shared by the leaderboard's page and history tests."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from generation.models import ImageModel
from leaderboard import services

Vote = Callable[[list[ImageModel], int, int], None]


@pytest.fixture(autouse=True)
def fresh_resamples() -> None:
    """Each test starts as a new process would: no bootstrap rounds kept from an earlier board."""
    services._RESAMPLES.clear()


@pytest.fixture
def three_models(db: None) -> list[ImageModel]:
    """Model 0, 1 and 2 (the in-house one), each with an organisation and a licence."""
    return [
        ImageModel.objects.create(
            key=f"m{i}",
            display_name=f"Model {i}",
            source="x",
            organisation=f"Org {i}",
            licence="Apache-2.0",
            is_in_house=i == 2,
        )
        for i in range(3)
    ]


def _vote(models: list[ImageModel], count: int, seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(count):
        left, right = rng.sample(range(len(models)), 2)
        choice = "left" if rng.random() < (0.3 + 0.2 * left) else rng.choice(["right", "tie"])
        services.count_vote(
            left_id=models[left].pk, right_id=models[right].pk, category="animals", choice=choice
        )


@pytest.fixture
def vote() -> Vote:
    """Count ``count`` seeded anonymous votes among ``models``, higher indices winning more."""
    return _vote
