"""The vote dataset: its columns, the formula guard, bounded memory, and the round trip through
the FastChat importer back to the same board."""

from __future__ import annotations

import csv
import io
import json
import random
import tracemalloc
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from django.core.management import CommandError, call_command

from arena import services
from arena.models import Battle, Vote
from generation.models import Generation, ImageModel
from leaderboard import dataset
from leaderboard import services as leaderboard_services
from leaderboard.imports import import_battles
from leaderboard.models import ImportedBattle, OnlineElo, PairCount, Snapshot

pytestmark = pytest.mark.django_db

RATING_TOL = 1e-9  # display points: the same counts fitted twice differ only by rounding
PROMPTS = ["a red fox in the snow", "a lighthouse at dusk", "a bowl of ramen", "a glass teapot"]
FORMULA = '=HYPERLINK("http://example.com","click")'


def play(*, count: int, finish_battle: Any, seed: int = 0, prompt: str = "") -> list[Vote]:
    """Battles through the real services, each finished by hand and voted on."""
    rng = random.Random(seed)
    voted = []
    for i in range(count):
        text = prompt or f"{PROMPTS[i % len(PROMPTS)]}, study {i}"
        battle = services.create_battle(prompt_text=text, owner="owner", rng=rng)
        finish_battle(battle)
        choice = rng.choice(["left", "left", "right", "tie", "both_bad"])
        voter = services.identity_hash(f"session-{i % 5}")
        voted.append(services.cast_vote(battle=battle, choice=choice, voter=voter))
    return voted


@pytest.fixture
def played(models: list[Any], finish_battle: Any) -> list[Vote]:
    voted = play(count=30, finish_battle=finish_battle)
    leaderboard_services.refresh_all()
    return voted


def export(fmt: str, **options: Any) -> bytes:
    out = io.BytesIO()
    dataset.write_votes(fmt=fmt, out=out, **options)
    return out.getvalue()


def board() -> dict[tuple[str, str], tuple[float | None, float, float, int]]:
    """The latest overall board: (key, version) -> rating, interval and votes."""
    snapshot = Snapshot.objects.latest_for("")
    assert snapshot is not None
    return {
        (row.model.key, row.model.version): (row.rating, row.lower, row.upper, row.votes)
        for row in snapshot.rows.select_related("model")
    }


def start_afresh() -> None:
    """Every vote, battle, count and board gone; the models stay."""
    Vote.objects.all().delete()
    Battle.objects.all().delete()
    Generation.objects.all().delete()
    ImportedBattle.objects.all().delete()
    PairCount.objects.all().delete()
    OnlineElo.objects.all().delete()
    Snapshot.objects.all().delete()


def test_each_row_has_fastchat_columns_then_ours(played: list[Vote]) -> None:
    rows = list(dataset.iter_vote_rows())
    assert len(rows) == len(played) and list(rows[0]) == list(dataset.COLUMNS)
    vote = played[0]
    battle = vote.battle
    row = next(r for r in rows if r["battle_id"] == str(battle.public_id))
    winner = {"left": "model_a", "right": "model_b", "tie": "tie", "both_bad": "tie (bothbad)"}
    left, right = battle.generation_left, battle.generation_right
    assert row == {
        "model_a": battle.model_left.display_name,
        "model_b": battle.model_right.display_name,
        "winner": winner[vote.choice],
        "tstamp": vote.created_at.timestamp(),
        "anony": True,
        "judge": vote.voter,
        "battle_id": str(battle.public_id),
        "prompt": battle.prompt_text,
        "category": battle.category,
        "seed": battle.seed,
        "steps_a": left.steps,
        "guidance_a": left.guidance,
        "width_a": left.width,
        "height_a": left.height,
        "output_width_a": left.output_width,
        "output_height_a": left.output_height,
        "compute_ms_a": left.compute_ms,
        "steps_b": right.steps,
        "guidance_b": right.guidance,
        "width_b": right.width,
        "height_b": right.height,
        "output_width_b": right.output_width,
        "output_height_b": right.output_height,
        "compute_ms_b": right.compute_ms,
        "image_sha256_a": left.image_sha256,
        "image_sha256_b": right.image_sha256,
        "ms_to_vote": vote.ms_to_vote,
        "excluded": False,
        "excluded_reason": "",
        "standing": "",
        "model_a_key": battle.model_left.key,
        "model_a_version": battle.model_left.version,
        "model_b_key": battle.model_right.key,
        "model_b_version": battle.model_right.version,
        "source": "live",
    }
    assert len(row["image_sha256_a"]) == 64


