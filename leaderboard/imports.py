"""Import votes from an existing battle log (FastChat's clean-battle layout, JSONL or CSV).

Every row is checked before anything is written, so a file either goes in whole or not at all.
The rows are stored as ``ImportedBattle``; the anonymous ones are also added to the pair counts
and to online Elo, exactly as if they had been voted here.

Our own vote dataset (``leaderboard.dataset``) reads back too: columns FastChat lacks are ignored,
rows marked ``excluded`` are skipped (and counted in the result), and ``model_a_key`` with
``model_a_version`` (likewise for b), when they name a model here, pick that exact row.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import itertools
import json
import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.utils import timezone
from django.utils.text import slugify
from numpy.typing import NDArray

from arena.categories import CATEGORIES, OTHER
from generation.models import ImageModel
from generation.records import FORMULA_STARTS
from leaderboard import services, tally
from leaderboard.models import ImportedBattle, OnlineElo

logger = logging.getLogger(__name__)

MAX_REPORTED_ERRORS = 50
WRITE_BATCH = 50_000  # rows per COPY write or executemany, and per progress report
REQUIRED_COLUMNS = ("model_a", "model_b", "winner")

# FastChat's winner spellings, indexed by tally.Outcome.
WINNERS: tuple[str, ...] = tuple(tally.WINNER[outcome] for outcome in tally.Outcome)

_WINNER_CODE = {name: int(outcome) for name, outcome in tally.FROM_WINNER.items()}
_CATEGORY_CODE = {name: code for code, name in enumerate(CATEGORIES)}
_TRUE = frozenset({"true", "1"})
_FALSE = frozenset({"false", "0"})
_NAME_LIMIT = ImageModel._meta.get_field("display_name").max_length or 200
_JUDGE_LIMIT = ImportedBattle._meta.get_field("judge").max_length or 200
_KEY_LIMIT = ImageModel._meta.get_field("key").max_length or 100
_SOURCE_LIMIT = ImportedBattle._meta.get_field("source").max_length or 300
# datetime's own range, in unix seconds (years 1 to 9999).
_EARLIEST_S = -62_135_596_800.0
_LATEST_S = 253_402_300_799.0
# Marks a name that stands for a model's primary key; a real name has no control characters.
_PK_PREFIX = "\x00pk:"

Ints = NDArray[np.int64]
# progress(stage, done, total): "read" counts bytes, "write" counts rows.
Progress = Callable[[str, int, int], None]
# Columns of our own vote export that pick exact model versions or skip rows: read row by row.
_ROW_BY_ROW_COLUMNS = frozenset(
    {"excluded", "model_a_key", "model_a_version", "model_b_key", "model_b_version"}
)
READ_CHUNK = 1 << 23
# PostgreSQL: per-row trigger checks off for the COPY where the role may (_check_models_once).
_ROW_CHECKS_OFF = "SET LOCAL session_replication_role = replica"
_ROW_CHECKS_ON = "SET LOCAL session_replication_role = DEFAULT"
# About what an imported battle takes in PostgreSQL's heap (a million took 132 MB).
_HEAP_BYTES_PER_ROW = 130


def _silent(stage: str, done: int, total: int) -> None:
    pass


class ImportFailed(Exception):
    """The file has bad rows; nothing was written. ``errors`` holds the first few."""

    def __init__(self, *, errors: list[tuple[int, str]], total: int) -> None:
        self.errors = errors[:MAX_REPORTED_ERRORS]
        self.total = total
        super().__init__(f"{total} bad row{'s' if total != 1 else ''}; nothing was imported")


@dataclass(frozen=True)
class ImportResult:
    rows: int
    anonymous_rows: int
    models_created: list[str]
    seconds: float
    excluded_rows: int = 0  # rows marked excluded in the file: skipped, neither stored nor counted
    # Rows whose category is not ours, per category in the file: renamed by category_map ...
    categories_mapped: dict[str, int] = field(default_factory=dict)
    # ... or, with drop_unknown_categories, left out (neither stored nor counted).
    categories_dropped: dict[str, int] = field(default_factory=dict)


def import_battles(
    *,
    path: Path,
    source: str | None = None,
    progress: Progress | None = None,
    category_map: Mapping[str, str] | None = None,
    drop_unknown_categories: bool = False,
) -> ImportResult:
    """Check every row of a JSONL or CSV battle log, then store it and count its anonymous
    votes in one transaction; raise ImportFailed, writing nothing, if any row is bad.
    ``progress(stage, done, total)`` hears how far reading ("read", bytes) and writing
    ("write", rows) have come.

    A category that is not ours is a row error, unless ``category_map`` renames it to one of
    ours or ``drop_unknown_categories`` leaves its rows out; the result counts both."""
    started = time.perf_counter()
    report = progress or _silent
    source = path.name if source is None else source
    if len(source) > _SOURCE_LIMIT:
        raise ValueError(f"source must be at most {_SOURCE_LIMIT} characters")
    wrong = {k: v for k, v in (category_map or {}).items() if v not in _CATEGORY_CODE}
    if wrong:
        raise ValueError(f"category_map must map to one of {', '.join(CATEGORIES)}; got {wrong!r}")
    excluded_rows = 0
    battles = _fast_battles(path, report)
    if battles is None:
        # Anything the column-wise check does not vouch for is read row by row, which names
        # every bad row by its line (and maps or drops categories that are not ours).
        battles = _Battles(
            versions=_model_versions(),
            category_map=category_map,
            drop_unknown_categories=drop_unknown_categories,
        )
        for line, record in _records(path):
            if isinstance(record, str):
                battles.errors.add(line, record)
            elif (excluded := _excluded(record.get("excluded"))) is None:
                battles.errors.add(
                    line, f"excluded {record.get('excluded')!r} is not true or false"
                )
            elif excluded:
                excluded_rows += 1
            else:
                battles.add(line, record)
    if not len(battles.lines) and not battles.errors.total:
        battles.errors.add(1, "the file holds no battles")
    model_ids = _resolve_models(battles)
    if battles.errors.total:
        raise ImportFailed(errors=battles.errors.first, total=battles.errors.total)

    new_names = sorted(name for name, pk in model_ids.items() if pk is None)
    with transaction.atomic():
        for name, model in zip(new_names, _create_models(names=new_names), strict=True):
            model_ids[name] = model.pk
        pk_of_name = np.array([model_ids[name] for name in battles.names], dtype=np.int64)
        a = pk_of_name[np.asarray(battles.model_a, dtype=np.int64)]
        b = pk_of_name[np.asarray(battles.model_b, dtype=np.int64)]
        anonymous = np.frombuffer(bytes(battles.anonymous), dtype=np.bool_)
        winner = np.frombuffer(bytes(battles.winner), dtype=np.uint8).astype(np.int64)
        category = np.frombuffer(bytes(battles.category), dtype=np.uint8).astype(np.int64)
        # Counted like live votes, by the one tally; online Elo continues from where it stands,
        # over the file's votes in time order (untimed ones last, in file order).
        sequence = np.argsort(np.asarray(battles.order_key)[anonymous], kind="stable")

        def count(current: dict[int, float]) -> tally.Tally:
            return tally.tally(
                left=a[anonymous][sequence],
                right=b[anonymous][sequence],
                outcome=winner[anonymous][sequence],
                group=category[anonymous][sequence],
                elo_from=current,
                k=settings.LEADERBOARD_ELO_K,
            )

        # On PostgreSQL the tally (numpy and Python, no database) runs in a thread while the
        # server takes the rows (the COPY waits on the server, not on this process); SQLite
        # does its work in this process, so there the two run one after the other. The tally
        # starts from online Elo as it stands now; the Elo lock is taken only after the rows
        # are in, so live votes are not held up meanwhile. A vote counted in between moves a
        # rating: then the tally runs again from the ratings under the lock.
        overlap = connection.vendor == "postgresql"
        guess = dict(OnlineElo.objects.values_list("model_id", "rating"))
        with ThreadPoolExecutor(max_workers=1) as pool:
            counting = pool.submit(count, guess) if overlap else None
            _insert_battles(battles=battles, model_a=a, model_b=b, source=source, report=report)
            counted = count(guess) if counting is None else counting.result()
        _ = services.locked_elo_cursor()  # one writer of online Elo at a time
        current = dict(OnlineElo.objects.values_list("model_id", "rating"))
        if current != guess:
            counted = count(current)
        services.add_pair_counts(pairs=counted.pairs, labels=[(name, True) for name in CATEGORIES])
        services.write_online_elo(counted=counted, existing=current.keys())
    result = ImportResult(
        rows=len(battles.lines),
        anonymous_rows=int(anonymous.sum()),
        models_created=new_names,
        seconds=time.perf_counter() - started,
        excluded_rows=excluded_rows,
        categories_mapped=dict(battles.mapped),
        categories_dropped=dict(battles.dropped),
    )
    logger.info(
        "imported %d battles (%d anonymous) from %s in %.1f s; %d new models; "
        "%d excluded rows skipped",
        result.rows,
        result.anonymous_rows,
        source,
        result.seconds,
        len(new_names),
        excluded_rows,
    )
    return result


@dataclass
class _Errors:
    first: list[tuple[int, str]] = field(default_factory=list)
    total: int = 0

    def add(self, line: int, message: str) -> None:
        self.total += 1
        if len(self.first) < MAX_REPORTED_ERRORS:
            self.first.append((line, message))


class _Battles:
    """The checked rows, column by column (names as indices into ``names``) to keep a million
    rows small in memory."""

    def __init__(
        self,
        *,
        versions: Mapping[tuple[str, str], int] | None = None,
        category_map: Mapping[str, str] | None = None,
        drop_unknown_categories: bool = False,
    ) -> None:
        self.errors = _Errors()
        self.category_map = dict(category_map or {})
        self.drop_unknown_categories = drop_unknown_categories
        self.mapped: dict[str, int] = {}
        self.dropped: dict[str, int] = {}
        self.versions = versions or {}
        self.names: list[str] = []
        self.name_index: dict[str, int] = {}
        self.lines: list[int] = []
        self.model_a: list[int] = []
        self.model_b: list[int] = []
        self.winner = bytearray()
        self.category = bytearray()
        self.anonymous = bytearray()
        self.tstamp: list[datetime | None] = []
        # Seconds for ordering the Elo updates; NaN (no tstamp) sorts after every time.
        self.order_key: list[float] = []
        self.judge: list[str] = []

    def add(self, line: int, record: Mapping[str, Any]) -> None:
        problems: list[str] = []
        name_a = self._exact(record, "model_a") or self._name(
            record.get("model_a"), "model_a", problems
        )
        name_b = self._exact(record, "model_b") or self._name(
            record.get("model_b"), "model_b", problems
        )
        if name_a is not None and name_a == name_b:
            problems.append(f"model_a and model_b are the same model ({name_a!r})")
        winner = record.get("winner")
        winner_code = _WINNER_CODE.get(winner.strip() if isinstance(winner, str) else "", -1)
        if winner is None or winner == "":
            problems.append("winner is missing")
        elif winner_code < 0:
            problems.append(f"winner {winner!r} is not one of {', '.join(WINNERS)}")
        stamp, seconds = _tstamp(record.get("tstamp"), problems)
        anonymous = _anonymous(record.get("anony"), problems)
        category = record.get("category")
        if isinstance(category, str):
            category = category.strip() or OTHER
        elif category is None:
            category = OTHER
        category_code = _CATEGORY_CODE.get(category, -1) if isinstance(category, str) else -1
        if category_code < 0 and isinstance(category, str) and category in self.category_map:
            category_code = _CATEGORY_CODE[self.category_map[category]]
            self.mapped[category] = self.mapped.get(category, 0) + 1
        elif category_code < 0 and isinstance(category, str) and self.drop_unknown_categories:
            # Counted before the row's other checks: a dropped row is not read any further.
            self.dropped[category] = self.dropped.get(category, 0) + 1
            return
        elif category_code < 0:
            problems.append(f"category {category!r} is not one of {', '.join(CATEGORIES)}")
        judge = record.get("judge")
        if judge is None:
            judge = ""
        elif not isinstance(judge, str):
            problems.append("judge must be text")
        elif len(judge) > _JUDGE_LIMIT or "\x00" in judge:
            problems.append(f"judge must be at most {_JUDGE_LIMIT} characters, without NUL")
        if problems:
            self.errors.add(line, "; ".join(problems))
            return
        assert name_a is not None and name_b is not None
        self.lines.append(line)
        self.model_a.append(self._index(name_a))
        self.model_b.append(self._index(name_b))
        self.winner.append(winner_code)
        self.category.append(category_code)
        self.anonymous.append(anonymous)
        self.tstamp.append(stamp)
        self.order_key.append(seconds)
        self.judge.append(judge)

    def tstamp_array(self) -> Any:
        """The rows' times as an Arrow array (microseconds, UTC; null where absent)."""
        return pa.array(self.tstamp, type=pa.timestamp("us", tz="UTC"))

    def judge_array(self) -> Any:
        return pa.array(self.judge, type=pa.string())

    def _exact(self, record: Mapping[str, Any], column: str) -> str | None:
        """The model named by ``<column>_key`` and ``<column>_version`` as a name token, when
        both are given and name a model here (even if a display name is shared by versions)."""
        key, version = record.get(f"{column}_key"), record.get(f"{column}_version")
        if not (isinstance(key, str) and key and isinstance(version, str)):
            return None
        pk = self.versions.get((key, version))
        if pk is None:  # a CSV export guards cells that a spreadsheet would run
            pk = self.versions.get((_unguard(key), _unguard(version)))
        return None if pk is None else f"{_PK_PREFIX}{pk}"

    def _name(self, value: object, column: str, problems: list[str]) -> str | None:
        # A log names a few models a million times: check each name once.
        if isinstance(value, str) and value in self.name_index:
            return value
        return _name(value, column, problems)

    def _index(self, name: str) -> int:
        index = self.name_index.get(name)
        if index is None:
            index = self.name_index[name] = len(self.names)
            self.names.append(name)
        return index


