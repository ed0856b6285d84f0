"""Write a stored board to CSV, JSON or Parquet, with how it was computed travelling along.

CSV carries the provenance as leading ``# key: value`` lines, JSON as a ``snapshot`` object,
Parquet in the schema metadata under ``image_arena.snapshot``.
"""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any, BinaryIO, TextIO, cast

from generation.records import csv_cell
from leaderboard.models import Snapshot

FORMATS = ("csv", "json", "parquet")
PARQUET_METADATA_KEY = b"image_arena.snapshot"
COLUMNS = (
    "rank",
    "model",
    "key",
    "version",
    "organisation",
    "licence",
    "in_house",
    "rating",
    "lower",
    "upper",
    "minus",
    "plus",
    "votes",
    "win_rate",
    "online_elo",
    "provisional",
    "bound",
    "rank_best",
    "rank_worst",
    "votes_to_flip",
    "controlled_rating",
    "style_move",
    "davidson_rating",
)


def board_rows(snapshot: Snapshot) -> list[dict[str, Any]]:
    """The board's lines in rank order, one flat dict per model, as every format writes them."""
    rows = []
    for row in snapshot.rows.select_related("model").order_by("rank", "-rating", "model__key"):
        model = row.model
        rows.append(
            {
                "rank": row.rank,
                "model": model.display_name,
                "key": model.key,
                "version": model.version,
                "organisation": model.organisation,
                "licence": model.licence,
                "in_house": model.is_in_house,
                "rating": _finite(row.rating),
                "lower": _finite(row.lower),
                "upper": _finite(row.upper),
                "minus": _finite(row.minus),
                "plus": _finite(row.plus),
                "votes": row.votes,
                "win_rate": _finite(row.win_rate),
                "online_elo": _finite(row.online_elo),
                "provisional": row.provisional,
                # Why the interval is open ("" when it is not); an open side is null above.
                "bound": row.status,
                "rank_best": row.rank_best,
                "rank_worst": row.rank_worst,
                "votes_to_flip": row.votes_to_flip,
                "controlled_rating": _finite(row.controlled_rating),
                "style_move": _finite(row.style_move),
                "davidson_rating": _finite(row.davidson_rating),
            }
        )
    return rows


def provenance(snapshot: Snapshot) -> dict[str, Any]:
    """How and from what the board was computed, enough to compute it again."""
    return {
        "id": snapshot.pk,
        "category": snapshot.category or "overall",
        "created_at": snapshot.created_at.isoformat(),
        "method": snapshot.method,
        "interval_method": snapshot.interval_method,
        "bootstrap_rounds": snapshot.bootstrap_rounds,
        "seed": snapshot.seed,
        "resampled_from": snapshot.resampled_from_id,
        "resample_steps": snapshot.resample_steps,
        "level": snapshot.level,
        "votes_used": snapshot.votes_used,
        "both_bad_as_tie": snapshot.both_bad_as_tie,
        "anchor": snapshot.anchor,
        "components": snapshot.components,
        "simultaneous": snapshot.simultaneous,
        "provisional_votes": snapshot.provisional_votes,
        "provisional_half_width": snapshot.provisional_half_width,
        "style": snapshot.style,
        "tie_model": snapshot.tie_model,
        "davidson_nu": snapshot.davidson_nu,
        "code_version": snapshot.code_version,
    }


def write_board(*, snapshot: Snapshot, fmt: str, out: BinaryIO | TextIO) -> None:
    """Write the board in ``fmt`` (csv, json or parquet); parquet needs a binary file."""
    if fmt == "parquet":
        if isinstance(out, io.TextIOBase):
            raise ValueError("parquet is binary: open the output file in binary mode")
        _write_parquet(snapshot=snapshot, out=out)
        return
    if fmt == "csv":
        text = _csv_text(snapshot)
    elif fmt == "json":
        document = {"snapshot": provenance(snapshot), "rows": board_rows(snapshot)}
        text = json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    else:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if isinstance(out, io.TextIOBase):
        out.write(text)
    else:
        cast(BinaryIO, out).write(text.encode())


def _csv_text(snapshot: Snapshot) -> str:
    buffer = io.StringIO()
    for key, value in provenance(snapshot).items():
        buffer.write(f"# {key}: {_comment_value(value)}\n")
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in board_rows(snapshot):
        writer.writerow([csv_cell(row[column]) for column in COLUMNS])
    return buffer.getvalue()


def _comment_value(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return " ".join(str(value).splitlines())  # a line break would end the comment


def _write_parquet(*, snapshot: Snapshot, out: BinaryIO | TextIO) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    types = {
        "rank": pa.int64(),
        "in_house": pa.bool_(),
        "votes": pa.int64(),
        "provisional": pa.bool_(),
        "bound": pa.string(),
        **dict.fromkeys(("rank_best", "rank_worst", "votes_to_flip"), pa.int64()),
        **dict.fromkeys(("model", "key", "version", "organisation", "licence"), pa.string()),
    }
    schema = pa.schema(
        [(column, types.get(column, pa.float64())) for column in COLUMNS],
        metadata={PARQUET_METADATA_KEY: json.dumps(provenance(snapshot)).encode()},
    )
    table = pa.Table.from_pylist(board_rows(snapshot), schema=schema)
    pq.write_table(table, out)


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None
