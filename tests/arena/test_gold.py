"""Gold battles: a model against a degraded copy of its own image, indistinguishable before
the vote, never counted, and fed to the voter's record."""

from __future__ import annotations

import io
import random
from typing import Any

import pytest
from django.test import Client
from PIL import Image, ImageStat

from arena import services
from arena.models import Battle, Vote, Voter
from leaderboard.models import PairCount

pytestmark = pytest.mark.django_db


@pytest.fixture
def always_gold(settings: Any) -> None:
    settings.ARENA_GOLD_RATE = 1.0


def difference(a: bytes, b: bytes) -> float:
    """Mean absolute pixel difference, 0 to 255: a visibly degraded copy is far from 0."""
    from PIL import ImageChops

    first, second = (Image.open(io.BytesIO(x)).convert("L") for x in (a, b))
    return float(ImageStat.Stat(ImageChops.difference(first, second)).mean[0])


def striped_png() -> bytes:
    image = Image.new("RGB", (64, 64))
    for x in range(64):
        for y in range(64):
            image.putpixel((x, y), (255, 255, 255) if (x // 4 + y // 4) % 2 else (0, 0, 0))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def finish_with(battle: Battle, data: bytes) -> None:
    from generation import jobs as generation_jobs

    for generation in (battle.generation_left, battle.generation_right):
        claimed = generation_jobs.claim(generation_id=generation.pk)
        assert claimed is not None
        generation_jobs.finish(
            generation=claimed, data=data, compute_ms=5, queue_wait_ms=1, device="cpu"
        )
    battle.refresh_from_db()


def test_at_the_rate_a_battle_is_gold_and_looks_like_any_other_until_the_vote(
    client: Client, models: list[Any], always_gold: None
) -> None:
    assert client.post("/api/v1/battles", {"prompt": "a fox"}).status_code == 201
    battle = Battle.objects.get()
    assert battle.gold_side in ("left", "right") and battle.model_left_id == battle.model_right_id
    finish_with(battle, striped_png())
    assert battle.status == Battle.Status.READY
    data = client.get(f"/api/v1/battles/{battle.public_id}").json()
    assert set(data) == {"id", "status", "progress", "images"}, "nothing says gold"
    page = client.get(f"/battles/{battle.public_id}").content.decode()
    assert "gold" not in page.lower() and battle.model_left.display_name not in page
    left, right = battle.generation_left, battle.generation_right
    assert left.image.name != right.image.name
    sizes = {Image.open(g.image.path).size for g in (left, right)}
    assert len(sizes) == 1, "one size for both sides"
    degraded, clean = (left, right) if battle.gold_side == "left" else (right, left)
    assert difference(degraded.image.read(), clean.image.read()) > 60
    assert degraded.image_sha256 != clean.image_sha256


def test_preferring_the_degraded_side_fails_the_check_and_nothing_counts(
    client: Client, models: list[Any], always_gold: None
) -> None:
    for expected in (Vote.Standing.FAILED_ATTENTION, Vote.Standing.GOLD):
        client.post("/battles", {"prompt": f"a fox {expected}"})
        battle = Battle.objects.order_by("-pk").first()
        assert battle is not None
        finish_with(battle, striped_png())
        degraded = battle.gold_side
        other = "right" if degraded == "left" else "left"
        choice = degraded if expected == Vote.Standing.FAILED_ATTENTION else other
        client.post(f"/battles/{battle.public_id}/vote", {"choice": choice})
        vote = Vote.objects.get(battle=battle)
        assert vote.excluded and vote.standing == expected
    voter = Voter.objects.get()
    assert (voter.gold_failed, voter.gold_passed) == (1, 1)
    assert not PairCount.objects.exists()
    restored = services.restore_votes(votes=Vote.objects.all(), by="admin")
    assert restored == 0 and not PairCount.objects.exists()


def test_no_gold_battles_at_rate_zero(models: list[Any], settings: Any) -> None:
    settings.ARENA_GOLD_RATE = 0.0
    rng = random.Random(3)
    battles = [services.create_battle(prompt_text=f"p {i}", owner="o", rng=rng) for i in range(30)]
    assert all(b.gold_side == "" and b.model_left_id != b.model_right_id for b in battles)
