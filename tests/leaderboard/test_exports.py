"""Exporting boards: rows and provenance survive CSV, JSON and Parquet; spreadsheets stay safe."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from django.core.management import CommandError, call_command

from generation.models import ImageModel
from leaderboard import exports, services
from leaderboard.imports import import_battles
from leaderboard.models import Snapshot, SnapshotRow

pytestmark = pytest.mark.django_db

FORMULA_NAMES = ['=HYPERLINK("http://example.com","click")', "@SUM(1)", "+1"]


@pytest.fixture
def snapshot() -> Snapshot:
    """A stored bootstrap board whose model names a spreadsheet would run as formulas, one
    negative rating, a model without online Elo and a provisional one."""
    board = Snapshot.objects.create(
        category="",
        created_at=datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
        interval_method=Snapshot.IntervalMethod.BOOTSTRAP,
        bootstrap_rounds=100,
        seed=7,
        votes_used=4321,
        anchor="",
        components=1,
        code_version="abc123",
    )
    lines = [
        (FORMULA_NAMES[0], 1, 1050.25, 1040.0, 1060.5, 0.625, 1033.3, False),
        (FORMULA_NAMES[1], 2, 1001.0, 990.5, 1011.75, 0.5, None, False),
        (FORMULA_NAMES[2], 2, 995.5, 980.0, 1010.0, 0.48, 990.0, False),
        ("Plain, with a comma", 4, -12.5, -30.25, 5.0, 0.1, 950.0, True),
    ]
    for i, (name, rank, rating, lower, upper, win_rate, elo, provisional) in enumerate(lines):
        model = ImageModel.objects.create(
            key=f"model-{i}",
            version="2",
            display_name=name,
            organisation="-Org" if i == 3 else "Org",
            licence="apache-2.0",
            is_in_house=i == 0,
            source="test",
        )
        SnapshotRow.objects.create(
            snapshot=board,
            model=model,
            rank=rank,
            rating=rating,
            lower=lower,
            upper=upper,
            votes=100 * (i + 1),
            win_rate=win_rate,
            online_elo=elo,
            provisional=provisional,
        )
    board.refresh_from_db()
    return board


def exported(snapshot: Snapshot, fmt: str) -> bytes:
    out = io.BytesIO()
    exports.write_board(snapshot=snapshot, fmt=fmt, out=out)
    return out.getvalue()


def read_csv(data: bytes) -> tuple[dict[str, str], list[dict[str, str]]]:
    """The ``# key: value`` lines, then the table under them."""
    lines = data.decode().splitlines()
    comments = [line for line in lines if line.startswith("# ")]
    provenance = dict(line[2:].split(": ", 1) for line in comments)
    return provenance, list(csv.DictReader(lines[len(comments) :]))


