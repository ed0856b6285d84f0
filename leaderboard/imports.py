"""Import votes from an existing battle log (FastChat's clean-battle layout, JSONL or CSV).

Every row is checked before anything is written, so a file either goes in whole or not at all.
The rows are stored as ``ImportedBattle``; the anonymous ones are also added to the pair counts
and to online Elo, exactly as if they had been voted here.

Our own vote dataset (``leaderboard.dataset``) reads back too: columns FastChat lacks are ignored,
rows marked ``excluded`` are skipped (and counted in the result), and ``model_a_key`` with
``model_a_version`` (likewise for b), when they name a model here, pick that exact row.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.db import connection, transaction
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
INSERT_BATCH = 5000  # rows per bulk_create batch, and per COPY write on PostgreSQL
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
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_COPY_NULL = "\\N"
# Marks a name that stands for a model's primary key; a real name has no control characters.
_PK_PREFIX = "\x00pk:"

Ints = NDArray[np.int64]


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


def import_battles(*, path: Path, source: str | None = None) -> ImportResult:
    """Check every row of a JSONL or CSV battle log, then store it and count its anonymous
    votes in one transaction; raise ImportFailed, writing nothing, if any row is bad."""
    started = time.perf_counter()
    source = path.name if source is None else source
    if len(source) > _SOURCE_LIMIT:
        raise ValueError(f"source must be at most {_SOURCE_LIMIT} characters")
    battles = _Battles(versions=_model_versions())
    excluded_rows = 0
    for line, record in _records(path):
        if isinstance(record, str):
            battles.errors.add(line, record)
        elif (excluded := _excluded(record.get("excluded"))) is None:
            battles.errors.add(line, f"excluded {record.get('excluded')!r} is not true or false")
        elif excluded:
            excluded_rows += 1
        else:
            battles.add(line, record)
    if not battles.lines and not battles.errors.total:
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
        _insert_battles(battles=battles, model_a=a, model_b=b, source=source)
        anonymous = np.frombuffer(bytes(battles.anonymous), dtype=np.bool_)
        winner = np.frombuffer(bytes(battles.winner), dtype=np.uint8).astype(np.int64)
        category = np.frombuffer(bytes(battles.category), dtype=np.uint8).astype(np.int64)
        # Counted like live votes, by the one tally; online Elo continues from where it stands,
        # over the file's votes in time order (untimed ones last, in file order).
        sequence = np.argsort(np.asarray(battles.order_key)[anonymous], kind="stable")
        _ = services.locked_elo_cursor()  # one writer of online Elo at a time
        current = dict(OnlineElo.objects.values_list("model_id", "rating"))
        counted = tally.tally(
            left=a[anonymous][sequence],
            right=b[anonymous][sequence],
            outcome=winner[anonymous][sequence],
            group=category[anonymous][sequence],
            elo_from=current,
            k=settings.LEADERBOARD_ELO_K,
        )
        services.add_pair_counts(pairs=counted.pairs, labels=[(name, True) for name in CATEGORIES])
        services.write_online_elo(counted=counted, existing=current.keys())
    result = ImportResult(
        rows=len(battles.lines),
        anonymous_rows=int(anonymous.sum()),
        models_created=new_names,
        seconds=time.perf_counter() - started,
        excluded_rows=excluded_rows,
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

    def __init__(self, *, versions: Mapping[tuple[str, str], int] | None = None) -> None:
        self.errors = _Errors()
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
        if category_code < 0:
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
    suffix = path.suffix.lower()
    if suffix in {".jsonl", ".ndjson", ".json"}:
        is_json = True
    elif suffix == ".csv":
        is_json = False
    else:
        with path.open("rb") as file:
            is_json = file.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n").startswith((b"{", b"["))
    yield from _json_lines(path) if is_json else _csv_rows(path)


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


def _insert_battles(*, battles: _Battles, model_a: Ints, model_b: Ints, source: str) -> None:
    if connection.vendor == "postgresql":
        _copy_battles(battles=battles, model_a=model_a, model_b=model_b, source=source)
        return
    a, b = model_a.tolist(), model_b.tolist()
    for start in range(0, len(battles.lines), INSERT_BATCH):
        ImportedBattle.objects.bulk_create(
            [
                ImportedBattle(
                    source=source,
                    line=battles.lines[i],
                    model_a_id=a[i],
                    model_b_id=b[i],
                    winner=WINNERS[battles.winner[i]],
                    tstamp=battles.tstamp[i],
                    anonymous=bool(battles.anonymous[i]),
                    category=CATEGORIES[battles.category[i]],
                    judge=battles.judge[i],
                )
                for i in range(start, min(start + INSERT_BATCH, len(battles.lines)))
            ],
            batch_size=INSERT_BATCH,
        )


def _copy_battles(*, battles: _Battles, model_a: Ints, model_b: Ints, source: str) -> None:
    """COPY FROM STDIN in PostgreSQL's text format: many times faster than INSERTs."""
    from psycopg import sql

    column = {f.name: str(f.column) for f in ImportedBattle._meta.concrete_fields}
    names = ["source", "line", "model_a", "model_b", "winner", "tstamp", "anonymous"]
    names += ["category", "judge", "imported_at"]
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(ImportedBattle._meta.db_table),
        sql.SQL(", ").join([sql.Identifier(column[name]) for name in names]),
    )
    fixed = f"{source.translate(_COPY_ESCAPES)}\t"
    now = timezone.now().isoformat()
    a, b = model_a.tolist(), model_b.tolist()
    with (
        connection.cursor() as cursor,
        cursor.connection.cursor() as raw,
        raw.copy(statement) as copy,
    ):
        for start in range(0, len(battles.lines), INSERT_BATCH):
            chunk = []
            for i in range(start, min(start + INSERT_BATCH, len(battles.lines))):
                stamp = battles.tstamp[i]
                chunk.append(
                    f"{fixed}{battles.lines[i]}\t{a[i]}\t{b[i]}\t{WINNERS[battles.winner[i]]}"
                    f"\t{stamp.isoformat() if stamp else _COPY_NULL}"
                    f"\t{'t' if battles.anonymous[i] else 'f'}"
                    f"\t{CATEGORIES[battles.category[i]]}"
                    f"\t{battles.judge[i].translate(_COPY_ESCAPES)}\t{now}\n"
                )
            copy.write("".join(chunk).encode())