def _model_versions() -> dict[tuple[str, str], int]:
    return {
        (key, version): pk
        for pk, key, version in ImageModel.objects.values_list("pk", "key", "version")
    }


def _unguard(cell: str) -> str:
    """A CSV cell as it was before ``exports.csv_cell`` put a quote before a formula."""
    return cell[1:] if cell.startswith("'") and cell[1:].startswith(FORMULA_STARTS) else cell


def _excluded(value: object) -> bool | None:
    """The optional ``excluded`` cell: absent or empty is false; None when it is neither."""
    if value is None or isinstance(value, bool):
        return value is True
    text = value.strip().lower() if isinstance(value, str) else str(value)
    if text in _TRUE:
        return True
    if text == "" or text in _FALSE:
        return False
    return None


def _name(value: object, column: str, problems: list[str]) -> str | None:
    if isinstance(value, str):
        value = value.strip()
    if value is None or value == "":
        problems.append(f"{column} is missing")
        return None
    if not isinstance(value, str):
        problems.append(f"{column} must be text, got {value!r}")
        return None
    if len(value) > _NAME_LIMIT or any(ch < " " for ch in value):
        problems.append(
            f"{column} must be at most {_NAME_LIMIT} characters, without control characters"
        )
        return None
    return value


def _tstamp(value: object, problems: list[str]) -> tuple[datetime | None, float]:
    """A unix-seconds number or an ISO 8601 text (naive means UTC); None when absent."""
    if isinstance(value, str):
        text = value.strip()
        if text == "":
            return None, math.nan
        try:
            value = float(text)
        except ValueError:
            try:
                stamp = datetime.fromisoformat(text)
            except ValueError:
                problems.append(f"tstamp {text!r} is neither unix seconds nor ISO 8601")
                return None, math.nan
            if stamp.tzinfo is None:
                stamp = stamp.replace(tzinfo=UTC)
            try:
                return stamp, stamp.timestamp()
            except (OverflowError, ValueError):
                problems.append(f"tstamp {text!r} is out of range")
                return None, math.nan
    if value is None:
        return None, math.nan
    if isinstance(value, bool) or not isinstance(value, int | float):
        problems.append(f"tstamp {value!r} is neither unix seconds nor ISO 8601")
        return None, math.nan
    seconds = float(value)
    if not _EARLIEST_S <= seconds <= _LATEST_S:  # also false for NaN
        problems.append(f"tstamp {value!r} is out of range")
        return None, math.nan
    return datetime.fromtimestamp(seconds, tz=UTC), seconds