def as_csv_text(value: object) -> str:
    """What a cell should read in the CSV: formula-like text behind a quote, numbers as-is."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return f"'{value}"
    return str(value)


def test_board_rows_come_in_rank_order_with_the_distances_to_the_bounds(
    snapshot: Snapshot,
) -> None:
    rows = exports.board_rows(snapshot)

    assert [row["rank"] for row in rows] == [1, 2, 2, 4]
    assert rows[0]["model"] == FORMULA_NAMES[0]
    assert (rows[3]["minus"], rows[3]["plus"]) == (17.75, 17.5)
    assert rows[1]["online_elo"] is None
    assert list(rows[0]) == list(exports.COLUMNS)


def test_csv_export_carries_the_rows_and_the_provenance(snapshot: Snapshot) -> None:
    provenance, rows = read_csv(exported(snapshot, "csv"))

    assert provenance == {key: as_csv_text(v) for key, v in exports.provenance(snapshot).items()}
    assert provenance["id"] == str(snapshot.pk)
    assert provenance["category"] == "overall"
    assert provenance["created_at"] == "2025-01-02T03:04:05+00:00"
    expected = exports.board_rows(snapshot)
    assert rows == [{key: as_csv_text(value) for key, value in row.items()} for row in expected]
    assert float(rows[0]["rating"]) == expected[0]["rating"]


def test_csv_export_quotes_formula_text_but_leaves_negative_numbers(snapshot: Snapshot) -> None:
    _, rows = read_csv(exported(snapshot, "csv"))

    assert [row["model"] for row in rows] == [
        '\'=HYPERLINK("http://example.com","click")',
        "'@SUM(1)",
        "'+1",
        "Plain, with a comma",
    ]
    assert rows[3]["organisation"] == "'-Org"
    assert (rows[3]["rating"], rows[3]["lower"], rows[3]["upper"]) == ("-12.5", "-30.25", "5.0")


def test_json_export_carries_the_rows_and_the_provenance(snapshot: Snapshot) -> None:
    document = json.loads(exported(snapshot, "json"))

    assert document["snapshot"] == exports.provenance(snapshot)
    assert document["snapshot"]["seed"] == 7
    assert document["snapshot"]["interval_method"] == "bootstrap"
    assert document["rows"] == exports.board_rows(snapshot)


def test_parquet_export_carries_the_rows_and_the_provenance(snapshot: Snapshot) -> None:
    table = pq.read_table(io.BytesIO(exported(snapshot, "parquet")))

    assert table.to_pylist() == exports.board_rows(snapshot)
    metadata = json.loads(table.schema.metadata[exports.PARQUET_METADATA_KEY])
    assert metadata == exports.provenance(snapshot)
    assert str(table.schema.field("rating").type) == "double"


def test_parquet_refuses_a_text_stream(snapshot: Snapshot) -> None:
    with pytest.raises(ValueError, match="binary"):
        exports.write_board(snapshot=snapshot, fmt="parquet", out=io.StringIO())


def test_csv_and_json_can_be_written_to_a_text_stream(snapshot: Snapshot) -> None:
    out = io.StringIO()

    exports.write_board(snapshot=snapshot, fmt="json", out=out)

    assert json.loads(out.getvalue())["rows"] == exports.board_rows(snapshot)


@pytest.fixture
def imported_log(tmp_path: Path) -> None:
    """A small anonymous log of three models, counted but with no board computed yet."""
    rows = [
        {"model_a": "One", "model_b": "Two", "winner": "model_a", "category": "portraits"},
        {"model_a": "Two", "model_b": "Three", "winner": "model_a", "category": "portraits"},
        {"model_a": "Three", "model_b": "One", "winner": "tie", "category": "landscapes"},
        {"model_a": "One", "model_b": "Three", "winner": "model_b", "category": "portraits"},
        {"model_a": "Two", "model_b": "One", "winner": "tie", "category": "portraits"},
    ]
    path = tmp_path / "log.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    import_battles(path=path)


def test_export_command_computes_a_board_when_there_is_none(imported_log: None) -> None:
    out, err = io.StringIO(), io.StringIO()

    call_command("export_leaderboard", "--format", "json", stdout=out, stderr=err)

    document = json.loads(out.getvalue())
    assert "no snapshot for overall yet: computed one" in err.getvalue()
    assert document["snapshot"]["votes_used"] == 5
    assert document["snapshot"]["code_version"] == services.code_version()
    assert {row["model"] for row in document["rows"]} == {"One", "Two", "Three"}


def test_export_command_writes_the_latest_board_of_a_category(imported_log: None) -> None:
    services.refresh(category="portraits")
    out = io.StringIO()

    call_command("export_leaderboard", "--format", "csv", "--category", "portraits", stdout=out)

    provenance, _ = read_csv(out.getvalue().encode())
    assert provenance["category"] == "portraits"
    assert provenance["votes_used"] == "4"


def test_export_command_writes_a_named_snapshot_to_parquet(
    snapshot: Snapshot, tmp_path: Path
) -> None:
    target = tmp_path / "board.parquet"

    call_command(
        "export_leaderboard",
        "--format",
        "parquet",
        "--snapshot",
        str(snapshot.pk),
        "--output",
        str(target),
        stderr=io.StringIO(),
    )

    assert pq.read_table(target).to_pylist() == exports.board_rows(snapshot)


def test_export_command_needs_an_output_file_for_parquet(snapshot: Snapshot) -> None:
    with pytest.raises(CommandError, match="--output"):
        call_command("export_leaderboard", "--format", "parquet")


def test_export_command_rejects_an_unknown_category(snapshot: Snapshot) -> None:
    with pytest.raises(CommandError, match="category must be overall or one of"):
        call_command("export_leaderboard", "--format", "csv", "--category", "cats")


def test_export_command_without_votes_has_nothing_to_export(db: None) -> None:
    with pytest.raises(CommandError, match="no votes for overall"):
        call_command("export_leaderboard", "--format", "csv", stdout=io.StringIO())
