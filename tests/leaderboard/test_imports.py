"""Importing battle logs: counts, new models, line-numbered errors, Elo, and the ratings after."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from django.db import IntegrityError, connection, transaction

from generation.models import ImageModel
from leaderboard import imports, ratings, services
from leaderboard.imports import ImportFailed, import_battles
from leaderboard.models import ImportedBattle, OnlineElo, PairCount, SnapshotRow

pytestmark = pytest.mark.django_db

RATING_TOL = 1e-9  # display points; the same counts fitted twice differ only by rounding

LOG = [
    {"model_a": "Alpha Model", "model_b": "beta", "winner": "model_a", "category": "portraits"},
    {"model_a": "beta", "model_b": "Alpha Model", "winner": "model_a", "category": "portraits"},
    {"model_a": "Alpha Model", "model_b": "beta", "winner": "tie", "category": "portraits"},
    {
        "model_a": "beta",
        "model_b": "Alpha Model",
        "winner": "tie (bothbad)",
        "category": "portraits",
    },
    {"model_a": "Gamma XL", "model_b": "Alpha Model", "winner": "model_b"},
]


def make_model(*, key: str, display_name: str) -> ImageModel:
    return ImageModel.objects.create(key=key, display_name=display_name, source="test")


@pytest.fixture
def alpha_and_beta() -> tuple[ImageModel, ImageModel]:
    """Two registered models: the log names one by display name and the other by key."""
    return (
        make_model(key="alpha", display_name="Alpha Model"),
        make_model(key="beta", display_name="Beta"),
    )


def write_jsonl(path: Path, rows: list[dict[str, Any] | str]) -> Path:
    lines = [row if isinstance(row, str) else json.dumps(row) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    columns = ["model_a", "model_b", "winner", "category", "tstamp", "anony", "judge"]
    lines = [",".join(columns)]
    for row in rows:
        lines.append(",".join(str(row.get(column, "")) for column in columns))
    path.write_text("\n".join(lines) + "\n")
    return path


def pair_counts() -> dict[tuple[str, str, str], tuple[int, int, int, int]]:
    """Every pair-count row keyed by category and the two models' display names."""
    return {
        (row.category, row.model_a.display_name, row.model_b.display_name): (
            row.wins_a,
            row.wins_b,
            row.ties,
            row.both_bad,
        )
        for row in PairCount.objects.select_related("model_a", "model_b")
    }


def table_sizes() -> dict[str, int]:
    return {
        "battles": ImportedBattle.objects.count(),
        "pair_counts": PairCount.objects.count(),
        "models": ImageModel.objects.count(),
        "online_elo": OnlineElo.objects.count(),
    }


def test_a_jsonl_log_is_counted_per_category_and_pair(alpha_and_beta: Any, tmp_path: Path) -> None:
    result = import_battles(path=write_jsonl(tmp_path / "log.jsonl", list(LOG)))

    assert (result.rows, result.anonymous_rows, result.models_created) == (5, 5, ["Gamma XL"])
    # Pairs are stored lower primary key first: Alpha, then Beta, then Gamma.
    assert pair_counts() == {
        ("portraits", "Alpha Model", "Beta"): (1, 1, 1, 1),
        ("other", "Alpha Model", "Gamma XL"): (1, 0, 0, 0),
    }
    assert ImportedBattle.objects.count() == 5


def test_a_csv_log_gives_the_same_counts_as_jsonl(alpha_and_beta: Any, tmp_path: Path) -> None:
    import_battles(path=write_csv(tmp_path / "log.csv", list(LOG)))

    assert pair_counts() == {
        ("portraits", "Alpha Model", "Beta"): (1, 1, 1, 1),
        ("other", "Alpha Model", "Gamma XL"): (1, 0, 0, 0),
    }