def _anonymous(value: object, problems: list[str]) -> bool:
    if value is None or isinstance(value, bool):
        return value is not False
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "" or text in _TRUE:
            return True
        if text in _FALSE:
            return False
    problems.append(f"anony {value!r} is not true or false")
    return True


def _records(path: Path) -> Iterator[tuple[int, Mapping[str, Any] | str]]:
    """(line, record) for each row of the file, or (line, message) for a row that cannot be
    read; CSV rows are numbered as in an editor, the header being line 1."""
    yield from _json_lines(path) if _is_json(path) else _csv_rows(path)


def _is_json(path: Path) -> bool:
    suffix = path.suffix.lower()
    if suffix in {".jsonl", ".ndjson", ".json"}:
        return True
    if suffix == ".csv":
        return False
    with path.open("rb") as file:
        return file.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n").startswith((b"{", b"["))


def _json_lines(path: Path) -> Iterator[tuple[int, Mapping[str, Any] | str]]:
    with path.open("rb") as file:
        for line, raw in enumerate(file, start=1):
            if not raw.strip():
                continue
            if line == 1 and raw.lstrip(b"\xef\xbb\xbf \t").startswith(b"["):
                yield line, "a JSON array, not JSON Lines; convert it first: jq -c '.[]'"
                return
            try:
                record = json.loads(raw)
            except ValueError as error:  # UnicodeDecodeError is a ValueError too
                yield line, f"not valid JSON: {error}"
                continue
            if isinstance(record, dict):
                yield line, record
            else:
                yield line, "not a JSON object"


def _csv_rows(path: Path) -> Iterator[tuple[int, Mapping[str, Any] | str]]:
    with path.open(encoding="utf-8-sig", newline="") as file:
        reader = csv.reader(file)
        try:
            header = [name.strip() for name in next(reader, [])]
            missing = [name for name in REQUIRED_COLUMNS if name not in header]
            if missing or len(set(header)) != len(header):
                yield (
                    1,
                    (
                        f"the header lacks {', '.join(missing)}"
                        if missing
                        else "the header names a column twice"
                    ),
                )
                return
            end = reader.line_num
            for cells in reader:
                start, end = end + 1, reader.line_num
                if not cells:
                    continue
                if len(cells) != len(header):
                    yield start, f"{len(cells)} cells, but the header has {len(header)}"
                    continue
                yield start, dict(zip(header, cells, strict=True))
        except (csv.Error, UnicodeDecodeError) as error:
            # The reader cannot resynchronise after either, so stop at the first one.
            yield reader.line_num + 1, f"unreadable CSV: {error}"


class _ArrowBattles(_Battles):
    """Rows checked column by column: the same fields as ``_Battles``, held as arrays."""

    def __init__(self) -> None:
        super().__init__()
        self.tstamps: Any = None
        self.judges: Any = None

    def tstamp_array(self) -> Any:
        return self.tstamps

    def judge_array(self) -> Any:
        return self.judges


def _fast_battles(path: Path, report: Progress) -> _Battles | None:
    """Read and check a JSON Lines log column by column with Arrow: many times faster than row
    by row. None when the file is not plain JSON Lines in FastChat's layout or any value is not
    one the row-by-row check accepts as it is; that check then reads it and names the bad rows."""
    if not _is_json(path):
        return None
    size = path.stat().st_size
    chunks: list[bytes] = []
    with path.open("rb") as file:
        while chunk := file.read(READ_CHUNK):
            chunks.append(chunk)
            report("read", min(len(chunks) * READ_CHUNK, size), size)
    data = b"".join(chunks)
    del chunks
    if not data.strip() or data.startswith(b"\xef\xbb\xbf"):
        return None
    try:
        table = pa_json.read_json(
            io.BytesIO(data), read_options=pa_json.ReadOptions(block_size=1 << 24)
        )
    except (pa.ArrowException, ValueError):
        return None
    # One row per line, so row i is line i + 1 (a blank line would shift them).
    if table.num_rows != data.count(b"\n") + (0 if data.endswith(b"\n") else 1):
        return None
    del data
    present = set(table.column_names)
    if not set(REQUIRED_COLUMNS) <= present or present & _ROW_BY_ROW_COLUMNS:
        return None
    rows = table.num_rows
    battles = _ArrowBattles()
    model_a = _name_codes(table.column("model_a"), "model_a", battles)
    model_b = _name_codes(table.column("model_b"), "model_b", battles)
    winner = _codes(table.column("winner"), lambda v: _WINNER_CODE.get(v.strip(), -1))
    if model_a is None or model_b is None or winner is None or np.any(model_a == model_b):
        return None
    category = np.full(rows, _CATEGORY_CODE[OTHER], dtype=np.int64)
    if "category" in present and not pa.types.is_null(table.column("category").type):
        codes = _codes(
            table.column("category").fill_null(""),
            lambda v: _CATEGORY_CODE.get(v.strip() or OTHER, -1),
        )
        if codes is None:
            return None
        category = codes
    anonymous = np.ones(rows, dtype=np.bool_)
    if "anony" in present and not pa.types.is_null(table.column("anony").type):
        if not pa.types.is_boolean(table.column("anony").type):
            return None
        anonymous = table.column("anony").fill_null(True).to_numpy().astype(np.bool_)
    seconds = np.full(rows, np.nan)
    if "tstamp" in present and not pa.types.is_null(table.column("tstamp").type):
        column = table.column("tstamp")
        if not (pa.types.is_floating(column.type) or pa.types.is_integer(column.type)):
            return None
        missing = column.is_null().to_numpy()
        seconds = column.cast(pa.float64()).fill_null(np.nan).to_numpy()
        given = seconds[~missing]
        if not np.all((given >= _EARLIEST_S) & (given <= _LATEST_S)):  # also catches NaN
            return None
    judges = pa.array([""] * rows, pa.string())
    if "judge" in present and not pa.types.is_null(table.column("judge").type):
        column = table.column("judge")
        if not pa.types.is_string(column.type):
            return None
        judges = column.fill_null("").combine_chunks()
        if rows and (
            pc.max(pc.utf8_length(judges)).as_py() > _JUDGE_LIMIT
            or pc.any(pc.match_substring(judges, "\x00")).as_py()
        ):
            return None
    timed = ~np.isnan(seconds)
    micros = np.where(timed, np.round(seconds * 1e6), 0).astype(np.int64)
    battles.tstamps = pa.array(micros, mask=~timed).cast(pa.timestamp("us", tz="UTC"))
    battles.judges = judges
    battles.lines = np.arange(1, rows + 1, dtype=np.int64)  # type: ignore[assignment]
    battles.model_a = model_a  # type: ignore[assignment]
    battles.model_b = model_b  # type: ignore[assignment]
    battles.winner = winner.astype(np.uint8)  # type: ignore[assignment]
    battles.category = category.astype(np.uint8)  # type: ignore[assignment]
    battles.anonymous = anonymous  # type: ignore[assignment]
    battles.order_key = seconds  # type: ignore[assignment]
    return battles


def _codes(column: Any, code: Callable[[str], int]) -> Ints | None:
    """Each row's code, computed once per distinct text; None if the column is not all text
    or any text has no code (-1)."""
    if not pa.types.is_string(column.type) or column.null_count:
        return None
    encoded = column.combine_chunks().dictionary_encode()
    table = np.array([code(value) for value in encoded.dictionary.to_pylist()], dtype=np.int64)
    if np.any(table < 0):
        return None
    return np.asarray(table[encoded.indices.to_numpy()], dtype=np.int64)


def _name_codes(column: Any, name: str, battles: _Battles) -> Ints | None:
    def index(value: str) -> int:
        problems: list[str] = []
        checked = _name(value, name, problems)
        return -1 if checked is None else battles._index(checked)

    return _codes(column, index)


def _resolve_models(battles: _Battles) -> dict[str, int | None]:
    """Each name's model primary key (None: to be created), matching display names first and
    keys second, the newest model on a clash; adds an error for rows naming one model twice."""
    by_display: dict[str, int] = {}
    by_key: dict[str, int] = {}
    for pk, key, display_name in ImageModel.objects.order_by("pk").values_list(
        "pk", "key", "display_name"
    ):
        by_display[display_name] = pk
        by_key[key] = pk
    resolved = {
        name: int(name[len(_PK_PREFIX) :])
        if name.startswith(_PK_PREFIX)
        else by_display.get(name, by_key.get(name))
        for name in battles.names
    }
    # Two names can reach one model (its display name and its key): that row is a self-battle.
    identity = np.array(
        [
            -1 - index if resolved[name] is None else resolved[name]
            for index, name in enumerate(battles.names)
        ],
        dtype=np.int64,
    )
    if identity.size:
        same = np.flatnonzero(
            identity[np.asarray(battles.model_a, dtype=np.int64)]
            == identity[np.asarray(battles.model_b, dtype=np.int64)]
        )
        for row in same.tolist():
            name_a = battles.names[battles.model_a[row]]
            name_b = battles.names[battles.model_b[row]]
            battles.errors.add(
                battles.lines[row],
                f"model_a {name_a!r} and model_b {name_b!r} are the same model",
            )
    return resolved


def _create_models(*, names: list[str]) -> list[ImageModel]:
    """Disabled models for names never seen, so imported votes can be counted but the models
    are never drawn into battles; the key is the name's slug, made unique by a hash of it."""
    taken = set(ImageModel.objects.values_list("key", flat=True))
    created = []
    for name in names:
        key = slugify(name)[:_KEY_LIMIT].strip("-") or "model"
        if key in taken:
            digest = hashlib.sha256(name.encode()).hexdigest()[:8]
            key = f"{key[: _KEY_LIMIT - 9]}-{digest}"
        suffix = 2
        while key in taken:  # only if the hashed key is taken too
            key = f"{key[: _KEY_LIMIT - 12]}-{suffix}"
            suffix += 1
        taken.add(key)
        created.append(
            ImageModel.objects.create(
                key=key,
                display_name=name,
                backend=ImageModel.Backend.HTTP,
                source="imported",
                enabled=False,
                disabled_reason="Imported from a battle log; it makes no images here.",
            )
        )
    return created


def _insert_battles(
    *, battles: _Battles, model_a: Ints, model_b: Ints, source: str, report: Progress
) -> None:
    """Write the rows column by column through Arrow: COPY on PostgreSQL, executemany on
    SQLite; no model instance per row."""
    rows = len(battles.lines)
    anonymous = np.frombuffer(bytes(battles.anonymous), dtype=np.bool_)
    winner = np.frombuffer(bytes(battles.winner), dtype=np.uint8)
    category = np.frombuffer(bytes(battles.category), dtype=np.uint8)
    columns = {
        "line": pa.array(np.asarray(battles.lines, dtype=np.int64)),
        "model_a": pa.array(model_a),
        "model_b": pa.array(model_b),
        "winner": pa.array(WINNERS).take(pa.array(winner)),
        "tstamp": battles.tstamp_array(),
        "anonymous": pa.array(anonymous),
        "category": pa.array(CATEGORIES).take(pa.array(category)),
        "judge": battles.judge_array(),
    }
    column = {f.name: str(f.column) for f in ImportedBattle._meta.concrete_fields}
    names = ["source", *columns, "imported_at"]
    now = timezone.now()
    report("write", 0, rows)
    if connection.vendor == "postgresql":
        from psycopg import sql

        # Times go in as text that Arrow formats without a time zone and "+00" appended: its
        # CSV writer formats a zoned time ten times slower, most of this function's CPU.
        same = np.zeros(rows, dtype=np.int64)
        table = pa.table(
            {
                "source": pa.array([source], pa.string()).take(same),
                **columns,
                "tstamp": _utc_text(columns["tstamp"]),
                "imported_at": _utc_text(pa.array([now], pa.timestamp("us", tz="UTC"))).take(same),
            }
        )
        statement = sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT csv)").format(
            sql.Identifier(ImportedBattle._meta.db_table),
            sql.SQL(", ").join([sql.Identifier(column[name]) for name in names]),
        )
        with connection.cursor() as cursor:
            row_checks_off = _check_models_once(
                cursor, np.union1d(np.unique(model_a), np.unique(model_b))
            )
        with (
            # PostgreSQL builds no index over rows with checks pending (per-row checks on).
            _indexes_built_after(rows if row_checks_off else 0),
            connection.cursor() as cursor,
            cursor.connection.cursor() as raw,
            raw.copy(statement) as copy,
        ):
            for start in range(0, rows, WRITE_BATCH):
                buffer = io.BytesIO()
                # Every value quoted: an empty judge is then '' and only a missing time NULL.
                pa_csv.write_csv(
                    table.slice(start, WRITE_BATCH),
                    buffer,
                    pa_csv.WriteOptions(include_header=False, quoting_style="all_valid"),
                )
                copy.write(buffer.getvalue())
                report("write", min(start + WRITE_BATCH, rows), rows)
        if row_checks_off:
            with connection.cursor() as cursor:
                cursor.execute(_ROW_CHECKS_ON)
        return
    # SQLite stores a time as Django does: naive UTC text (``2024-05-01 12:00:00.250000``; a cast,
    # the same text as strftime's "%Y-%m-%d %H:%M:%S" at a tenth of the CPU).
    stamps = columns["tstamp"].cast(pa.timestamp("us")).cast(pa.string())
    values = [
        columns["line"].to_pylist(),
        model_a.tolist(),
        model_b.tolist(),
        columns["winner"].to_pylist(),
        stamps.to_pylist(),
        anonymous.tolist(),
        columns["category"].to_pylist(),
        columns["judge"].to_pylist(),
    ]
    table_name = connection.ops.quote_name(ImportedBattle._meta.db_table)
    column_names = ", ".join(connection.ops.quote_name(column[name]) for name in names)
    placeholders = ", ".join(["?"] * len(names))
    statement_text = f"INSERT INTO {table_name} ({column_names}) VALUES ({placeholders})"  # noqa: S608
    fixed_now = connection.ops.adapt_datetimefield_value(now)
    connection.ensure_connection()
    raw = connection.connection  # sqlite3's own executemany: no per-row work in Python
    # A page cache large enough for the table's indexes while a million rows go in (this
    # connection only; the default is 2 MB).
    raw.execute("PRAGMA cache_size = -262144")
    with _indexes_built_after(rows):
        for start in range(0, rows, WRITE_BATCH):
            end = min(start + WRITE_BATCH, rows)
            raw.executemany(
                statement_text,
                zip(
                    itertools.repeat(source, end - start),
                    *(value[start:end] for value in values),
                    itertools.repeat(fixed_now, end - start),
                    strict=True,
                ),
            )
            report("write", end, rows)
    raw.execute("PRAGMA cache_size = -2000")