def test_rows_come_oldest_first_and_only_from_anonymous_voted_battles(
    played: list[Vote],
) -> None:
    Battle.objects.filter(pk=played[0].battle_id).update(anonymous=False)
    rows = list(dataset.iter_vote_rows())
    assert [r["battle_id"] for r in rows] == [str(v.battle.public_id) for v in played[1:]]


def test_excluded_votes_are_flagged_or_left_out(played: list[Vote]) -> None:
    chosen = Vote.objects.filter(pk__in=[v.pk for v in played[:3]])
    services.exclude_votes(votes=chosen, reason="burst from one session", by="admin")
    rows = list(dataset.iter_vote_rows())
    flagged = [r for r in rows if r["excluded"]]
    assert len(flagged) == 3 and {(r["excluded_reason"], r["standing"]) for r in flagged} == {
        ("burst from one session", "admin")
    }
    assert len(list(dataset.iter_vote_rows(include_excluded=False))) == len(played) - 3


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_every_format_holds_the_same_rows(played: list[Vote], fmt: str) -> None:
    data = export(fmt)
    if fmt == "jsonl":
        rows = [json.loads(line) for line in data.decode().splitlines()]
    elif fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(data.decode())))
    else:
        rows = pq.read_table(io.BytesIO(data)).to_pylist()
    expected = list(dataset.iter_vote_rows())
    assert [r["battle_id"] for r in rows] == [r["battle_id"] for r in expected]
    assert [str(r["winner"]) for r in rows] == [r["winner"] for r in expected]
    assert [float(r["tstamp"]) for r in rows] == [r["tstamp"] for r in expected]
    if fmt != "csv":
        assert rows == expected


def test_an_empty_dataset_is_a_header_or_an_empty_table(db: None) -> None:
    assert export("csv").decode().splitlines() == [",".join(dataset.COLUMNS)]
    assert export("jsonl") == b""
    assert pq.read_table(io.BytesIO(export("parquet"))).column_names == list(dataset.COLUMNS)


def test_the_csv_guards_cells_a_spreadsheet_would_run(
    models: list[Any], finish_battle: Any
) -> None:
    ImageModel.objects.filter(pk=models[0].pk).update(display_name="+Tiny In-house")
    played = play(count=6, finish_battle=finish_battle, prompt=FORMULA)
    services.exclude_votes(
        votes=Vote.objects.filter(pk=played[0].pk), reason="@SUM(A1)", by="admin"
    )
    rows = list(csv.DictReader(io.StringIO(export("csv").decode())))
    assert {r["prompt"] for r in rows} == {f"'{FORMULA}"}
    assert "'@SUM(A1)" in {r["excluded_reason"] for r in rows}
    assert "'+Tiny In-house" in {r["model_a"] for r in rows} | {r["model_b"] for r in rows}
    raw = [json.loads(line) for line in export("jsonl").decode().splitlines()]
    assert {r["prompt"] for r in raw} == {FORMULA}, "JSON Lines keeps the text as it is"


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_an_export_imported_into_a_fresh_arena_gives_the_same_board(
    played: list[Vote], fmt: str, tmp_path: Path
) -> None:
    excluded = Vote.objects.filter(pk__in=[v.pk for v in played[:4]])
    services.exclude_votes(votes=excluded, reason="test", by="admin")
    leaderboard_services.refresh_all()  # what the refresh queued on commit does
    original = board()
    path = tmp_path / f"votes.{fmt}"
    path.write_bytes(export(fmt))
    models_before = set(ImageModel.objects.values_list("pk", flat=True))

    start_afresh()
    result = import_battles(path=path)
    leaderboard_services.refresh_all()

    assert (result.rows, result.excluded_rows, result.models_created) == (len(played) - 4, 4, [])
    assert set(ImageModel.objects.values_list("pk", flat=True)) == models_before
    after = board()
    assert set(after) == set(original)
    for model, (rating, lower, upper, count) in original.items():
        assert after[model][0] == pytest.approx(rating, abs=RATING_TOL)
        assert after[model][1] == pytest.approx(lower, abs=RATING_TOL)
        assert after[model][2] == pytest.approx(upper, abs=RATING_TOL)
        assert after[model][3] == count


