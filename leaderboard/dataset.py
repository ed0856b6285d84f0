"""The vote dataset: every vote the board counts, in FastChat's clean-battle layout: one row per
anonymous voted battle played here, and one per anonymous battle imported from a log, merged in
time order; the ``source`` column says which (``live``, or ``import:`` and the log's name).

``model_a`` is the left side. The FastChat columns (``model_a``, ``model_b``, ``winner``,
``tstamp``, ``anony``, ``judge``) come first, so ``leaderboard.imports`` reads the file back;
ours follow: the battle's public id, prompt, settings of each side, image hashes, the time to
vote, whether the vote is excluded from the counts and why (``standing``, a
``Vote.Standing`` code, empty when it counts; ``excluded_reason``, a note), and each model's
key and version.
Rows are streamed from the database and written in bounded batches, whatever the table's size,
to a file or, chunk by chunk, to an HTTP response.
"""

from __future__ import annotations

import csv
import heapq
import io
import json
from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO, TextIO, cast

from django.db.models.functions import Coalesce

from arena.models import Battle, Vote
from generation.records import csv_cell
from leaderboard import tally
from leaderboard.models import ImportedBattle

FORMATS = ("jsonl", "csv", "parquet")
CONTENT_TYPES = {
    "jsonl": "application/x-ndjson",
    "csv": "text/csv; charset=utf-8",
    "parquet": "application/vnd.apache.parquet",
}
LIVE = "live"  # source of a vote cast here
IMPORTED_PREFIX = "import:"  # source of an imported battle: this, then the log's name
CHUNK_SIZE = 5_000  # rows fetched per database round trip
BATCH_ROWS = 50_000  # rows per Parquet record batch (one row group each)
TEXT_BATCH_ROWS = 5_000  # rows per write of a text format
# The vote's choice as FastChat's winner, the left side being model_a (the one mapping, in tally).
WINNER = {choice: tally.WINNER[outcome] for choice, outcome in tally.FROM_CHOICE.items()}
# Requested settings, then what the image came out as: the style board's covariates per vote.
SIDE_FIELDS = (
    "steps",
    "guidance",
    "width",
    "height",
    "output_width",
    "output_height",
    "compute_ms",
)
COLUMNS = (
    "model_a",
    "model_b",
    "winner",
    "tstamp",
    "anony",
    "judge",
    "battle_id",
    "prompt",
    "category",
    "seed",
    *(f"{name}_a" for name in SIDE_FIELDS),
    *(f"{name}_b" for name in SIDE_FIELDS),
    "image_sha256_a",
    "image_sha256_b",
    "ms_to_vote",
    "excluded",
    "excluded_reason",
    "standing",
    "model_a_key",
    "model_a_version",
    "model_b_key",
    "model_b_version",
    "source",
)
# Database lookups behind the columns that are not computed.
_LOOKUPS = {
    "model_a": "battle__model_left__display_name",
    "model_b": "battle__model_right__display_name",
    "judge": "voter",
    "battle_id": "battle__public_id",
    "prompt": "battle__prompt_text",
    "category": "battle__category",
    "seed": "battle__seed",
    **{f"{name}_a": f"battle__generation_left__{name}" for name in SIDE_FIELDS},
    **{f"{name}_b": f"battle__generation_right__{name}" for name in SIDE_FIELDS},
    "image_sha256_a": "battle__generation_left__image_sha256",
    "image_sha256_b": "battle__generation_right__image_sha256",
    "ms_to_vote": "ms_to_vote",
    "excluded": "excluded",
    "excluded_reason": "excluded_reason",
    "standing": "standing",
    "model_a_key": "battle__model_left__key",
    "model_a_version": "battle__model_left__version",
    "model_b_key": "battle__model_right__key",
    "model_b_version": "battle__model_right__version",
}


def iter_vote_rows(*, include_excluded: bool = True) -> Iterator[dict[str, Any]]:
    """Each anonymous vote, live or imported, as a flat dict in ``COLUMNS`` order, oldest
    first (an imported row without a time at its import time), streamed."""
    return heapq.merge(
        _live_rows(include_excluded=include_excluded),
        _imported_rows(),
        key=lambda row: row["tstamp"],
    )


def _live_rows(*, include_excluded: bool) -> Iterator[dict[str, Any]]:
    votes = Vote.objects.filter(battle__anonymous=True, battle__status=Battle.Status.VOTED)
    if not include_excluded:
        votes = votes.filter(excluded=False)
    lookups = [*_LOOKUPS.values(), "choice", "created_at"]
    for values in (
        votes.order_by("created_at", "pk").values(*lookups).iterator(chunk_size=CHUNK_SIZE)
    ):
        row = {column: values[lookup] for column, lookup in _LOOKUPS.items()}
        row["winner"] = WINNER[values["choice"]]
        row["tstamp"] = values["created_at"].timestamp()
        row["anony"] = True
        row["battle_id"] = str(row["battle_id"])
        row["source"] = LIVE
        yield {column: row[column] for column in COLUMNS}


