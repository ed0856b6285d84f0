"""Gold battles: attention checks that look like any other battle until the vote.

At ``ARENA_GOLD_RATE`` a battle pairs one model with itself on one prompt and seed, and one side
(drawn at random) is replaced, just before the battle becomes ready, by a visibly degraded copy
of the other: a heavy blur with noise over it. The copy is re-encoded from pixels at the same
size under a new random name, like every battle image, so the files say nothing about which
side it is. Preferring the degraded side fails the check; a gold battle never counts on a
board, and its result goes to the voter's record (``Voter.gold_passed`` / ``gold_failed``).
"""

from __future__ import annotations

import random

from django.conf import settings
from django.core.files.base import ContentFile
from django.db.models import F
from PIL import Image, ImageFilter

from arena.models import Battle, Vote, Voter
from generation import images
from generation.models import Generation


def plan(*, left_id: int, right_id: int, rng: random.Random) -> tuple[int, int, str]:
    """The pair a new battle uses and its degraded side ("" for an ordinary battle)."""
    if rng.random() >= settings.ARENA_GOLD_RATE:
        return left_id, right_id, ""
    return left_id, left_id, rng.choice(["left", "right"])


def degrade(image: Image.Image, *, rng: random.Random) -> Image.Image:
    """A copy no attentive person prefers: blurred past recognition, then speckled."""
    rgb = image.convert("RGB")
    width, height = rgb.size
    blurred = rgb.filter(ImageFilter.GaussianBlur(radius=max(3, min(width, height) // 10)))
    noise = Image.effect_noise((width, height), 80).convert("RGB")
    return Image.blend(blurred, noise, alpha=0.35 + 0.1 * rng.random())


def prepare(battle: Battle) -> None:
    """Replace a gold battle's degraded side with the degraded copy of the other side; call it
    when both sides are done, before the battle is marked ready. Ordinary battles: nothing."""
    if not battle.gold_side:
        return
    clean_id, degraded_id = (
        (battle.generation_right_id, battle.generation_left_id)
        if battle.gold_side == "left"
        else (battle.generation_left_id, battle.generation_right_id)
    )
    clean = Generation.objects.get(pk=clean_id)
    degraded = Generation.objects.get(pk=degraded_id)
    with clean.image.open("rb") as handle:
        source = Image.open(handle)
        source.load()
    copy = degrade(source, rng=random.SystemRandom())
    data = images.encode_png(copy, width=degraded.output_width, height=degraded.output_height)
    old = degraded.image.name
    stored = degraded.image.storage.save(f"images/{images.random_image_name()}", ContentFile(data))
    Generation.objects.filter(pk=degraded.pk).update(image=stored, image_sha256=images.sha256(data))
    if old and old != clean.image.name:
        degraded.image.storage.delete(old)
    # The caller's objects must show the new file, not the one just deleted.
    for generation in (battle.generation_left, battle.generation_right):
        if generation.pk == degraded.pk:
            generation.image.name = stored
            generation.image_sha256 = images.sha256(data)


def outcome(*, battle: Battle, choice: str) -> Vote.Standing:
    """A gold battle's vote standing: failed when the degraded side was preferred."""
    if choice == battle.gold_side:
        return Vote.Standing.FAILED_ATTENTION
    return Vote.Standing.GOLD


def record(*, voter: Voter | None, battle: Battle, choice: str) -> None:
    """Feed a gold battle's result to the voter's record (ties and "both bad" say nothing)."""
    if voter is None or choice not in ("left", "right"):
        return
    field = "gold_failed" if choice == battle.gold_side else "gold_passed"
    Voter.objects.filter(pk=voter.pk).update(**{field: F(field) + 1})