def test_an_import_maps_rows_to_the_exact_model_version(played: list[Vote], tmp_path: Path) -> None:
    """A newer version with the same display name must not take the old version's votes."""
    old = ImageModel.objects.get(key="tiny-inhouse")
    ImageModel.objects.filter(pk=old.pk).update(retired=True, enabled=False)
    newer = ImageModel.objects.create(
        key=old.key, version="2", display_name=old.display_name, source=old.source
    )
    path = tmp_path / "votes.csv"
    path.write_bytes(export("csv"))
    start_afresh()
    import_battles(path=path)
    used = set(ImportedBattle.objects.values_list("model_a_id", flat=True))
    used |= set(ImportedBattle.objects.values_list("model_b_id", flat=True))
    assert old.pk in used and newer.pk not in used


def test_an_unrecognised_excluded_value_is_a_row_error(tmp_path: Path, db: None) -> None:
    from leaderboard.imports import ImportFailed

    path = tmp_path / "log.jsonl"
    rows = [
        {"model_a": "A", "model_b": "B", "winner": "tie", "excluded": "perhaps"},
        {"model_a": "A", "model_b": "B", "winner": "tie", "excluded": False, "extra": 1},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    with pytest.raises(ImportFailed) as failed:
        import_battles(path=path)
    assert failed.value.errors == [(1, "excluded 'perhaps' is not true or false")]


def test_parquet_is_written_in_bounded_batches(
    models: list[Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """10,000 votes exported in batches of 1,000 hold a fraction of what all the rows take
    (a fixed share of it: the bound is relative, so it holds on any machine)."""
    total, batch = 10_000, 1_000
    make_votes(models=models, count=total)
    monkeypatch.setattr(dataset, "BATCH_ROWS", batch)
    monkeypatch.setattr(dataset, "CHUNK_SIZE", 500)

    tracemalloc.start()
    try:
        everything = list(dataset.iter_vote_rows())
        _, held_peak = tracemalloc.get_traced_memory()
        del everything
        tracemalloc.reset_peak()
        start, _ = tracemalloc.get_traced_memory()
        with (tmp_path / "votes.parquet").open("wb") as file:
            written = dataset.write_votes(fmt="parquet", out=file)
        _, export_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert written == total
    parquet = pq.ParquetFile(tmp_path / "votes.parquet")
    assert parquet.metadata.num_rows == total
    assert parquet.metadata.num_row_groups == total // batch
    assert export_peak - start < held_peak / 4, (export_peak - start, held_peak)


@pytest.mark.parametrize("fmt", ["parquet", "jsonl", "csv"])
def test_a_stream_sends_each_batch_as_soon_as_it_is_written(
    models: list[Any], monkeypatch: pytest.MonkeyPatch, fmt: str
) -> None:
    make_votes(models=models, count=3_000)
    monkeypatch.setattr(dataset, "BATCH_ROWS", 1_000)
    monkeypatch.setattr(dataset, "TEXT_BATCH_ROWS", 1_000)

    chunks = list(dataset.stream_votes(fmt=fmt))

    assert all(isinstance(chunk, bytes) and chunk for chunk in chunks)
    # One chunk per batch of rows (and the footer, for Parquet), not one for the whole file.
    assert len(chunks) == (4 if fmt == "parquet" else 3)
    file = io.BytesIO(b"".join(chunks))
    with io.BytesIO() as written:
        dataset.write_votes(fmt=fmt, out=written)
        assert written.getvalue() == file.getvalue()  # the same file as an export writes
    if fmt == "parquet":
        assert pq.ParquetFile(file).metadata.num_rows == 3_000


def make_votes(*, models: list[Any], count: int) -> None:
    """Voted battles written in bulk, far faster than through the services."""
    rng = random.Random(1)
    pairs = [(a, b) for a in models for b in models if a.pk != b.pk]
    sides = [rng.choice(pairs) for _ in range(count)]
    generations = Generation.objects.bulk_create(
        [
            Generation(
                model=model,
                prompt=f"bulk prompt {i}",
                seed=i,
                steps=4,
                guidance=5.0,
                width=64,
                height=64,
                output_width=64,
                output_height=64,
                status=Generation.Status.DONE,
                image_sha256=f"{i:064x}",
            )
            for i, pair in enumerate(sides)
            for model in pair
        ],
        batch_size=2000,
    )
    battles = Battle.objects.bulk_create(
        [
            Battle(
                prompt_text=f"bulk prompt {i}",
                category="other",
                model_left=left,
                model_right=right,
                generation_left=generations[2 * i],
                generation_right=generations[2 * i + 1],
                seed=i,
                status=Battle.Status.VOTED,
                owner="bulk",
            )
            for i, (left, right) in enumerate(sides)
        ],
        batch_size=2000,
    )
    Vote.objects.bulk_create(
        [
            Vote(battle=battle, choice=rng.choice(list(dataset.WINNER)), voter=f"{i:064x}")
            for i, battle in enumerate(battles)
        ],
        batch_size=2000,
    )


def test_the_command_writes_each_format(played: list[Vote], tmp_path: Path) -> None:
    out = io.StringIO()
    call_command("export_votes", "--format", "jsonl", stdout=out)
    assert len(out.getvalue().splitlines()) == len(played)
    services.exclude_votes(votes=Vote.objects.filter(pk=played[0].pk), reason="x", by="x")
    target = tmp_path / "votes.parquet"
    call_command(
        "export_votes", "--format", "parquet", "--output", str(target), "--exclude-excluded"
    )
    assert pq.read_table(target).num_rows == len(played) - 1
    with pytest.raises(CommandError, match="--output"):
        call_command("export_votes", "--format", "parquet")


def imported_log(tmp_path: Path, models: list[Any]) -> Path:
    """A FastChat log of 40 anonymous battles between the arena's models, some without a time,
    and two named ones (which the board does not count)."""
    rng = random.Random(3)
    lines = []
    for i in range(42):
        left, right = rng.sample(models, 2)
        row = {
            "model_a": left.display_name,
            "model_b": right.display_name,
            "winner": rng.choice(["model_a", "model_a", "model_b", "tie", "tie (bothbad)"]),
            "anony": i < 40,
            "category": rng.choice(["animals", "portraits"]),
        }
        if i % 3:
            row["tstamp"] = 1_700_000_000 + i
        lines.append(json.dumps(row))
    path = tmp_path / "old-log.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_the_export_holds_imported_votes_with_their_source(
    played: list[Vote], models: list[Any], tmp_path: Path, fmt: str
) -> None:
    import_battles(path=imported_log(tmp_path, models))
    rows = list(dataset.iter_vote_rows())
    sources = [row["source"] for row in rows]
    assert sources.count("live") == len(played)
    assert sources.count("import:old-log.jsonl") == 40, "named imported battles are not counted"
    assert [row["tstamp"] for row in rows] == sorted(row["tstamp"] for row in rows)
    assert len(export(fmt)) > 0


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_an_export_with_imported_votes_reimported_into_an_empty_arena_gives_the_same_board(
    played: list[Vote], models: list[Any], fmt: str, tmp_path: Path
) -> None:
    import_battles(path=imported_log(tmp_path, models))
    leaderboard_services.refresh_all()
    original = board()
    path = tmp_path / f"votes.{fmt}"
    path.write_bytes(export(fmt))

    start_afresh()
    result = import_battles(path=path)
    leaderboard_services.refresh_all()

    assert result.rows == len(played) + 40
    after = board()
    assert set(after) == set(original)
    for model, (rating, lower, upper, count) in original.items():
        assert after[model][0] == pytest.approx(rating, abs=RATING_TOL)
        assert after[model][1] == pytest.approx(lower, abs=RATING_TOL)
        assert after[model][2] == pytest.approx(upper, abs=RATING_TOL)
        assert after[model][3] == count