def test_a_file_without_a_known_extension_is_sniffed(alpha_and_beta: Any, tmp_path: Path) -> None:
    import_battles(path=write_jsonl(tmp_path / "log.data", list(LOG)))
    import_battles(path=write_csv(tmp_path / "log.export", list(LOG)))

    assert pair_counts()[("portraits", "Alpha Model", "Beta")] == (2, 2, 2, 2)


def test_unknown_models_are_created_disabled_so_they_never_battle(
    alpha_and_beta: Any, tmp_path: Path
) -> None:
    import_battles(path=write_jsonl(tmp_path / "log.jsonl", list(LOG)))

    gamma = ImageModel.objects.get(display_name="Gamma XL")
    assert (gamma.key, gamma.enabled, gamma.backend, gamma.source) == (
        "gamma-xl",
        False,
        "http",
        "imported",
    )
    assert gamma not in ImageModel.objects.enabled()


def test_a_new_models_key_is_unique_and_the_same_name_maps_to_it_next_time(
    tmp_path: Path,
) -> None:
    taken = make_model(key="gamma-xl", display_name="Gamma")
    rows: list[dict[str, Any] | str] = [
        {"model_a": "Gamma XL", "model_b": "Gamma", "winner": "tie"}
    ]

    first = import_battles(path=write_jsonl(tmp_path / "one.jsonl", rows))
    second = import_battles(path=write_jsonl(tmp_path / "two.jsonl", rows))

    created = ImageModel.objects.get(display_name="Gamma XL")
    assert created.key.startswith("gamma-xl-") and created.pk != taken.pk
    assert (first.models_created, second.models_created) == (["Gamma XL"], [])
    assert pair_counts() == {("other", "Gamma", "Gamma XL"): (0, 0, 2, 0)}


def test_importing_again_adds_to_the_existing_counts(alpha_and_beta: Any, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "log.jsonl", list(LOG))

    import_battles(path=path)
    import_battles(path=path)

    assert pair_counts() == {
        ("portraits", "Alpha Model", "Beta"): (2, 2, 2, 2),
        ("other", "Alpha Model", "Gamma XL"): (2, 0, 0, 0),
    }


def test_bad_rows_are_reported_with_their_line_numbers_and_nothing_is_written(
    alpha_and_beta: Any, tmp_path: Path
) -> None:
    import_battles(path=write_jsonl(tmp_path / "earlier.jsonl", list(LOG[:2])))
    before = table_sizes()
    rows: list[dict[str, Any] | str] = [
        {"model_a": "Alpha Model", "model_b": "Delta", "winner": "model_a"},
        {"model_a": "Alpha Model", "model_b": "beta", "winner": "draw"},
        {"model_a": "Alpha Model", "winner": "tie"},
        "",
        {"model_a": "beta", "model_b": "beta", "winner": "tie"},
        {"model_a": "Alpha Model", "model_b": "beta", "winner": "tie", "category": "cats"},
        '{"model_a": "Alpha Model", "model_b": ',
        {"model_a": "Alpha Model", "model_b": "beta", "winner": "tie", "tstamp": "yesterday"},
        {"model_a": "Alpha Model", "model_b": "Epsilon", "winner": "model_b"},
    ]

    with pytest.raises(ImportFailed) as failed:
        import_battles(path=write_jsonl(tmp_path / "log.jsonl", rows))

    errors = dict(failed.value.errors)
    assert sorted(errors) == [2, 3, 5, 6, 7, 8]
    assert failed.value.total == 6
    assert "winner 'draw' is not one of" in errors[2]
    assert "model_b is missing" in errors[3]
    assert "same model" in errors[5]
    assert "category 'cats'" in errors[6]
    assert "not valid JSON" in errors[7]
    assert "tstamp 'yesterday'" in errors[8]
    assert table_sizes() == before
    assert not ImageModel.objects.filter(display_name__in=["Delta", "Epsilon"]).exists()