@contextlib.contextmanager
def _indexes_built_after(rows: int) -> Iterator[None]:
    """Drop the imported battles' secondary indexes while ``rows`` rows go in, and build them
    again afterwards, in the import's transaction (so a failure leaves them as they were), when
    the table holds fewer rows than that: one sorted build of each index costs less than a
    million single inserts into it. A larger table keeps its indexes. Dropping an index locks
    the table against readers until the commit; a role that may not drop them keeps them."""
    table = ImportedBattle._meta.db_table
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT COUNT(*) FROM (SELECT 1 FROM {quote(table)} LIMIT %s) AS kept",  # noqa: S608
            [rows],
        )
        (kept,) = cursor.fetchone()
        if connection.vendor == "postgresql" and kept < rows:
            # A build reads the whole heap, dead rows too (a table emptied but not vacuumed).
            cursor.execute("SELECT pg_relation_size(%s::regclass)", [table])
            (heap_bytes,) = cursor.fetchone()
            kept = max(kept, heap_bytes // _HEAP_BYTES_PER_ROW)
        if kept >= rows:  # also when rows is 0: nothing to gain
            yield
            return
        if connection.vendor == "postgresql":
            # Not the primary key, nor an index behind a constraint.
            cursor.execute(
                "SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i "
                "JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = %s::regclass "
                "AND NOT i.indisprimary AND NOT i.indisunique AND NOT EXISTS "
                "(SELECT 1 FROM pg_constraint WHERE conindid = i.indexrelid) ORDER BY 1",
                [table],
            )
        else:
            # SQLite: the indexes created by name (an automatic one has no SQL), not unique.
            cursor.execute(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = %s "
                "AND sql IS NOT NULL AND sql NOT LIKE 'CREATE UNIQUE%%' ORDER BY 1",
                [table],
            )
        indexes = cursor.fetchall()
        try:
            with transaction.atomic():  # a savepoint: a refusal leaves the import whole
                for name, _ in indexes:
                    cursor.execute(f"DROP INDEX {quote(name)}")
        except DatabaseError:  # not the table's owner: insert with the indexes in place
            indexes = []
    yield
    with connection.cursor() as cursor:
        for _, definition in indexes:
            cursor.execute(definition)


def _check_models_once(cursor: Any, model_ids: Ints) -> bool:
    """Do the foreign-key check of every row once per model, on PostgreSQL: lock the rows'
    models as the per-row check would (``FOR KEY SHARE``, so none is deleted or renumbered
    before the commit) and make sure each exists. Then, where this database role may, switch
    the per-row check triggers off for the COPY that follows (``session_replication_role``, as
    ``pg_restore --disable-triggers`` does): two million deferred checks at commit cost as much
    CPU as the COPY itself. True when they are off; the caller switches them back on."""
    ids = [int(pk) for pk in model_ids]
    cursor.execute(
        f"SELECT {ImageModel._meta.pk.column} FROM {ImageModel._meta.db_table} "  # noqa: S608
        f"WHERE {ImageModel._meta.pk.column} = ANY(%s) FOR KEY SHARE",
        [ids],
    )
    if len(cursor.fetchall()) != len(ids):
        raise RuntimeError("a model of this import was deleted while it ran; nothing was written")
    try:
        with transaction.atomic():  # a savepoint: a refusal leaves the import's transaction whole
            cursor.execute(_ROW_CHECKS_OFF)
    except DatabaseError:
        return False
    return True


def _utc_text(stamps: Any) -> Any:
    """UTC times as PostgreSQL reads them (``2024-05-01 12:00:00.250000+00``); null stays null."""
    naive = stamps.cast(pa.timestamp("us")).cast(pa.string())
    return pc.binary_join_element_wise(naive, pa.scalar("+00"), "")
