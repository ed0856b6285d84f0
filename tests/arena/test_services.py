"""Battle services against the database, without a worker: jobs are finished by hand."""

from __future__ import annotations

import io
import random
from datetime import timedelta
from typing import Any

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone
from PIL import Image

from arena import services
from arena.models import Battle, Vote
from generation import jobs as generation_jobs
from generation.models import Generation, ImageModel
from leaderboard.models import PairCount

pytestmark = pytest.mark.django_db


def png_bytes(color: tuple[int, int, int] = (10, 20, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), color).save(buffer, format="PNG")
    return buffer.getvalue()


def finish_side(generation: Generation) -> None:
    claimed = generation_jobs.claim(generation_id=generation.pk)
    assert claimed is not None
    generation_jobs.finish(
        generation=claimed, data=png_bytes(), compute_ms=5, queue_wait_ms=1, device="cpu"
    )


def ready_battle(**kwargs: Any) -> Battle:
    battle = services.create_battle(prompt_text="a red fox in the snow", owner="me", **kwargs)
    finish_side(battle.generation_left)
    finish_side(battle.generation_right)
    battle.refresh_from_db()
    return battle


@pytest.mark.parametrize("text", ["", "   ", "\n\t "])
def test_an_empty_prompt_is_refused(text: str) -> None:
    with pytest.raises(services.PromptError, match="Enter a prompt"):
        services.clean_prompt(text)


def test_a_prompt_over_the_limit_is_refused_with_its_length(settings: Any) -> None:
    settings.ARENA_MAX_PROMPT_CHARS = 1000
    with pytest.raises(services.PromptError, match="10000 characters long; the limit is 1000"):
        services.clean_prompt("x" * 10_000)


@pytest.mark.parametrize("char", ["\x00", "\x07", "\x1b", "\u202e", "\x7f"])
def test_a_prompt_with_a_control_character_is_refused(char: str) -> None:
    with pytest.raises(services.PromptError, match="control character"):
        services.clean_prompt(f"a cat{char}on a mat")


def test_whitespace_in_a_prompt_is_collapsed() -> None:
    assert services.clean_prompt("  a  cat\n\ton a   mat ") == "a cat on a mat"


def test_a_battle_draws_two_different_enabled_models_with_sides_randomised(
    models: list[Any],
) -> None:
    enabled = {models[1].pk, models[2].pk}
    ImageModel.objects.exclude(pk__in=enabled).update(enabled=False)
    rng = random.Random(7)
    orders = set()
    for _ in range(30):
        battle = services.create_battle(prompt_text="a lighthouse", owner="me", rng=rng)
        assert battle.model_left_id != battle.model_right_id
        assert {battle.model_left_id, battle.model_right_id} == enabled
        orders.add((battle.model_left_id, battle.model_right_id))
    assert len(orders) == 2, "both side orders of the only pair should occur"


def test_a_battle_queues_one_job_per_side_with_the_same_seed_and_size(models: list[Any]) -> None:
    battle = services.create_battle(prompt_text="a lighthouse", owner="me")
    left, right = battle.generation_left, battle.generation_right
    assert left.status == right.status == Generation.Status.QUEUED
    assert left.model_id == battle.model_left_id and right.model_id == battle.model_right_id
    assert left.seed == right.seed == battle.seed
    assert (left.output_width, left.output_height) == (right.output_width, right.output_height)


