"""Style counts kept per vote (leaderboard.style_counts) against the votes they count."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from arena import services as arena_services
from arena.models import Battle, Vote
from generation.models import Generation
from leaderboard import board, services, style, style_counts
from leaderboard.models import STYLE_DIFFERENCES, PairCount, StyleCount

pytestmark = pytest.mark.django_db

# Image sizes and compute times on and beside every class edge: width / height 0.9 and 1.1 as
# floats divide (9 / 10 is exactly 0.9: square), 512 x 512 and 1024 x 1024 pixels, 2 s and 8 s,
# no size at all, and an unknown compute time (counted as 0).
SIZES = [(9, 10), (8, 9), (11, 10), (12, 10), (512, 512), (511, 512), (1024, 1024), (1023, 1024)]
SIZES += [(0, 0), (5, 0), (0, 5), (768, 512), (512, 768), (1536, 1024)]
TIMES_MS = [None, 0, 1999, 2000, 7999, 8000, 15_000]
CATEGORIES = ["animals", "portraits", "other"]


def votes_with_covariates(model_ids: list[int]) -> np.ndarray:
    """Every live anonymous vote that counts, read from the votes with its images' sizes and
    compute times (board.STYLE_COLUMNS): what the refresh read before the counts were kept."""
    index = {pk: i for i, pk in enumerate(model_ids)}
    rows = Vote.objects.filter(
        excluded=False, battle__anonymous=True, battle__status=Battle.Status.VOTED
    ).values_list(
        "battle__model_left_id",
        "battle__model_right_id",
        "choice",
        "battle__generation_left__output_width",
        "battle__generation_left__output_height",
        "battle__generation_left__compute_ms",
        "battle__generation_right__output_width",
        "battle__generation_right__output_height",
        "battle__generation_right__compute_ms",
    )
    data = [
        (index[r[0]], index[r[1]], {"left": 1.0, "right": 0.0}.get(r[2], 0.5), *r[3:]) for r in rows
    ]
    return np.array(data, dtype=np.float64).reshape(-1, board.STYLE_COLUMNS)


def assert_same_rows(kept: style.StyledCounts, counted: style.StyledCounts) -> None:
    for name in ("left", "right", "features", "wins_left", "wins_right", "ties"):
        np.testing.assert_array_equal(getattr(kept, name), getattr(counted, name), err_msg=name)
    assert kept.n_models == counted.n_models


def recounted(model_ids: list[int]) -> style.StyledCounts:
    return board.count_style_votes(votes=votes_with_covariates(model_ids), n_models=len(model_ids))


def board_model_ids() -> list[int]:
    return services.load_counts().model_ids


def play(
    *,
    count: int,
    rng: random.Random,
    finish_battle: Any,
    named_share: float = 0.0,
    fixed_choice: str | None = None,
) -> list[Vote]:
    """Cast ``count`` votes through cast_vote on battles whose images have random sizes and
    compute times from the edge lists, in random categories; some battles named."""
    cast = []
    for i in range(count):
        battle = arena_services.create_battle(prompt_text=f"a fox {i}", owner="me", rng=rng)
        finish_battle(battle)
        for generation_id in (battle.generation_left_id, battle.generation_right_id):
            width, height = rng.choice(SIZES)
            Generation.objects.filter(pk=generation_id).update(
                output_width=width, output_height=height, compute_ms=rng.choice(TIMES_MS)
            )
        Battle.objects.filter(pk=battle.pk).update(
            category=rng.choice(CATEGORIES), anonymous=rng.random() >= named_share
        )
        battle.refresh_from_db()
        choice = fixed_choice or rng.choice(["left", "right", "tie", "both_bad"])
        cast.append(arena_services.cast_vote(battle=battle, choice=choice, voter=f"v{i}"))
    return cast


def test_the_difference_columns_are_the_covariates_without_the_side() -> None:
    assert style.covariate_names()[1:] == STYLE_DIFFERENCES


def test_kept_style_counts_are_the_counts_of_the_votes_through_votes_exclusions_and_rebuilds(
    models: list[Any], finish_battle: Any
) -> None:
    rng = random.Random(3)
    cast = play(count=60, rng=rng, finish_battle=finish_battle, named_share=0.15)
    assert Vote.objects.filter(battle__anonymous=False).exists()
    ids = board_model_ids()
    kept = style_counts.load(model_ids=ids)
    assert kept.left.size > 5, "the edge sizes and times give many rows"
    assert_same_rows(kept, recounted(ids))
    # Named votes keep no style row; every anonymous vote is in one.
    anonymous = Vote.objects.filter(battle__anonymous=True).count()
    assert sum(row.total for row in StyleCount.objects.all()) == anonymous
    incremental = sorted(StyleCount.objects.values_list(*_row_fields()))

    # The rebuild recounts the same rows the votes added one by one.
    services.rebuild_counts()
    assert sorted(StyleCount.objects.values_list(*_row_fields())) == incremental

    # Votes taken out (an admin's exclusion, the integrity scan's path too) leave the rows.
    taken = [vote.pk for vote in cast[:20] if vote.battle.anonymous][:8]
    assert arena_services.exclude_votes(
        votes=Vote.objects.filter(pk__in=taken), reason="test", by="admin"
    ) == len(taken)
    ids = board_model_ids()
    assert sum(row.total for row in StyleCount.objects.all()) == anonymous - len(taken)
    assert_same_rows(style_counts.load(model_ids=ids), recounted(ids))

    # More votes after the rebuild add to the rebuilt rows; a restored vote comes back.
    play(count=15, rng=rng, finish_battle=finish_battle)
    arena_services.restore_votes(votes=Vote.objects.filter(pk__in=taken[:3]), by="admin")
    ids = board_model_ids()
    assert_same_rows(style_counts.load(model_ids=ids), recounted(ids))
    pair_votes = sum(row.total for row in PairCount.objects.filter(anonymous=True))
    assert sum(row.total for row in StyleCount.objects.all()) == pair_votes


def test_a_vote_that_does_not_count_adds_no_style_row(
    models: list[Any], finish_battle: Any, settings: Any
) -> None:
    battle = arena_services.create_battle(prompt_text="a fox", owner="me")
    finish_battle(battle)
    Battle.objects.filter(pk=battle.pk).update(anonymous=False)
    battle.refresh_from_db()
    arena_services.cast_vote(battle=battle, choice="left", voter="v")
    assert PairCount.objects.filter(anonymous=False).exists()
    assert not StyleCount.objects.exists(), "named comparisons are not on the style board"


def _row_fields() -> list[str]:
    return ["model_left", "model_right", *STYLE_DIFFERENCES, *style_counts.OUTCOME_FIELDS]


def test_the_style_fit_from_kept_counts_is_the_fit_from_the_votes(
    models: list[Any], finish_battle: Any
) -> None:
    play(count=50, rng=random.Random(11), finish_battle=finish_battle)
    counts = services.load_counts()
    kept = board.compute_board(
        counts=counts.pairs, style_counts=style_counts.load(model_ids=counts.model_ids)
    )
    from_votes = board.compute_board(
        counts=counts.pairs, style_votes=votes_with_covariates(counts.model_ids)
    )
    assert kept.style is not None and from_votes.style is not None
    np.testing.assert_array_equal(kept.style.controlled, from_votes.style.controlled)
    assert kept.style.summary == from_votes.style.summary
    assert kept.style.summary["votes"] == 50


def test_a_refresh_reads_the_kept_style_rows_and_no_vote_covariates(
    models: list[Any], finish_battle: Any
) -> None:
    rng = random.Random(4)
    play(count=24, rng=rng, finish_battle=finish_battle)
    generations = connection.ops.quote_name(Generation._meta.db_table)
    kept = connection.ops.quote_name(StyleCount._meta.db_table)

    def refresh_queries() -> list[str]:
        with CaptureQueriesContext(connection) as captured:
            snapshot = services.refresh(with_votes_to_flip=False)
        assert snapshot is not None
        assert snapshot.style["votes"] == Vote.objects.filter(battle__anonymous=True).count()
        return [query["sql"] for query in captured.captured_queries]

    refresh_queries()  # the first board writes online Elo rows for the first time
    play(count=12, rng=rng, finish_battle=finish_battle)
    models_before = set(board_model_ids())
    first = refresh_queries()
    assert not [sql for sql in first if generations in sql], "no image covariate is read"
    assert len([sql for sql in first if kept in sql]) == 1, "one read of the kept style rows"
    play(count=36, rng=rng, finish_battle=finish_battle)
    assert set(board_model_ids()) == models_before
    second = refresh_queries()
    # The same statements whatever the number of votes: nothing is read vote by vote.
    assert len(second) == len(first)
    assert not [sql for sql in second if generations in sql]


def test_a_counted_vote_adds_one_statement_for_its_style_row(
    models: list[Any], finish_battle: Any
) -> None:
    battles = []
    for _ in range(2):
        battle = arena_services.create_battle(prompt_text="a fox", owner="me")
        finish_battle(battle)
        battles.append(battle)
    # The same two models on the same sides, images of one class: one row for both votes.
    Battle.objects.filter(pk=battles[1].pk).update(
        model_left=battles[0].model_left_id, model_right=battles[0].model_right_id
    )
    battles[1].refresh_from_db()
    kept = connection.ops.quote_name(StyleCount._meta.db_table)
    for i, battle in enumerate(battles):  # the first inserts the row, the second adds to it
        with CaptureQueriesContext(connection) as captured:
            arena_services.cast_vote(battle=battle, choice="left", voter=f"v{i}")
        touching = [q["sql"] for q in captured.captured_queries if kept in q["sql"]]
        # One statement: the style row's upsert (on PostgreSQL inside the vote's statement).
        assert len(touching) == 1 and f"INSERT INTO {kept}" in touching[0]
    (row,) = StyleCount.objects.all()
    assert row.wins_left == 2 and row.total == 2