def _imported_rows() -> Iterator[dict[str, Any]]:
    """The anonymous imported battles (those the board counts), in the order they count."""
    imported = (
        ImportedBattle.objects.filter(anonymous=True)
        .annotate(when=Coalesce("tstamp", "imported_at"))
        .order_by("when", "pk")
    )
    fields = (
        "when",
        "winner",
        "judge",
        "category",
        "source",
        "model_a__display_name",
        "model_b__display_name",
        "model_a__key",
        "model_a__version",
        "model_b__key",
        "model_b__version",
    )
    for values in imported.values(*fields).iterator(chunk_size=CHUNK_SIZE):
        row: dict[str, Any] = dict.fromkeys(COLUMNS)
        row.update(
            model_a=values["model_a__display_name"],
            model_b=values["model_b__display_name"],
            winner=values["winner"],
            tstamp=values["when"].timestamp(),
            anony=True,
            judge=values["judge"],
            category=values["category"],
            excluded=False,
            excluded_reason="",
            model_a_key=values["model_a__key"],
            model_a_version=values["model_a__version"],
            model_b_key=values["model_b__key"],
            model_b_version=values["model_b__version"],
            source=f"{IMPORTED_PREFIX}{values['source']}",
        )
        yield row


def write_votes(
    *, fmt: str, out: BinaryIO | TextIO | io.TextIOBase, include_excluded: bool = True
) -> int:
    """Write the vote dataset as jsonl, csv or parquet (binary file needed); returns the rows."""
    if fmt == "parquet" and isinstance(out, io.TextIOBase):
        raise ValueError("parquet is binary: open the output file in binary mode")
    written = 0
    for chunk, count in _chunks(fmt=fmt, include_excluded=include_excluded):
        if isinstance(out, io.TextIOBase):
            out.write(cast(str, chunk))
        else:
            cast(BinaryIO, out).write(chunk.encode() if isinstance(chunk, str) else chunk)
        written += count
    return written


def stream_votes(*, fmt: str, include_excluded: bool = True) -> Iterator[bytes]:
    """The vote dataset as a stream of byte chunks, each of a bounded number of rows: an HTTP
    response can send it as it is read from the database."""
    for chunk, _ in _chunks(fmt=fmt, include_excluded=include_excluded):
        if chunk:
            yield chunk.encode() if isinstance(chunk, str) else chunk


def _chunks(*, fmt: str, include_excluded: bool) -> Iterator[tuple[str | bytes, int]]:
    """Pieces of the file, text for jsonl and csv, bytes for parquet, with their row counts."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    rows = iter_vote_rows(include_excluded=include_excluded)
    if fmt == "parquet":
        yield from _parquet_chunks(rows)
    elif fmt == "jsonl":
        yield from _jsonl_chunks(rows)
    else:
        yield from _csv_chunks(rows)


def _batches(rows: Iterable[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) == TEXT_BATCH_ROWS:
            yield batch
            batch = []
    if batch:
        yield batch


def _jsonl_chunks(rows: Iterable[dict[str, Any]]) -> Iterator[tuple[str, int]]:
    for batch in _batches(rows):
        lines = [json.dumps(row, ensure_ascii=False, allow_nan=False) for row in batch]
        yield "\n".join(lines) + "\n", len(batch)


def _csv_chunks(rows: Iterable[dict[str, Any]]) -> Iterator[tuple[str, int]]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    header = buffer.getvalue()
    for batch in _batches(rows):
        buffer.seek(0)
        buffer.truncate()
        writer.writerows([csv_cell(row[column]) for column in COLUMNS] for row in batch)
        yield header + buffer.getvalue(), len(batch)
        header = ""
    if header:  # no votes: the header alone
        yield header, 0


class _Sink(io.RawIOBase):
    """A write-only file that keeps what was written until it is taken."""

    def __init__(self) -> None:
        super().__init__()
        self._pending = bytearray()
        self._position = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self._pending += view
        self._position += view.nbytes
        return view.nbytes

    def tell(self) -> int:
        return self._position

    def take(self) -> bytes:
        data = bytes(self._pending)
        self._pending.clear()
        return data


def _parquet_chunks(rows: Iterable[dict[str, Any]]) -> Iterator[tuple[bytes, int]]:
    """The Parquet file one row group at a time: a record batch's bytes as soon as they are
    written, then the footer."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    sizes = [
        f"{name}_{side}"
        for name in ("steps", "width", "height", "output_width", "output_height", "compute_ms")
        for side in "ab"
    ]
    types = {
        **dict.fromkeys(("tstamp", "guidance_a", "guidance_b"), pa.float64()),
        **dict.fromkeys(("anony", "excluded"), pa.bool_()),
        **dict.fromkeys(("seed", "ms_to_vote", *sizes), pa.int64()),
    }
    schema = pa.schema([(column, types.get(column, pa.string())) for column in COLUMNS])
    # Collected column by column: lists of values are far smaller than a dict per row.
    columns: dict[str, list[Any]] = {column: [] for column in COLUMNS}
    sink = _Sink()
    pending = 0
    with pq.ParquetWriter(sink, schema) as writer:
        for row in rows:
            for column in COLUMNS:
                columns[column].append(row[column])
            pending += 1
            if pending == BATCH_ROWS:
                writer.write_batch(pa.RecordBatch.from_pydict(columns, schema=schema))
                yield sink.take(), pending
                pending = 0
                for values in columns.values():
                    values.clear()
        if pending:
            writer.write_batch(pa.RecordBatch.from_pydict(columns, schema=schema))
    yield sink.take(), pending