def test_a_battle_enqueues_its_jobs_only_on_commit(
    models: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        services.create_battle(prompt_text="a lighthouse", owner="me")
    assert len(callbacks) == 2


def test_a_curated_prompt_gives_its_category_and_a_typed_one_is_classified(
    models: list[Any],
) -> None:
    services.load_prompts()
    curated = services.draw_prompt(rng=random.Random(1))
    assert curated is not None
    battle = services.create_battle(prompt_text=curated.text, owner="me")
    assert battle.prompt == curated and battle.category == curated.category
    typed = services.create_battle(prompt_text="a neon sign that says 'OPEN LATE'", owner="me")
    assert typed.prompt is None and typed.category == "text_rendering"


def test_loading_the_prompt_pool_twice_adds_nothing_the_second_time() -> None:
    assert services.load_prompts() >= 60
    assert services.load_prompts() == 0


def test_a_battle_is_ready_only_when_both_sides_are_done(models: list[Any]) -> None:
    battle = services.create_battle(prompt_text="a lighthouse", owner="me")
    finish_side(battle.generation_left)
    battle.refresh_from_db()
    assert battle.status == Battle.Status.GENERATING
    finish_side(battle.generation_right)
    battle.refresh_from_db()
    assert battle.status == Battle.Status.READY and battle.ready_at is not None


def test_a_failed_side_voids_the_battle_with_a_message_naming_no_model(models: list[Any]) -> None:
    battle = services.create_battle(prompt_text="a lighthouse", owner="me")
    generation_jobs.fail(generation_id=battle.generation_right_id, error="CUDA out of memory")
    battle.refresh_from_db()
    state = services.battle_state(battle)
    assert battle.status == Battle.Status.VOID
    assert state.status == "void" and state.message == services.VOID_MESSAGE
    for model in models:
        assert model.display_name not in state.message and model.key not in state.message


def test_a_battle_past_its_deadline_is_voided_by_the_sweeper(
    models: list[Any], settings: Any
) -> None:
    settings.ARENA_BATTLE_DEADLINE_S = 60
    battle = services.create_battle(prompt_text="a lighthouse", owner="me")
    Battle.objects.filter(pk=battle.pk).update(created_at=timezone.now() - timedelta(seconds=61))
    assert services.void_overdue_battles(now=timezone.now()) == 1
    battle.refresh_from_db()
    assert services.battle_state(battle).status == "void"
    assert set(Generation.objects.values_list("status", flat=True)) == {Generation.Status.FAILED}


def test_progress_is_the_mean_of_both_sides_in_whole_percent(models: list[Any]) -> None:
    battle = services.create_battle(prompt_text="a lighthouse", owner="me")
    Generation.objects.filter(pk=battle.generation_left_id).update(steps_done=4)  # 4 of 8
    battle.refresh_from_db()
    assert services.battle_state(battle).progress == 25


def test_a_vote_reveals_names_and_counts_for_its_pair(models: list[Any]) -> None:
    battle = ready_battle()
    services.cast_vote(battle=battle, choice="left", voter="v")
    battle.refresh_from_db()
    state = services.battle_state(battle)
    assert battle.status == Battle.Status.VOTED
    assert state.left_name == battle.model_left.display_name
    assert state.right_name == battle.model_right.display_name
    row = PairCount.objects.get()
    winner_is_a = battle.model_left_id == row.model_a_id
    assert (row.wins_a, row.wins_b) == ((1, 0) if winner_is_a else (0, 1))
    assert row.category == battle.category


@pytest.mark.parametrize(("choice", "field"), [("tie", "ties"), ("both_bad", "both_bad")])
def test_tie_and_both_bad_are_counted_apart(models: list[Any], choice: str, field: str) -> None:
    services.cast_vote(battle=ready_battle(), choice=choice, voter="v")
    row = PairCount.objects.get()
    assert getattr(row, field) == 1 and row.total == 1


def test_a_second_vote_on_the_same_battle_is_rejected_and_changes_nothing(
    models: list[Any],
) -> None:
    battle = ready_battle()
    services.cast_vote(battle=battle, choice="left", voter="v")
    with pytest.raises(services.VoteRejected) as rejected:
        services.cast_vote(battle=battle, choice="right", voter="v")
    assert rejected.value.code == "already_voted"
    assert Vote.objects.get().choice == "left"
    assert PairCount.objects.get().total == 1


def test_a_vote_before_both_images_are_ready_is_refused(models: list[Any]) -> None:
    battle = services.create_battle(prompt_text="a lighthouse", owner="me")
    finish_side(battle.generation_left)
    with pytest.raises(services.VoteRejected) as rejected:
        services.cast_vote(battle=battle, choice="left", voter="v")
    assert rejected.value.code == "not_ready"
    assert not Vote.objects.exists() and not PairCount.objects.exists()


def test_a_void_battle_cannot_be_voted_on(models: list[Any]) -> None:
    battle = services.create_battle(prompt_text="a lighthouse", owner="me")
    generation_jobs.fail(generation_id=battle.generation_left_id, error="boom")
    with pytest.raises(services.VoteRejected) as rejected:
        services.cast_vote(battle=battle, choice="tie", voter="v")
    assert rejected.value.code == "void"


def test_an_unknown_choice_is_refused(models: list[Any]) -> None:
    with pytest.raises(services.VoteRejected) as rejected:
        services.cast_vote(battle=ready_battle(), choice="left; DROP TABLE", voter="v")
    assert rejected.value.code == "bad_choice"


def test_the_database_allows_one_vote_per_battle(models: list[Any]) -> None:
    battle = ready_battle()
    Vote.objects.create(battle=battle, choice="left", voter="v")
    with pytest.raises(IntegrityError), transaction.atomic():
        Vote.objects.create(battle=battle, choice="right", voter="w")


def test_the_database_refuses_a_battle_of_a_model_against_itself(models: list[Any]) -> None:
    battle = services.create_battle(prompt_text="a lighthouse", owner="me")
    with pytest.raises(IntegrityError), transaction.atomic():
        Battle.objects.filter(pk=battle.pk).update(model_right=battle.model_left)


def test_the_category_choices_match_the_classifier_categories() -> None:
    from arena.categories import CATEGORIES
    from arena.models import Category

    assert tuple(Category.values) == CATEGORIES


def test_a_vote_before_the_reveal_floor_is_refused_like_one_while_generating_and_stored_nowhere(
    models: list[Any], settings: Any
) -> None:
    settings.ARENA_REVEAL_MIN_MS, settings.ARENA_REVEAL_JITTER_MS = 60_000, 5_000
    battle = services.create_battle(prompt_text="a red fox in the snow", owner="me")
    assert battle.reveal_at is not None
    window = battle.reveal_at - battle.created_at
    assert timedelta(seconds=59.9) <= window <= timedelta(seconds=65)
    with pytest.raises(services.VoteRejected) as generating:
        services.cast_vote(battle=battle, choice="left", voter="v")
    finish_side(battle.generation_left)
    finish_side(battle.generation_right)
    battle.refresh_from_db()
    assert battle.status == Battle.Status.READY
    state = services.battle_state(battle)
    assert state.status == "generating" and state.left_image is None and state.progress < 5
    with pytest.raises(services.VoteRejected) as early:
        services.cast_vote(battle=battle, choice="left", voter="v")
    assert (
        (early.value.code, early.value.message)
        == (
            generating.value.code,
            generating.value.message,
        )
        == ("not_ready", services.NOT_READY_MESSAGE)
    )
    assert not Vote.objects.exists() and not PairCount.objects.exists()
    assert Battle.objects.get(pk=battle.pk).status == Battle.Status.READY

    Battle.objects.filter(pk=battle.pk).update(reveal_at=timezone.now())
    battle.refresh_from_db()
    assert services.battle_state(battle).status == "ready"
    vote = services.cast_vote(battle=battle, choice="left", voter="v")
    assert vote.ms_to_vote is not None and vote.ms_to_vote < 5_000
    assert PairCount.objects.exists()


def test_a_battle_done_after_its_floor_is_shown_at_the_next_whole_step(settings: Any) -> None:
    settings.ARENA_REVEAL_STEP_MS = 1000
    floor = timezone.now()
    early, late = floor - timedelta(seconds=2), floor + timedelta(milliseconds=1200)
    assert services.shown_at(ready_at=early, reveal_at=floor) == floor
    assert services.shown_at(ready_at=late, reveal_at=floor) == floor + timedelta(seconds=2)
    assert services.shown_at(ready_at=late, reveal_at=None) == late
    assert services.shown_at(ready_at=None, reveal_at=floor) is None
    settings.ARENA_REVEAL_STEP_MS = 0
    assert services.shown_at(ready_at=late, reveal_at=floor) == late


def test_the_progress_under_a_floor_is_time_alone_whatever_either_side_did() -> None:
    created = timezone.now()
    phases = {
        services.visible_phase(
            status=status,
            created_at=created,
            ready_at=created + timedelta(seconds=1) if status == "ready" else None,
            reveal_at=created + timedelta(seconds=4),
            fractions=fractions,
            now=created + timedelta(seconds=1),
        )
        for status in ("generating", "ready")
        for fractions in ((0.0, 0.0), (1.0, 0.1), (0.1, 1.0), (1.0, 1.0))
    }
    assert phases == {("generating", 25)}
