"""One tally for every path: live votes, the rebuild, imports, the export and online Elo."""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from arena import services as arena_services
from arena.models import Vote
from leaderboard import dataset, imports, ratings, services, tally
from leaderboard.models import ImportedBattle, OnlineElo, OnlineEloCursor, PairCount

ELO_TOLERANCE = 1e-9
PROMPTS = ["a fox in the snow", "portrait of an old sailor", "a city street at night"]


def test_a_vote_with_the_sides_swapped_counts_for_the_same_stored_side() -> None:
    counted = tally.tally(
        left=[7, 3, 7, 3],
        right=[3, 7, 3, 7],
        outcome=[tally.Outcome.LEFT, tally.Outcome.RIGHT, tally.Outcome.TIE, tally.Outcome.LEFT],
    )
    # Stored 3 < 7: the first two votes are wins for 7 (b); the last is a win for 3 (a).
    assert counted.pairs.rows() == [(0, 3, 7, (1, 2, 1, 0))]


def test_every_outside_spelling_of_an_outcome_maps_back_to_it() -> None:
    for choice, outcome in tally.FROM_CHOICE.items():
        assert tally.FROM_WINNER[dataset.WINNER[choice]] == outcome
    assert set(tally.FROM_CHOICE) == set(Vote.Choice.values)
    assert set(tally.FROM_WINNER) == set(ImportedBattle.Winner.values)
    assert tuple(ImportedBattle.Winner.values) == imports.WINNERS


def test_online_elo_of_the_tally_is_the_sequential_computation() -> None:
    rng = np.random.default_rng(2)
    left = rng.integers(0, 5, 500)
    right = (left + rng.integers(1, 5, 500)) % 5
    outcome = rng.integers(0, 4, 500)
    counted = tally.tally(left=left, right=right, outcome=outcome, elo_from={}, k=4.0)
    expected = ratings.online_elo(
        a=left, b=right, outcome=np.asarray(tally.ELO_SCORE)[outcome], n_models=5, k=4.0
    )
    assert np.allclose([counted.elo[i] for i in range(5)], expected, atol=ELO_TOLERANCE)
    assert sum(counted.elo_votes.values()) == 1000


def test_online_elo_continued_in_two_parts_equals_it_in_one() -> None:
    rng = np.random.default_rng(4)
    left = rng.integers(0, 4, 300)
    right = (left + rng.integers(1, 4, 300)) % 4
    outcome = rng.integers(0, 4, 300)
    whole = tally.tally(left=left, right=right, outcome=outcome, elo_from={})
    first = tally.tally(left=left[:120], right=right[:120], outcome=outcome[:120], elo_from={})
    rest = tally.tally(
        left=left[120:], right=right[120:], outcome=outcome[120:], elo_from=first.elo
    )
    for model, rating in whole.elo.items():
        assert abs(rest.elo[model] - rating) < ELO_TOLERANCE


def test_a_tally_refuses_a_vote_of_a_model_against_itself() -> None:
    with pytest.raises(ValueError, match="two different models"):
        tally.tally(left=[1], right=[1], outcome=[0])


def _state() -> tuple[list[tuple[Any, ...]], dict[int, float]]:
    counts = sorted(
        PairCount.objects.filter(anonymous=True).values_list(
            "category", "model_a", "model_b", "wins_a", "wins_b", "ties", "both_bad"
        )
    )
    return counts, dict(OnlineElo.objects.values_list("model_id", "rating"))


def _same(left: dict[int, float], right: dict[int, float]) -> bool:
    return left.keys() == right.keys() and all(
        abs(left[k] - right[k]) < ELO_TOLERANCE for k in left
    )


@pytest.mark.django_db(transaction=True)
def test_the_same_votes_give_identical_counts_live_rebuilt_exported_and_imported(
    models: list[Any], finish_battle: Any, tmp_path: Path
) -> None:
    rng = random.Random(11)
    for index in range(30):
        battle = arena_services.create_battle(
            prompt_text=PROMPTS[index % len(PROMPTS)], owner="me", rng=rng
        )
        finish_battle(battle)
        choice = rng.choice(["left", "right", "tie", "both_bad"])
        arena_services.cast_vote(battle=battle, choice=choice, voter="v")
    assert services.fold_online_elo() == 30
    live = _state()
    assert sum(sum(row[3:]) for row in live[0]) == 30 and len(live[1]) >= 2

    assert services.rebuild_counts() == 30
    assert _state()[0] == live[0]
    assert _same(_state()[1], live[1])

    exported = io.StringIO()
    assert dataset.write_votes(fmt="jsonl", out=exported) == 30
    log = tmp_path / "votes.jsonl"
    log.write_text(exported.getvalue())
    # Counts and ratings forgotten, the live votes already read: the file alone rebuilds them.
    PairCount.objects.all().delete()
    OnlineElo.objects.all().delete()
    OnlineEloCursor.objects.update(last_vote_id=Vote.objects.order_by("-pk").first().pk)  # type: ignore[union-attr]
    result = imports.import_battles(path=log)
    assert result.anonymous_rows == 30 and result.models_created == []
    assert _state()[0] == live[0]
    assert _same(_state()[1], live[1])


@pytest.mark.django_db(transaction=True)
def test_a_vote_leaves_online_elo_to_the_next_refresh_then_counts_once(
    models: list[Any], finish_battle: Any
) -> None:
    battle = arena_services.create_battle(prompt_text="a fox", owner="me")
    finish_battle(battle)
    arena_services.cast_vote(battle=battle, choice="left", voter="v")
    assert not OnlineElo.objects.exists(), "the vote's transaction touched no rating row"
    assert services.fold_online_elo() == 1
    assert services.fold_online_elo() == 0
    assert sorted(OnlineElo.objects.values_list("votes", flat=True)) == [1, 1]
    winner = OnlineElo.objects.get(model_id=battle.model_left_id)
    assert winner.rating == pytest.approx(1002.0)
