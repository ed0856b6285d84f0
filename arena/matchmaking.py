"""Which two models meet next: a pure function of the candidates and a random source."""

from __future__ import annotations

import random
from collections.abc import Sequence


class NotEnoughModels(Exception):
    """Fewer than two models can be drawn."""


def pick_pair(
    *, ids: Sequence[int], weights: Sequence[float], rng: random.Random
) -> tuple[int, int]:
    """Draw two different models, each with probability proportional to its weight.

    The pair comes back in random order: the first is shown on the left (A). Models with
    weight zero are never drawn.
    """
    if len(ids) != len(weights):
        raise ValueError("ids and weights differ in length")
    candidates = [(i, w) for i, w in zip(ids, weights, strict=True) if w > 0]
    if len(candidates) < 2:
        raise NotEnoughModels("at least two enabled models with positive weight are needed")
    first = _draw(candidates, rng)
    rest = [(i, w) for i, w in candidates if i != first]
    second = _draw(rest, rng)
    # Sides are randomised separately from the draw, so a heavier model is not always A.
    return (first, second) if rng.random() < 0.5 else (second, first)


def _draw(candidates: Sequence[tuple[int, float]], rng: random.Random) -> int:
    total = sum(w for _, w in candidates)
    point = rng.random() * total
    for ident, weight in candidates:
        point -= weight
        if point < 0:
            return ident
    return candidates[-1][0]


def available_weights(
    *,
    weights: Sequence[float],
    live: Sequence[bool],
    expected_wait_s: Sequence[float],
    budget_s: float,
) -> list[float]:
    """The weights with a zero for each model that cannot serve a battle soon: no live worker,
    or an expected wait beyond ``budget_s`` (0 means no budget)."""
    if not len(weights) == len(live) == len(expected_wait_s):
        raise ValueError("weights, live and expected_wait_s differ in length")
    return [
        weight if ok and (budget_s <= 0 or wait <= budget_s) else 0.0
        for weight, ok, wait in zip(weights, live, expected_wait_s, strict=True)
    ]