def test_two_names_of_one_model_in_a_row_are_the_same_model(
    alpha_and_beta: Any, tmp_path: Path
) -> None:
    rows: list[dict[str, Any] | str] = [
        {"model_a": "Alpha Model", "model_b": "alpha", "winner": "tie"}
    ]

    with pytest.raises(ImportFailed) as failed:
        import_battles(path=write_jsonl(tmp_path / "log.jsonl", rows))

    assert failed.value.errors == [
        (1, "model_a 'Alpha Model' and model_b 'alpha' are the same model")
    ]


def test_bad_csv_rows_carry_the_line_numbers_an_editor_shows(
    alpha_and_beta: Any, tmp_path: Path
) -> None:
    path = tmp_path / "log.csv"
    path.write_text(
        "model_a,model_b,winner,anony,judge\n"
        "Alpha Model,beta,model_a,true,someone\n"
        'Alpha Model,beta,tie,0,"a judge\nwith a line break"\n'
        "Alpha Model,beta,model_c,1,x\n"
        "Alpha Model,beta,tie,maybe,x\n"
        "Alpha Model,beta\n"
    )

    with pytest.raises(ImportFailed) as failed:
        import_battles(path=path)

    assert [line for line, _ in failed.value.errors] == [5, 6, 7]
    assert "anony 'maybe'" in failed.value.errors[1][1]
    assert ImportedBattle.objects.count() == 0


