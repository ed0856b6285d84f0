"""Leaderboard services: counts kept per vote, snapshots computed from them."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest
from django.db.models import F

from arena import services as arena_services
from generation.models import ImageModel
from leaderboard import ratings, services
from leaderboard.models import OnlineElo, PairCount, Snapshot

pytestmark = pytest.mark.django_db

RATING_TOLERANCE = 1e-9


def make_models(count: int) -> list[ImageModel]:
    return [
        ImageModel.objects.create(key=f"m{i}", display_name=f"Model {i}", source="x")
        for i in range(count)
    ]


def cast(models: list[ImageModel], votes: list[tuple[int, int, str, str]]) -> None:
    for left, right, choice, category in votes:
        services.count_vote(
            left_id=models[left].pk, right_id=models[right].pk, category=category, choice=choice
        )


def synthetic_votes(
    rng: random.Random, n: int, strengths: list[float]
) -> list[tuple[int, int, str, str]]:
    votes = []
    for _ in range(n):
        left, right = rng.sample(range(len(strengths)), 2)
        p_left = 1 / (1 + np.exp(strengths[right] - strengths[left]))
        draw = rng.random()
        choice = (
            "tie"
            if draw < 0.1
            else "both_bad"
            if draw < 0.15
            else ("left" if rng.random() < p_left else "right")
        )
        votes.append((left, right, choice, rng.choice(["animals", "portraits"])))
    return votes


def test_a_vote_counts_on_its_pair_whichever_side_the_models_were_on() -> None:
    models = make_models(2)
    cast(models, [(1, 0, "left", "animals"), (0, 1, "left", "animals"), (1, 0, "right", "animals")])
    row = PairCount.objects.get()
    assert row.model_a_id == models[0].pk
    assert (row.wins_a, row.wins_b) == (2, 1)


def test_a_refresh_gives_the_ratings_of_the_maths_on_the_same_counts() -> None:
    models = make_models(5)
    cast(models, synthetic_votes(random.Random(1), 600, [0.0, 0.4, 0.8, -0.4, 1.2]))
    snapshot = services.refresh()
    assert snapshot is not None and snapshot.votes_used == 600
    counts = services.load_counts()
    expected = ratings.to_display(log_strengths=ratings.fit_bradley_terry(counts=counts.pairs))
    got = {row.model_id: row.rating for row in snapshot.rows.all()}
    for index, model_id in enumerate(counts.model_ids):
        assert abs(got[model_id] - expected[index]) < RATING_TOLERANCE
    best = snapshot.rows.order_by("-rating").first()
    assert best is not None and best.model == models[4]


def test_both_bad_counts_as_a_tie_by_default_and_can_be_left_out(settings: Any) -> None:
    models = make_models(2)
    cast(models, [(0, 1, "left", "animals")] * 3 + [(0, 1, "both_bad", "animals")] * 5)
    with_ties = services.load_counts()
    assert with_ties.pairs.ties.tolist() == [5.0] and with_ties.votes == 8
    settings.LEADERBOARD_BOTH_BAD_AS_TIE = False
    without = services.load_counts()
    assert without.pairs.ties.tolist() == [0.0]
    assert PairCount.objects.get().both_bad == 5, "both bad stays distinct in the data"


def test_the_overall_board_marks_thin_models_provisional(settings: Any) -> None:
    settings.LEADERBOARD_PROVISIONAL_VOTES = 100
    settings.LEADERBOARD_PROVISIONAL_HALF_WIDTH = 10_000.0  # the vote count alone decides
    models = make_models(3)
    cast(models, [(0, 1, "left", "animals")] * 60 + [(0, 1, "right", "animals")] * 60)
    cast(models, [(0, 2, "left", "animals")] * 5 + [(2, 1, "left", "animals")] * 5)
    snapshot = services.refresh()
    assert snapshot is not None
    provisional = {row.model_id: row.provisional for row in snapshot.rows.all()}
    assert provisional == {models[0].pk: False, models[1].pk: False, models[2].pk: True}


def test_a_category_board_hides_models_with_few_votes_there(settings: Any) -> None:
    settings.LEADERBOARD_CATEGORY_MIN_VOTES = 50
    models = make_models(3)
    cast(models, [(0, 1, "left", "animals")] * 40 + [(1, 0, "left", "animals")] * 30)
    cast(models, [(0, 2, "left", "animals")] * 10)
    snapshot = services.refresh(category="animals")
    assert snapshot is not None
    assert set(snapshot.rows.values_list("model_id", flat=True)) == {models[0].pk, models[1].pk}
    assert services.refresh(category="portraits") is None


def test_a_board_in_two_disconnected_parts_says_so() -> None:
    models = make_models(4)
    cast(models, [(0, 1, "left", "animals")] * 10 + [(1, 0, "left", "animals")] * 5)
    cast(models, [(2, 3, "left", "animals")] * 10 + [(3, 2, "left", "animals")] * 5)
    snapshot = services.refresh()
    assert snapshot is not None and snapshot.components == 2
    groups = dict(snapshot.rows.values_list("model_id", "component"))
    assert groups[models[0].pk] == groups[models[1].pk] != groups[models[2].pk]


def test_an_undefeated_model_gets_an_open_interval_and_no_rating() -> None:
    models = make_models(3)
    cast(models, [(0, 1, "left", "animals")] * 20 + [(0, 2, "left", "animals")] * 20)
    cast(models, [(1, 2, "left", "animals")] * 10 + [(2, 1, "left", "animals")] * 10)
    snapshot = services.refresh()
    assert snapshot is not None
    top = snapshot.rows.get(model=models[0])
    assert top.rating is None and top.status == "above" and top.provisional
    assert np.isfinite(top.lower) and top.upper == np.inf and top.rank == 1
    for row in snapshot.rows.exclude(model=models[0]):
        assert row.rating is not None and np.isfinite([row.lower, row.upper]).all()


def test_adding_a_model_that_never_won_moves_no_other_model() -> None:
    models = make_models(4)
    cast(models, synthetic_votes(random.Random(9), 300, [0.0, 0.5, 1.0]))
    before = {row.model_id: row.rating for row in services.refresh().rows.all()}  # type: ignore[union-attr]
    cast(models, [(0, 3, "left", "animals"), (3, 1, "right", "animals")] * 20)
    after = services.refresh()
    assert after is not None
    newcomer = after.rows.get(model=models[3])
    assert newcomer.rating is None and newcomer.status == "below" and newcomer.lower == -np.inf
    for row in after.rows.exclude(model=models[3]):
        assert row.rating == pytest.approx(before[row.model_id], abs=RATING_TOLERANCE)


def test_the_board_stores_votes_to_flip_and_rank_sets() -> None:
    models = make_models(3)
    cast(models, synthetic_votes(random.Random(6), 300, [0.0, 0.5, 1.0]))
    snapshot = services.refresh()
    assert snapshot is not None
    for row in snapshot.rows.all():
        assert row.votes_to_flip is not None and row.votes_to_flip >= 1
        assert 1 <= row.rank_best <= row.rank <= row.rank_worst <= 3


def test_a_model_with_a_wide_interval_stays_provisional_whatever_its_votes(settings: Any) -> None:
    settings.LEADERBOARD_PROVISIONAL_VOTES = 10
    models = make_models(3)
    cast(models, synthetic_votes(random.Random(7), 600, [0.0, 0.3, 0.6]))
    cast(models, [(0, 1, "left", "photo"), (1, 0, "left", "photo")] * 300)
    first = services.refresh()
    assert first is not None
    halves = sorted(row.half_width for row in first.rows.all())
    bound = (halves[0] + halves[-1]) / 2  # between the narrowest and the widest interval
    settings.LEADERBOARD_PROVISIONAL_HALF_WIDTH = bound
    snapshot = services.refresh()
    assert snapshot is not None and snapshot.provisional_half_width == bound
    for row in snapshot.rows.all():
        assert row.provisional == (row.half_width > bound)
    assert {row.provisional for row in snapshot.rows.all()} == {True, False}


def test_the_bootstrap_board_records_its_rounds_and_seed_and_is_reproducible() -> None:
    models = make_models(3)
    cast(models, synthetic_votes(random.Random(2), 300, [0.0, 0.5, 1.0]))
    first = services.refresh(interval_method="bootstrap", rounds=200, seed=42)
    second = services.refresh(interval_method="bootstrap", rounds=200, seed=42)
    assert first is not None and second is not None
    assert (first.interval_method, first.bootstrap_rounds, first.seed) == ("bootstrap", 200, 42)
    assert list(first.rows.values_list("lower", "upper")) == list(
        second.rows.values_list("lower", "upper")
    )


def test_a_bootstrap_board_extends_the_rounds_of_the_last_one_as_votes_arrive() -> None:
    models = make_models(4)
    strengths = [0.0, 0.3, 0.6, 0.9]
    cast(models, synthetic_votes(random.Random(6), 2000, strengths))
    first = services.refresh(interval_method="bootstrap", rounds=300)
    # Few enough new votes that extending 18 cells beats drawing them afresh.
    cast(models, synthetic_votes(random.Random(7), 5, strengths))

    second = services.refresh(interval_method="bootstrap", rounds=300)
    third = services.refresh(interval_method="bootstrap", rounds=300)

    assert first is not None and second is not None and third is not None
    assert (first.resampled_from, first.resample_steps) == (None, 0)
    assert (second.resampled_from, second.resample_steps) == (first, 1)
    assert (third.resampled_from, third.resample_steps) == (second, 2)
    kept = services._RESAMPLES[("", False, True)].resamples
    assert np.all(kept.draws.sum(axis=1) == 2005)  # every round resamples all current votes
    # A board drawn afresh from the same counts has intervals of the same size, up to the
    # Monte Carlo noise of 300 rounds: a width ratio's standard error is about 0.08 here, and
    # the unseeded boards above draw new rounds at every run, so the bound is five of those.
    afresh = services.refresh(interval_method="bootstrap", rounds=300, seed=1)
    assert afresh is not None and afresh.resampled_from is None
    widths = {row.model_id: row.upper - row.lower for row in third.rows.all()}
    for row in afresh.rows.all():
        assert abs((row.upper - row.lower) / widths[row.model_id] - 1.0) < 0.4


def test_bootstrap_rounds_are_drawn_afresh_when_they_cannot_be_extended() -> None:
    models = make_models(3)
    cast(models, synthetic_votes(random.Random(8), 600, [0.0, 0.5, 1.0]))
    first = services.refresh(interval_method="bootstrap", rounds=100)
    assert first is not None

    # Votes taken away (as rebuild_counts does after an exclusion): counts shrank.
    PairCount.objects.filter(model_a=models[0], model_b=models[1]).update(wins_a=F("wins_a") - 1)
    shrunk = services.refresh(interval_method="bootstrap", rounds=100)
    # The board the rounds came from was deleted.
    assert shrunk is not None and shrunk.resampled_from is None
    cast(models, [(0, 1, "left", "animals")])
    Snapshot.objects.filter(pk=shrunk.pk).delete()
    orphaned = services.refresh(interval_method="bootstrap", rounds=100)
    # A process that has kept nothing, such as a restarted worker.
    services._RESAMPLES.clear()
    cast(models, [(0, 1, "left", "animals")])
    restarted = services.refresh(interval_method="bootstrap", rounds=100)
    cast(models, [(0, 1, "left", "animals")])
    extended = services.refresh(interval_method="bootstrap", rounds=100)

    assert orphaned is not None and orphaned.resampled_from is None
    assert restarted is not None and restarted.resampled_from is None
    assert extended is not None and extended.resampled_from == restarted


def test_the_board_can_be_anchored_on_a_chosen_model(settings: Any) -> None:
    models = make_models(3)
    cast(models, synthetic_votes(random.Random(4), 300, [0.0, 0.5, 1.0]))
    settings.LEADERBOARD_ANCHOR = "m1"
    settings.LEADERBOARD_ANCHOR_RATING = 1200.0
    snapshot = services.refresh()
    assert snapshot is not None and snapshot.anchor == "m1"
    anchor = snapshot.rows.get(model=models[1])
    assert anchor.rating == pytest.approx(1200.0) and anchor.status == "anchor"
    assert anchor.lower == anchor.upper == anchor.rating, "the anchor shows no interval"


def test_rebuilding_the_counts_from_the_votes_gives_identical_ratings(
    models: list[Any], finish_battle: Any
) -> None:
    rng = random.Random(5)
    for _ in range(12):
        battle = arena_services.create_battle(prompt_text="a fox", owner="me", rng=rng)
        finish_battle(battle)
        arena_services.cast_vote(
            battle=battle, choice=rng.choice(["left", "right", "tie"]), voter="v"
        )
    before = services.refresh()
    kept = sorted(
        PairCount.objects.values_list(
            "category", "model_a", "model_b", "wins_a", "wins_b", "ties", "both_bad"
        )
    )
    elo_before = dict(OnlineElo.objects.values_list("model_id", "rating"))
    assert services.rebuild_counts() == 12
    after = services.refresh()
    assert before is not None and after is not None
    assert (
        sorted(
            PairCount.objects.values_list(
                "category", "model_a", "model_b", "wins_a", "wins_b", "ties", "both_bad"
            )
        )
        == kept
    )
    assert list(before.rows.values_list("model_id", "rating")) == list(
        after.rows.values_list("model_id", "rating")
    )
    elo_after = dict(OnlineElo.objects.values_list("model_id", "rating"))
    assert elo_after.keys() == elo_before.keys()
    assert all(abs(elo_after[k] - elo_before[k]) < 1e-9 for k in elo_before)


def test_named_battles_count_only_on_the_all_votes_board(
    models: list[Any], finish_battle: Any, settings: Any
) -> None:
    battle = arena_services.create_battle(prompt_text="a fox", owner="me")
    finish_battle(battle)
    type(battle).objects.filter(pk=battle.pk).update(anonymous=False)
    battle.refresh_from_db()
    arena_services.cast_vote(battle=battle, choice="left", voter="v")
    assert not PairCount.objects.filter(anonymous=True).exists()
    assert PairCount.objects.get(anonymous=False).total == 1
    assert not OnlineElo.objects.exists(), "online Elo is for anonymous votes"
    assert services.refresh() is None and not Snapshot.objects.exists()
    settings.LEADERBOARD_ALL_VOTES = True
    (board,) = services.refresh_all()
    assert board.all_votes and board.votes_used == 1
    assert Snapshot.objects.latest_for("") is None


def test_the_overall_board_carries_a_style_controlled_fit_of_the_live_votes(
    models: list[Any], finish_battle: Any
) -> None:
    rng = random.Random(8)
    for i in range(40):
        battle = arena_services.create_battle(prompt_text=f"a fox {i}", owner="me", rng=rng)
        finish_battle(battle)
        # The left image wins three times in four: a side effect the style fit must find.
        choice = "left" if rng.random() < 0.75 else "right"
        arena_services.cast_vote(battle=battle, choice=choice, voter=f"v{i}")
    snapshot = services.refresh()
    assert snapshot is not None and snapshot.style["votes"] == 40
    side = next(c for c in snapshot.style["coefficients"] if c["covariate"] == "side_left")
    assert side["lower"] < side["logit"] < side["upper"] and side["logit"] > 0
    for row in snapshot.rows.filter(status=""):
        assert row.controlled_rating is not None and row.style_move is not None
        assert row.rating is not None
