"""Active sampling wired into matchmaking (leaderboard.policy, arena.services.pick_battle_pair)
and published on /leaderboard/policy/ and /api/v1/sampling-policy. Real PostgreSQL."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import numpy as np
import pytest
from django.test import Client

from arena import services as arena_services
from arena.matchmaking import NotEnoughModels, pick_pair
from generation.models import ImageModel
from leaderboard import bounds, policy, services

pytestmark = pytest.mark.django_db
DRAWS = 1500  # through the real matchmaking (two queries each); tolerances: about 3 SE


def make_models(count: int) -> list[ImageModel]:
    return [
        ImageModel.objects.create(key=f"p{i}", display_name=f"Policy {i}", source="x")
        for i in range(count)
    ]


def vote(models: list[ImageModel], strengths: list[float], n: int, seed: int = 3) -> None:
    rng = random.Random(seed)
    for _ in range(n):
        left, right = rng.sample(range(len(strengths)), 2)
        p_left = 1.0 / (1.0 + np.exp(strengths[right] - strengths[left]))
        services.count_vote(
            left_id=models[left].pk,
            right_id=models[right].pk,
            category="",
            choice="left" if rng.random() < p_left else "right",
        )


def drawn_pairs(models: list[ImageModel], seed: int = 1) -> Counter[frozenset[int]]:
    rng = random.Random(seed)
    return Counter(
        frozenset(arena_services.pick_battle_pair(models=models, rng=rng)) for _ in range(DRAWS)
    )


def test_the_published_pair_chances_are_pick_pairs_law() -> None:
    weights = [1.0, 2.0, 3.0, 0.0]
    matrix = policy.sequential_pair_probabilities(weights)
    rng = random.Random(4)
    seen = Counter(
        frozenset(pick_pair(ids=[0, 1, 2, 3], weights=weights, rng=rng)) for _ in range(20000)
    )
    for (i, j), chance in np.ndenumerate(matrix):
        if i < j:
            assert seen[frozenset((i, j))] / 20000 == pytest.approx(2 * chance, abs=0.012)
    assert matrix[3].sum() == 0 and matrix.sum() == pytest.approx(1.0)


def test_without_a_board_every_model_is_new_and_the_draw_is_by_weight(settings: Any) -> None:
    models = make_models(3)
    ImageModel.objects.filter(pk=models[2].pk).update(sampling_weight=2.0)
    models = list(ImageModel.objects.filter(pk__in=[m.pk for m in models]).order_by("key"))
    active = policy.current(models=models, weights=[1.0, 1.0, 2.0])
    assert active.boosted == [True, True, True] and active.uncertainty_share == 0.0
    assert active.weights == [2.0, 2.0, 4.0]  # the same boost for all: the same law
    seen = drawn_pairs(models)
    pair = frozenset((models[0].pk, models[1].pk))
    assert seen[pair] / DRAWS == pytest.approx(2 * active.pairs[0, 1], abs=0.04)


def test_a_new_model_is_boosted_until_it_has_enough_votes(settings: Any) -> None:
    settings.ARENA_UNCERTAINTY_SHARE = 0.0
    settings.ARENA_NEW_MODEL_BOOST = 3.0
    settings.ARENA_NEW_MODEL_VOTES = 100
    models = make_models(5)
    vote(models[:4], [0.0, 0.2, 0.4, 0.6], 800)  # each of the four: about 400 votes
    assert services.refresh() is not None
    active = policy.current(models=models, weights=[1.0] * 5)
    assert active.boosted == [False, False, False, False, True]
    assert active.weights == [1.0, 1.0, 1.0, 1.0, 3.0]
    newcomer = models[4].pk
    seen = drawn_pairs(models)
    share = sum(n for pair, n in seen.items() if newcomer in pair) / DRAWS
    assert share == pytest.approx(active.appearance[4], abs=0.04)
    assert share > 0.6  # unboosted it would be in 40% of battles
    settings.ARENA_NEW_MODEL_VOTES = 10  # enough votes now: no boost (it still has none)
    assert policy.current(models=models, weights=[1.0] * 5).boosted[4]
    vote([models[4], models[0]], [0.0, 0.0], 30, seed=9)
    assert services.refresh() is not None
    assert not policy.current(models=models, weights=[1.0] * 5).boosted[4]


def test_the_uncertainty_share_goes_to_neighbours_where_the_board_is_unsure(
    settings: Any,
) -> None:
    settings.ARENA_NEW_MODEL_BOOST = 1.0
    settings.ARENA_UNCERTAINTY_SHARE = 1.0
    models = make_models(4)
    vote(models, [-1.5, 0.0, 0.05, 1.5], 1200)
    snapshot = services.refresh()
    assert snapshot is not None
    order = [r.model_id for r in snapshot.rows.order_by("-rating")]
    active = policy.current(models=models, weights=[1.0] * 4)
    assert active.uncertainty_share == 1.0
    index = {m.pk: i for i, m in enumerate(models)}
    neighbours = {frozenset((a, b)) for a, b in zip(order[:-1], order[1:], strict=True)}
    for (i, j), chance in np.ndenumerate(active.gain):
        if chance > 0:
            assert frozenset((models[i].pk, models[j].pk)) in neighbours
    # Each neighbour pair's part: how much one battle shrinks the variance v of their
    # difference, v - v / (1 + v p (1 - p)), v from the board's half-widths.
    rows = {r.model_id: r for r in snapshot.rows.all()}
    expected = {}
    for a, b in zip(order[:-1], order[1:], strict=True):
        sd = [
            (rows[m].upper - rows[m].lower) / 2 / 1.959964 / bounds.POINTS_PER_LOG for m in (a, b)
        ]
        v = sd[0] ** 2 + sd[1] ** 2
        high, low = rows[a].rating, rows[b].rating
        assert high is not None and low is not None
        p = 1 / (1 + np.exp(-(high - low) / bounds.POINTS_PER_LOG))
        expected[frozenset((a, b))] = v - v / (1 + v * p * (1 - p))
    total = sum(expected.values())
    for pair, part in expected.items():
        i, j = (index[m] for m in pair)
        assert 2 * active.gain[i, j] == pytest.approx(part / total, rel=1e-5)
    middle = 2 * active.gain[index[models[1].pk], index[models[2].pk]]
    seen = drawn_pairs(models)
    assert set(seen) <= neighbours
    close = seen[frozenset((models[1].pk, models[2].pk))] / DRAWS
    assert close == pytest.approx(middle, abs=0.04)
    # A model that cannot serve (weight 0) takes no part, in the plain or the uncertain part.
    rng = random.Random(2)
    ImageModel.objects.filter(pk=models[1].pk).update(enabled=False)
    served = list(ImageModel.objects.enabled().filter(pk__in=index))
    for _ in range(300):
        assert models[1].pk not in arena_services.pick_battle_pair(models=served, rng=rng)
    with pytest.raises(NotEnoughModels):
        arena_services.pick_battle_pair(models=served[:1], rng=rng)


def test_the_policy_page_and_api_publish_weights_and_actual_shares(
    client: Client, models: list[Any], finish_battle: Any, settings: Any
) -> None:
    settings.ARENA_UNCERTAINTY_SHARE = 0.3
    rng = random.Random(6)
    made = [
        arena_services.create_battle(prompt_text=f"a lamp {i}", owner="me", rng=rng)
        for i in range(12)
    ]
    sides = Counter(m for b in made for m in (b.model_left.key, b.model_right.key))
    data = client.get("/api/v1/sampling-policy").json()
    assert data["boost"] == 2.0 and data["uncertainty_share"] == 0.3
    assert data["uncertainty_share_in_force"] == 0.0, "no board yet"
    assert data["battles"] == 12 and data["window_days"] == policy.SHARE_WINDOW_DAYS
    rows = {row["key"]: row for row in data["models"]}
    assert {k: r["battles"] for k, r in rows.items() if r["battles"]} == dict(sides)
    assert sum(r["share"] for r in rows.values()) == pytest.approx(1.0)
    assert sum(r["chance_next"] for r in rows.values()) == pytest.approx(2.0)
    assert all(r["boosted"] for r in rows.values())
    html = client.get("/leaderboard/policy/").content.decode()
    assert 'id="policy-models"' in html and "new-model boost" in html
    for key, row in rows.items():
        name = ImageModel.objects.filter(key=key).first()
        assert name is not None and name.display_name in html
        assert f"{row['chance_next']:.3f}" in html