def test_a_csv_without_a_required_column_fails_on_the_header(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("model_a,winner\nA,model_a\n")

    with pytest.raises(ImportFailed) as failed:
        import_battles(path=path)

    assert failed.value.errors == [(1, "the header lacks model_b")]


def test_a_file_with_only_a_header_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("model_a,model_b,winner\n")

    with pytest.raises(ImportFailed) as failed:
        import_battles(path=path)

    assert failed.value.errors == [(1, "the file holds no battles")]


def test_many_bad_rows_report_the_first_fifty_and_the_total(tmp_path: Path) -> None:
    rows: list[dict[str, Any] | str] = [{"model_a": "A", "model_b": "B", "winner": "?"}] * 120

    with pytest.raises(ImportFailed) as failed:
        import_battles(path=write_jsonl(tmp_path / "log.jsonl", rows))

    assert len(failed.value.errors) == imports.MAX_REPORTED_ERRORS
    assert failed.value.total == 120
    assert failed.value.errors[-1][0] == imports.MAX_REPORTED_ERRORS


def test_non_anonymous_rows_are_stored_but_not_counted(alpha_and_beta: Any, tmp_path: Path) -> None:
    rows: list[dict[str, Any] | str] = [
        {"model_a": "Alpha Model", "model_b": "beta", "winner": "model_a", "anony": False},
        {"model_a": "Alpha Model", "model_b": "beta", "winner": "model_b", "anony": True},
        {"model_a": "Alpha Model", "model_b": "beta", "winner": "model_b"},
    ]

    result = import_battles(path=write_jsonl(tmp_path / "log.jsonl", rows))

    assert (result.rows, result.anonymous_rows) == (3, 2)
    assert pair_counts() == {("other", "Alpha Model", "Beta"): (0, 2, 0, 0)}
    assert list(ImportedBattle.objects.order_by("line").values_list("anonymous", flat=True)) == [
        False,
        True,
        True,
    ]
    assert OnlineElo.objects.get(model__key="alpha").votes == 2


def test_rows_keep_their_source_line_time_and_judge(alpha_and_beta: Any, tmp_path: Path) -> None:
    rows: list[dict[str, Any] | str] = [
        {"model_a": "Alpha Model", "model_b": "beta", "winner": "tie", "tstamp": 1700000000.5},
        {
            "model_a": "Alpha Model",
            "model_b": "beta",
            "winner": "tie",
            "tstamp": "2024-03-01T12:00:00+01:00",
            "judge": "tab\there, back\\slash",
        },
        {"model_a": "Alpha Model", "model_b": "beta", "winner": "tie", "tstamp": "2024-03-01"},
    ]

    import_battles(path=write_jsonl(tmp_path / "log.jsonl", rows), source="arena-2024")

    stored = list(ImportedBattle.objects.order_by("line"))
    assert [(b.source, b.line) for b in stored] == [("arena-2024", n) for n in (1, 2, 3)]
    assert [b.tstamp for b in stored] == [
        datetime(2023, 11, 14, 22, 13, 20, 500000, tzinfo=UTC),
        datetime(2024, 3, 1, 11, 0, tzinfo=UTC),
        datetime(2024, 3, 1, tzinfo=UTC),
    ]
    assert stored[1].judge == "tab\there, back\\slash"
    assert stored[0].judge == "" and stored[0].category == "other"


def test_online_elo_continues_from_current_ratings_in_time_order(
    alpha_and_beta: Any, settings: Any, tmp_path: Path
) -> None:
    settings.LEADERBOARD_ELO_K = 16.0
    alpha, beta = alpha_and_beta
    OnlineElo.objects.create(model=alpha, rating=1100.0, votes=7)
    rows: list[dict[str, Any] | str] = [
        {"model_a": "Alpha Model", "model_b": "beta", "winner": "model_a", "tstamp": 300},
        {"model_a": "beta", "model_b": "Alpha Model", "winner": "model_a", "tstamp": 100},
        {"model_a": "Alpha Model", "model_b": "beta", "winner": "tie"},
        {
            "model_a": "Alpha Model",
            "model_b": "beta",
            "winner": "model_b",
            "tstamp": "1970-01-01T00:03:20Z",
        },
        {"model_a": "Alpha Model", "model_b": "beta", "winner": "model_a", "anony": False},
    ]

    import_battles(path=write_jsonl(tmp_path / "log.jsonl", rows))

    expected = {"alpha": 1100.0, "beta": 1000.0}
    # Alpha's score per vote in time order: t=100 beta won, t=200 beta won, t=300 alpha won,
    # then the untimed tie; the non-anonymous row is not a vote.
    for alpha_score in (0.0, 0.0, 1.0, 0.5):
        change = ratings.elo_change(
            rating_a=expected["alpha"], rating_b=expected["beta"], outcome=alpha_score, k=16.0
        )
        expected["alpha"] += change
        expected["beta"] -= change
    stored = {row.model.key: row for row in OnlineElo.objects.select_related("model")}
    assert stored["alpha"].rating == pytest.approx(expected["alpha"], abs=1e-9)
    assert stored["beta"].rating == pytest.approx(expected["beta"], abs=1e-9)
    assert (stored["alpha"].votes, stored["beta"].votes) == (11, 4)


def test_ratings_after_import_equal_those_computed_directly_from_the_log(
    settings: Any, tmp_path: Path
) -> None:
    settings.LEADERBOARD_INTERVALS = "sandwich"
    settings.LEADERBOARD_ANCHOR = ""
    settings.LEADERBOARD_BOTH_BAD_AS_TIE = True
    rng = np.random.default_rng(5)
    names = ["Model Zero", "Model One", "Model Two", "Model Three", "Model Four"]
    strengths = np.array([0.0, 0.4, -0.3, 0.8, -0.6])
    outcomes = np.array(["model_a", "model_b", "tie", "tie (bothbad)"])
    rows: list[dict[str, Any] | str] = []
    for _ in range(3000):
        a, b = rng.choice(len(names), size=2, replace=False)
        p_a = 1.0 / (1.0 + np.exp(strengths[b] - strengths[a]))
        winner = rng.choice(outcomes, p=[0.75 * p_a, 0.75 * (1 - p_a), 0.2, 0.05])
        category = str(rng.choice(["portraits", "landscapes", "other"]))
        rows.append(
            {"model_a": names[a], "model_b": names[b], "winner": str(winner), "category": category}
        )

    import_battles(path=write_jsonl(tmp_path / "log.jsonl", rows))
    snapshot = services.refresh()

    assert snapshot is not None
    pk = dict(ImageModel.objects.values_list("display_name", "pk"))
    order = sorted(pk[name] for name in names)  # the board's matrix order
    index = {name: order.index(pk[name]) for name in names}
    score = {"model_a": 1.0, "model_b": 0.0, "tie": 0.5, "tie (bothbad)": 0.5}
    counts = ratings.aggregate_votes(
        a=[index[r["model_a"]] for r in rows if isinstance(r, dict)],
        b=[index[r["model_b"]] for r in rows if isinstance(r, dict)],
        outcome=[score[r["winner"]] for r in rows if isinstance(r, dict)],
        n_models=len(names),
    )
    theta = ratings.fit_bradley_terry(counts=counts)
    low, high = ratings.sandwich_intervals(counts=counts, log_strengths=theta)
    rating = ratings.to_display(log_strengths=theta)
    lower, upper = ratings.intervals_to_display(log_strengths=theta, lower=low, upper=high)
    board = {row.model_id: row for row in SnapshotRow.objects.filter(snapshot=snapshot)}
    assert snapshot.votes_used == len(rows)
    for i, model_id in enumerate(order):
        assert board[model_id].rating == pytest.approx(rating[i], abs=RATING_TOL)
        assert board[model_id].lower == pytest.approx(lower[i], abs=RATING_TOL)
        assert board[model_id].upper == pytest.approx(upper[i], abs=RATING_TOL)


def test_the_import_command_reports_rows_and_models_created(
    alpha_and_beta: Any, tmp_path: Path
) -> None:
    out = io.StringIO()

    call_command("import_battles", str(write_jsonl(tmp_path / "log.jsonl", list(LOG))), stdout=out)

    assert "imported 5 rows (5 anonymous, counted)" in out.getvalue()
    assert "models created (disabled): 1: Gamma XL" in out.getvalue()


def test_the_import_command_prints_each_bad_row_and_fails(tmp_path: Path) -> None:
    rows: list[dict[str, Any] | str] = [
        {"model_a": "A", "model_b": "B", "winner": "tie"},
        {"model_a": "A", "model_b": "A", "winner": "tie"},
        {"model_a": "A", "model_b": "B", "winner": "maybe"},
    ]
    err = io.StringIO()

    with pytest.raises(CommandError, match="2 bad rows; nothing was imported"):
        call_command("import_battles", str(write_jsonl(tmp_path / "log.jsonl", rows)), stderr=err)

    assert err.getvalue().splitlines() == [
        "line 2: model_a and model_b are the same model ('A')",
        "line 3: winner 'maybe' is not one of model_a, model_b, tie, tie (bothbad)",
    ]


def _stored() -> tuple[list[Any], dict[Any, Any], dict[str, float]]:
    rows = sorted(
        ImportedBattle.objects.values_list(
            "line",
            "model_a__display_name",
            "model_b__display_name",
            "winner",
            "tstamp",
            "anonymous",
            "category",
            "judge",
        )
    )
    return rows, pair_counts(), dict(OnlineElo.objects.values_list("model__key", "rating"))


def test_the_column_wise_check_stores_and_counts_what_the_row_by_row_one_does(
    alpha_and_beta: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(5)
    names = ["Alpha Model", "beta", "Gamma XL", "  Delta  "]
    rows: list[dict[str, Any] | str] = []
    for i in range(400):
        a, b = rng.choice(len(names), size=2, replace=False)
        row: dict[str, Any] = {
            "model_a": names[a],
            "model_b": names[b],
            "winner": ["model_a", "model_b", "tie", "tie (bothbad)"][rng.integers(4)],
            "anony": bool(rng.random() < 0.9),
            "tstamp": 1_700_000_000.25 + float(rng.integers(0, 10_000)),
            "category": ["portraits", "animals", "", None][rng.integers(4)],
            "judge": f"user {i}" if i % 3 else "",
            "turn": 1,
        }
        if i % 7 == 0:
            del row["tstamp"]  # untimed rows count last for Elo, in file order
        rows.append(row)
    log = write_jsonl(tmp_path / "log.jsonl", rows)
    read_fast: list[int] = []
    real_fast = imports._fast_battles

    def spy(*args: Any) -> Any:
        read_fast.append(1)
        return real_fast(*args)

    monkeypatch.setattr(imports, "_fast_battles", spy)
    fast = import_battles(path=log, source="log")
    assert read_fast and fast.rows == 400
    stored_fast = _stored()

    ImportedBattle.objects.all().delete()
    PairCount.objects.all().delete()
    OnlineElo.objects.all().delete()
    monkeypatch.setattr(imports, "_fast_battles", lambda *a: None)
    slow = import_battles(path=log, source="log")

    assert (slow.rows, slow.anonymous_rows) == (fast.rows, fast.anonymous_rows)
    rows_slow, counts_slow, elo_slow = _stored()
    assert rows_slow == stored_fast[0]
    assert counts_slow == stored_fast[1]
    assert elo_slow.keys() == stored_fast[2].keys()
    assert all(abs(elo_slow[k] - stored_fast[2][k]) < RATING_TOL for k in elo_slow)


@pytest.mark.parametrize(
    "bad_row",
    [
        '{"model_a": "A", "model_b": "A", "winner": "tie"}',
        '{"model_a": "A", "model_b": "B", "winner": "maybe"}',
        '{"model_a": "A", "model_b": "B", "winner": "tie", "tstamp": "yesterday"}',
        '{"model_a": "A", "model_b": "B", "winner": "tie", "anony": "perhaps"}',
        '{"model_a": "A", "model_b": "B", "winner": "tie", "tstamp": 1e300}',
        '{"model_a": "A", "model_b": "B", "winner": "tie", "category": "cooking"}',
        '{"model_a": "A", "model_b": 7, "winner": "tie"}',
        "[1, 2]",
        "not json",
    ],
)
def test_a_bad_row_among_good_ones_is_named_by_its_line_and_nothing_is_written(
    tmp_path: Path, bad_row: str
) -> None:
    good = '{"model_a": "A", "model_b": "B", "winner": "model_a", "tstamp": 1700000000}'
    log = tmp_path / "log.jsonl"
    log.write_text("\n".join([good] * 5 + [bad_row] + [good] * 3) + "\n")
    before = table_sizes()
    with pytest.raises(ImportFailed) as failed:
        import_battles(path=log)
    assert [line for line, _ in failed.value.errors] == [6]
    assert table_sizes() == before


def test_progress_is_reported_while_reading_and_writing(
    alpha_and_beta: Any, tmp_path: Path
) -> None:
    log = write_jsonl(tmp_path / "log.jsonl", [*LOG] * 40)
    heard: list[tuple[str, int, int]] = []
    import_battles(path=log, progress=lambda *report: heard.append(tuple(report)))
    assert ("read", log.stat().st_size, log.stat().st_size) in heard
    assert heard[-1] == ("write", 200, 200)


TEXT_LOG = [
    *LOG,
    {"model_a": "Alpha Model", "model_b": "beta", "winner": "model_b", "category": "text"},
    {"model_a": "beta", "model_b": "Alpha Model", "winner": "model_b", "category": "text"},
    {"model_a": "beta", "model_b": "Alpha Model", "winner": "tie", "category": "coding"},
]


def test_a_category_that_is_not_ours_fails_the_whole_file_by_default(
    alpha_and_beta: Any, tmp_path: Path
) -> None:
    with pytest.raises(ImportFailed) as failed:
        import_battles(path=write_jsonl(tmp_path / "log.jsonl", list(TEXT_LOG)))
    assert failed.value.total == 3 and "'text' is not one of" in failed.value.errors[0][1]
    assert ImportedBattle.objects.count() == 0


def test_unknown_categories_can_be_mapped_to_ours_and_are_counted(
    alpha_and_beta: Any, tmp_path: Path
) -> None:
    result = import_battles(
        path=write_jsonl(tmp_path / "log.jsonl", list(TEXT_LOG)),
        category_map={"text": "other", "coding": "portraits"},
    )
    assert result.categories_mapped == {"text": 2, "coding": 1}
    assert result.categories_dropped == {} and result.rows == 8
    assert pair_counts()[("other", "Alpha Model", "Beta")] == (1, 1, 0, 0)
    assert pair_counts()[("portraits", "Alpha Model", "Beta")] == (1, 1, 2, 1)


def test_unknown_categories_can_be_dropped_and_are_counted(
    alpha_and_beta: Any, tmp_path: Path
) -> None:
    result = import_battles(
        path=write_jsonl(tmp_path / "log.jsonl", list(TEXT_LOG)),
        category_map={"coding": "portraits"},
        drop_unknown_categories=True,
    )
    assert result.categories_mapped == {"coding": 1}
    assert result.categories_dropped == {"text": 2}
    assert result.rows == 6 and ImportedBattle.objects.count() == 6


def test_a_map_to_a_category_that_is_not_ours_is_refused(
    alpha_and_beta: Any, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="category_map must map to one of"):
        import_battles(
            path=write_jsonl(tmp_path / "log.jsonl", list(TEXT_LOG)), category_map={"text": "x"}
        )


def test_the_import_command_maps_and_drops_categories_and_reports_them(
    alpha_and_beta: Any, tmp_path: Path
) -> None:
    out = io.StringIO()
    call_command(
        "import_battles",
        str(write_jsonl(tmp_path / "log.jsonl", list(TEXT_LOG))),
        "--map-category",
        "coding=portraits",
        "--drop-unknown-categories",
        stdout=out,
    )
    assert "category 'coding' -> 'portraits': 1 rows" in out.getvalue()
    assert "category 'text' dropped: 2 rows" in out.getvalue()
    with pytest.raises(CommandError, match="THEIRS=OURS"):
        call_command("import_battles", str(tmp_path / "log.jsonl"), "--map-category", "text")


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's COPY path")
@pytest.mark.parametrize("may_switch_checks_off", [True, False])
def test_the_foreign_key_check_runs_once_per_model_and_is_back_on_after(
    alpha_and_beta: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    may_switch_checks_off: bool,
) -> None:
    if not may_switch_checks_off:  # a role without the privilege: the per-row checks stay on
        monkeypatch.setattr(imports, "_ROW_CHECKS_OFF", "SET LOCAL no_such_parameter = 1")
    result = import_battles(path=write_jsonl(tmp_path / "log.jsonl", list(LOG)))
    assert result.rows == len(LOG) and ImportedBattle.objects.count() == len(LOG)
    with connection.cursor() as cursor:
        cursor.execute("SHOW session_replication_role")
        assert cursor.fetchone() == ("origin",)
        # Still in the import's transaction here: a row naming no model fails its check.
        battle = ImportedBattle.objects.first()
        assert battle is not None
        with pytest.raises(IntegrityError), transaction.atomic():
            point_at_no_model(battle.pk, cursor)


def point_at_no_model(pk: int, cursor: Any) -> None:
    ImportedBattle.objects.filter(pk=pk).update(model_a_id=10**9)
    cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")


def battle_indexes() -> set[str]:
    """The imported battles' indexes, by name, as the database lists them."""
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(
            cursor, ImportedBattle._meta.db_table
        )
    return {name for name, about in constraints.items() if about["index"]}


def test_indexes_are_built_after_the_rows_and_kept_when_the_table_is_larger(
    alpha_and_beta: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.test.utils import CaptureQueriesContext

    # The rows a PostgreSQL heap holds are also estimated from its size (dead rows that other
    # tests rolled back included): here only the live rows count.
    monkeypatch.setattr(imports, "_HEAP_BYTES_PER_ROW", 10**12)
    before = battle_indexes()
    assert len(before) >= 3  # the two model columns and the time
    log = write_jsonl(tmp_path / "log.jsonl", list(LOG))
    with CaptureQueriesContext(connection) as first:
        import_battles(path=log)
    # An empty table: dropped before the rows go in, built again after, in the transaction.
    dropped = [q["sql"] for q in first.captured_queries if q["sql"].startswith("DROP INDEX")]
    assert len(dropped) >= 3
    assert battle_indexes() == before
    with CaptureQueriesContext(connection) as second:
        import_battles(path=write_jsonl(tmp_path / "small.jsonl", list(LOG[:2])))
    # Two rows into a table of five: the indexes stay while they go in.
    assert not [q for q in second.captured_queries if q["sql"].startswith("DROP INDEX")]
    assert battle_indexes() == before
    assert ImportedBattle.objects.count() == len(LOG) + 2


def test_an_import_that_fails_after_its_rows_went_in_leaves_rows_and_indexes_as_they_were(
    alpha_and_beta: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = battle_indexes()
    sizes = table_sizes()

    def broken(**kwargs: Any) -> None:
        raise RuntimeError("the counts could not be written")

    monkeypatch.setattr(services, "add_pair_counts", broken)
    with pytest.raises(RuntimeError):
        import_battles(path=write_jsonl(tmp_path / "log.jsonl", list(LOG)))
    assert table_sizes() == sizes
    assert battle_indexes() == before


def test_a_vote_counted_while_the_rows_go_in_is_not_lost_from_online_elo(
    alpha_and_beta: Any, settings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tally starts from online Elo before the rows go in; a rating that moved meanwhile
    (a live vote) is what the import continues from."""
    settings.LEADERBOARD_ELO_K = 16.0
    alpha, beta = alpha_and_beta
    OnlineElo.objects.create(model=alpha, rating=1000.0, votes=1)
    OnlineElo.objects.create(model=beta, rating=1000.0, votes=1)
    insert = imports._insert_battles

    def insert_beside_a_vote(**kwargs: Any) -> None:
        insert(**kwargs)
        OnlineElo.objects.filter(model=alpha).update(rating=1200.0)

    monkeypatch.setattr(imports, "_insert_battles", insert_beside_a_vote)
    rows: list[dict[str, Any] | str] = [
        {"model_a": "Alpha Model", "model_b": "beta", "winner": "model_a", "tstamp": 100}
    ]
    import_battles(path=write_jsonl(tmp_path / "log.jsonl", rows))
    change = ratings.elo_change(rating_a=1200.0, rating_b=1000.0, outcome=1.0, k=16.0)
    assert OnlineElo.objects.get(model=alpha).rating == pytest.approx(1200.0 + change, abs=1e-9)
    assert OnlineElo.objects.get(model=beta).rating == pytest.approx(1000.0 - change, abs=1e-9)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's heap size")
def test_a_large_heap_keeps_its_indexes_even_with_few_live_rows(
    alpha_and_beta: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A table emptied but not vacuumed still has its pages, which an index build reads."""
    from django.test.utils import CaptureQueriesContext

    import_battles(path=write_jsonl(tmp_path / "first.jsonl", list(LOG[:1])))
    monkeypatch.setattr(imports, "_HEAP_BYTES_PER_ROW", 1)  # a page counts as 8192 rows
    with CaptureQueriesContext(connection) as queries:
        import_battles(path=write_jsonl(tmp_path / "log.jsonl", list(LOG)))
    assert not [q for q in queries.captured_queries if q["sql"].startswith("DROP INDEX")]
