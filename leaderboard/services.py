"""Leaderboard logic: keep the counts per vote, compute boards from them, store snapshots."""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import random
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.db import connection, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import F, Sum
from django.utils import timezone

from arena import statements
from generation.models import ImageModel
from leaderboard import board, bounds, ratings, robustness, style_counts, tally, ties
from leaderboard.models import (
    BoardOptions,
    ImportedBattle,
    OnlineElo,
    OnlineEloCursor,
    PairCount,
    Snapshot,
    SnapshotRow,
    StyleCount,
    TieModel,
)

logger = logging.getLogger(__name__)

ELO_INIT = tally.ELO_INIT
OVERALL = ""
_FEW_ROWS = 8  # pair rows upserted one by one; more (an import) are read, then bulk inserted


def count_vote(
    *,
    left_id: int,
    right_id: int,
    category: str,
    choice: str,
    anonymous: bool = True,
    generation_left_id: int | None = None,
    generation_right_id: int | None = None,
) -> None:
    """Add one vote to its pair's counts, in the caller's transaction (the vote's): one upsert
    of one row, and no lock on any other. An anonymous vote with its two images (a live vote)
    also adds to its style row: one more statement (style_counts.add_vote). Online Elo takes
    the vote in at the next refresh (fold_online_elo). On PostgreSQL a live vote runs these
    inside its own single statement instead (vote_counts)."""
    for statement, params in vote_counts(
        left_id=left_id,
        right_id=right_id,
        category=category,
        choice=choice,
        anonymous=anonymous,
        generation_left_id=generation_left_id,
        generation_right_id=generation_right_id,
    ):
        if statements.run(statement, params) != 1:
            raise ValueError(f"vote not counted: {statement.name} changed no row ({params})")


def vote_counts(
    *,
    left_id: int,
    right_id: int,
    category: str,
    choice: str,
    anonymous: bool,
    generation_left_id: int | None,
    generation_right_id: int | None,
    only_if: str = "1 = 1",
) -> list[tuple[statements.Statement, list[Any]]]:
    """The statements that count one vote, with their parameters: the pair's upsert and, for a
    live anonymous vote, its style row's. ``only_if`` is an SQL condition each runs under (the
    vote's single statement passes "the vote was stored")."""
    a, b, row = _one_vote(left_id, right_id, tally.FROM_CHOICE[choice])
    parts = [(_UPSERT_PAIR[only_if], [category, anonymous, a, b, *row])]
    if anonymous and generation_left_id is not None and generation_right_id is not None:
        parts.append(
            style_counts.vote_statement(
                left_id=left_id,
                right_id=right_id,
                generation_left_id=generation_left_id,
                generation_right_id=generation_right_id,
                choice=choice,
                only_if=only_if,
            )
        )
    return parts


@functools.lru_cache(maxsize=4096)
def _one_vote(
    left_id: int, right_id: int, outcome: tally.Outcome
) -> tuple[int, int, tuple[int, int, int, int]]:
    """What one vote adds, from tally.tally itself (the one rule), kept per pair and outcome:
    numpy's setup for a single vote cost about 0.15 ms, a twentieth of a vote."""
    counted = tally.tally(left=[left_id], right=[right_id], outcome=[outcome])
    ((_, a, b, row),) = counted.pairs.rows()
    return a, b, row


_PAIR_KEY = ("category", "anonymous", "model_a", "model_b")


def _upsert_pair_sql(connection: BaseDatabaseWrapper, variant: str) -> str:
    """INSERT the pair's row with these counts, or add them to its row (PostgreSQL and SQLite);
    parameters: category, anonymous, model a, model b, then the four counts."""
    quote = connection.ops.quote_name
    table = quote(PairCount._meta.db_table)
    column = {f.name: quote(str(f.column)) for f in PairCount._meta.concrete_fields}
    names = [column[name] for name in (*_PAIR_KEY, *tally.FIELDS)]
    added = ", ".join(
        f"{column[name]} = {table}.{column[name]} + excluded.{column[name]}"
        for name in tally.FIELDS
    )
    return (
        f"INSERT INTO {table} ({', '.join(names)}) "  # noqa: S608 - model names only
        # SQLite needs a WHERE before ON CONFLICT to parse an upsert from a SELECT.
        f"SELECT {', '.join(['%s'] * len(names))} WHERE {variant} "
        f"ON CONFLICT ({', '.join(column[name] for name in _PAIR_KEY)}) DO UPDATE SET {added}"
    )


# The pair upsert per condition, each written once per process and database (a fixed statement:
# arena.statements), since the ORM cost a vote about half a millisecond to build its UPDATE.
_UPSERT_PAIR = statements.Variants(_upsert_pair_sql, name="pair count upsert")


def add_pair_counts(*, pairs: tally.PairTally, labels: list[tuple[str, bool]]) -> None:
    """Add tallied counts to the pair-count rows (``labels[group]`` is the category and whether
    the votes were anonymous): one upsert per row; for many rows (an import), one read of which
    rows exist and a bulk INSERT of the rest."""
    rows = pairs.rows()
    upsert = _UPSERT_PAIR["1 = 1"]
    if len(rows) <= _FEW_ROWS:
        for group, a, b, row in rows:
            category, anonymous = labels[group]
            statements.run(upsert, [category, anonymous, a, b, *row])
        return
    groups = {labels[group] for group, _, _, _ in rows}
    existing = set(
        PairCount.objects.filter(
            category__in={category for category, _ in groups},
            anonymous__in={anonymous for _, anonymous in groups},
            model_a_id__in={a for _, a, _, _ in rows},
        ).values_list("category", "anonymous", "model_a_id", "model_b_id")
    )
    missing: list[tuple[Any, ...]] = []
    for group, a, b, row in rows:
        category, anonymous = labels[group]
        if (category, anonymous, a, b) in existing:
            statements.run(upsert, [category, anonymous, a, b, *row])
        else:
            missing.append((category, anonymous, a, b, *row))
    _insert_pair_counts(missing)


def _insert_pair_counts(rows: list[tuple[Any, ...]]) -> None:
    """One executemany for many new pair rows: tens of thousands of them after an import, where
    building and saving model instances one by one costs seconds."""
    names = ["category", "anonymous", "model_a", "model_b", *tally.FIELDS]
    quote = connection.ops.quote_name
    column = {field.name: str(field.column) for field in PairCount._meta.concrete_fields}
    columns = ", ".join(quote(column[name]) for name in names)
    statement = (
        f"INSERT INTO {quote(PairCount._meta.db_table)} ({columns}) "  # noqa: S608 (model names)
        f"VALUES ({', '.join(['%s'] * len(names))})"
    )
    with connection.cursor() as cursor:
        cursor.executemany(statement, rows)


def fold_online_elo() -> int:
    """Take the votes cast since the last fold into online Elo, in vote order (ids), and move
    the cursor past them; returns how many anonymous votes were taken in."""
    from arena.models import Vote

    last = _last_committed_vote_id()
    with transaction.atomic():
        cursor = locked_elo_cursor()
        taken = list(
            Vote.objects.filter(
                pk__gt=cursor.last_vote_id, pk__lte=last, excluded=False, battle__anonymous=True
            )
            .order_by("pk")
            .values_list("battle__model_left_id", "battle__model_right_id", "choice")
        )
        if taken:
            current = dict(OnlineElo.objects.values_list("model_id", "rating"))
            counted = tally.tally(
                left=[row[0] for row in taken],
                right=[row[1] for row in taken],
                outcome=[tally.FROM_CHOICE[row[2]] for row in taken],
                elo_from=current,
                k=settings.LEADERBOARD_ELO_K,
            )
            write_online_elo(counted=counted, existing=current.keys())
        if last > cursor.last_vote_id:
            cursor.last_vote_id = last
            cursor.save(update_fields=["last_vote_id"])
        return len(taken)


def _last_committed_vote_id() -> int:
    """The largest vote id below which no vote can still appear. Ids are drawn at insert, not
    at commit, so on PostgreSQL a vote with a smaller id may commit after a larger one: a SHARE
    lock, held only for this one read, waits for the votes being inserted and is granted before
    any later one draws its (larger) id. SQLite writes one transaction at a time."""
    from arena.models import Vote

    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    f"LOCK TABLE {connection.ops.quote_name(Vote._meta.db_table)} IN SHARE MODE"
                )
        last = Vote.objects.order_by("-pk").values_list("pk", flat=True).first()
    return last or 0


def locked_elo_cursor() -> OnlineEloCursor:
    """The online Elo cursor row, locked until the caller's transaction ends: one fold, import
    or rebuild at a time writes online Elo."""
    OnlineEloCursor.objects.get_or_create(pk=1)
    return OnlineEloCursor.objects.select_for_update().get(pk=1)


def write_online_elo(*, counted: tally.Tally, existing: Iterable[int]) -> None:
    """Store the ratings a tally continued, adding its votes to each model's count."""
    present = set(existing)
    for pk, rating in counted.elo.items():
        if pk in present:
            OnlineElo.objects.filter(model_id=pk).update(
                rating=rating, votes=F("votes") + counted.elo_votes[pk]
            )
    OnlineElo.objects.bulk_create(
        OnlineElo(model_id=pk, rating=rating, votes=counted.elo_votes[pk])
        for pk, rating in counted.elo.items()
        if pk not in present
    )


@transaction.atomic
def rebuild_counts() -> int:
    """Recompute every pair count, style count and online Elo from the counted votes and
    imported logs, in time order; returns how many anonymous votes were counted. Named
    comparisons are counted apart and leave online Elo and the style counts alone."""
    from arena.models import Vote

    if connection.vendor == "postgresql":
        # Votes cast during the rebuild wait for it, instead of landing in counts that are
        # about to be replaced.
        with connection.cursor() as cursor:
            cursor.execute(
                "LOCK TABLE leaderboard_paircount, leaderboard_stylecount, leaderboard_onlineelo"
                " IN EXCLUSIVE MODE"
            )
    elo_cursor = locked_elo_cursor()
    votes = Vote.objects.filter(excluded=False)  # the votes that count
    events: list[tuple[Any, int, int, str, Any, bool]] = list(
        votes.values_list(
            "created_at",
            "battle__model_left_id",
            "battle__model_right_id",
            "battle__category",
            "choice",
            "battle__anonymous",
        )
    )
    events = [
        (t, left, right, c, tally.FROM_CHOICE[choice], anon)
        for t, left, right, c, choice, anon in events
    ]
    imported = ImportedBattle.objects.filter(anonymous=True).order_by("pk")
    for tstamp, imported_at, left, right, category, winner in imported.values_list(
        "tstamp", "imported_at", "model_a_id", "model_b_id", "category", "winner"
    ).iterator(chunk_size=10_000):
        events.append(
            (tstamp or imported_at, left, right, category, tally.FROM_WINNER[winner], True)
        )
    events.sort(key=lambda event: event[0])  # stable: equal times keep file order
    labels: dict[tuple[str, bool], int] = {}
    group = [labels.setdefault((event[3], event[5]), len(labels)) for event in events]
    counted = tally.tally(
        left=[event[1] for event in events],
        right=[event[2] for event in events],
        outcome=[event[4] for event in events],
        group=group,
        elo_from={},
        elo_mask=[event[5] for event in events],
        k=settings.LEADERBOARD_ELO_K,
    )
    PairCount.objects.all().delete()
    StyleCount.objects.all().delete()
    OnlineElo.objects.all().delete()
    add_pair_counts(pairs=counted.pairs, labels=list(labels))
    style_counts.rebuild()
    write_online_elo(counted=counted, existing=())
    elo_cursor.last_vote_id = Vote.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    elo_cursor.save(update_fields=["last_vote_id"])
    return sum(1 for event in events if event[5])


@dataclass(frozen=True)
class Counts:
    """Pair counts for one board, with the model ids behind the matrix indices."""

    model_ids: list[int]
    pairs: ratings.PairCounts
    votes: int


def load_counts(
    *, category: str = OVERALL, both_bad_as_tie: bool | None = None, all_votes: bool = False
) -> Counts:
    """The board's counts from the pair-count rows (overall sums every category; only
    anonymous votes unless ``all_votes``)."""
    if both_bad_as_tie is None:
        both_bad_as_tie = settings.LEADERBOARD_BOTH_BAD_AS_TIE
    rows = PairCount.objects.all() if all_votes else PairCount.objects.filter(anonymous=True)
    if category:
        rows = rows.filter(category=category)
    summed = list(
        rows.values("model_a_id", "model_b_id").annotate(
            wa=Sum("wins_a"), wb=Sum("wins_b"), t=Sum("ties"), bb=Sum("both_bad")
        )
    )
    model_ids = sorted({r["model_a_id"] for r in summed} | {r["model_b_id"] for r in summed})
    index = {pk: i for i, pk in enumerate(model_ids)}
    ties = np.array([r["t"] + (r["bb"] if both_bad_as_tie else 0) for r in summed], dtype=float)
    pairs = ratings.PairCounts.from_arrays(
        a=np.array([index[r["model_a_id"]] for r in summed], dtype=np.int64),
        b=np.array([index[r["model_b_id"]] for r in summed], dtype=np.int64),
        wins_a=np.array([r["wa"] for r in summed], dtype=float),
        wins_b=np.array([r["wb"] for r in summed], dtype=float),
        ties=ties,
        n_models=max(len(model_ids), 1),
    )
    votes = sum(r["wa"] + r["wb"] + r["t"] + r["bb"] for r in summed)
    return Counts(model_ids=model_ids, pairs=pairs, votes=votes)


@dataclass(frozen=True)
class _KeptResamples:
    model_ids: list[int]
    resamples: ratings.Resamples
    snapshot_id: int


# The bootstrap rounds behind the last board of each kind that this process computed, so the next
# refresh extends them (ratings.bootstrap) instead of drawing every round again: a few draws per
# new vote instead of one binomial draw per cell and round. A cache only; a process without it (a
# restart, another worker) draws afresh, which gives rounds of the same law. Each entry holds
# rounds x 3 x pairs integers and rounds x models floats: about 19 MB at 1000 rounds, 50 models.
_RESAMPLES: dict[tuple[str, bool, bool], _KeptResamples] = {}


def _previous_resamples(
    key: tuple[str, bool, bool], counts: Counts
) -> tuple[ratings.Resamples | None, Snapshot | None]:
    """The kept rounds for this board in its current model numbering, and the board they came
    from; (None, None) when there are none or their board is gone."""
    kept = _RESAMPLES.get(key)
    if kept is None:
        return None, None
    index = {pk: i for i, pk in enumerate(counts.model_ids)}
    if not all(pk in index for pk in kept.model_ids):
        return None, None  # a model left the board: its votes were taken away
    base = Snapshot.objects.filter(pk=kept.snapshot_id, category=key[0], all_votes=key[1]).first()
    if base is None:
        return None, None
    mapping = [index[pk] for pk in kept.model_ids]
    return kept.resamples.renumbered(mapping, counts.pairs.n_models), base


# The last votes to flip of each kind of board this process computed, with the counts they were
# computed from (fill_votes_to_flip). A cache only.
_FLIPS: dict[tuple[str, bool, bool], tuple[object, np.ndarray]] = {}


@functools.cache
def code_version() -> str:
    """The code's version for provenance: ARENA_CODE_VERSION, else the git commit."""
    if os.environ.get("ARENA_CODE_VERSION"):
        return os.environ["ARENA_CODE_VERSION"]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=Path(__file__).resolve().parent.parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def refresh(
    *,
    category: str = OVERALL,
    interval_method: str | None = None,
    rounds: int | None = None,
    seed: int | None = None,
    all_votes: bool = False,
    only_if_changed: bool = False,
    with_votes_to_flip: bool = True,
) -> Snapshot | None:
    """Compute one board from the counts (board.compute_board) and store it as a snapshot;
    None without votes. The snapshot is saved, and ``compute_ms`` measured, without votes to
    flip; then, with ``with_votes_to_flip``, they are computed and filled into its rows
    (fill_votes_to_flip), which costs several times the board itself on large boards."""
    started = time.perf_counter()
    method = interval_method or settings.LEADERBOARD_INTERVALS
    counts = load_counts(category=category, all_votes=all_votes)
    if counts.votes == 0 or len(counts.model_ids) < 2:
        return None
    digest = _counts_digest(counts, method=method)
    if only_if_changed and interval_method is None and rounds is None and seed is None:
        # The periodic refresh stores a board only when its counts changed, or once a day.
        latest = (
            Snapshot.objects.filter(category=category, all_votes=all_votes)
            .order_by("-created_at", "-pk")
            .first()
        )
        if (
            latest is not None
            and latest.matrices.get("counts_digest") == digest
            and latest.created_at > timezone.now() - timedelta(days=1)
        ):
            return latest
    used_rounds = 0
    key = (category, all_votes, settings.LEADERBOARD_BOTH_BAD_AS_TIE)
    previous: ratings.Resamples | None = None
    base: Snapshot | None = None
    rng = None
    if method == Snapshot.IntervalMethod.BOOTSTRAP:
        used_rounds = rounds or settings.LEADERBOARD_BOOTSTRAP_ROUNDS
        # A seed given by the caller asks for a board reproducible from it: draw afresh.
        previous, base = (None, None) if seed is not None else _previous_resamples(key, counts)
        seed = seed if seed is not None else random.SystemRandom().randrange(2**63)
        rng = np.random.default_rng(seed)
    else:
        seed = None
    models = ImageModel.objects.in_bulk(counts.model_ids)
    anchor_key = settings.LEADERBOARD_ANCHOR
    threshold = (
        settings.LEADERBOARD_CATEGORY_MIN_VOTES
        if category
        else settings.LEADERBOARD_PROVISIONAL_VOTES
    )
    half_width = settings.LEADERBOARD_PROVISIONAL_HALF_WIDTH
    computed = board.compute_board(
        counts=counts.pairs,
        intervals=str(method),
        rng=rng,
        rounds=used_rounds or 1,
        previous=previous,
        threads=settings.LEADERBOARD_BOOTSTRAP_THREADS,
        anchor=next(
            (i for i, pk in enumerate(counts.model_ids) if models[pk].key == anchor_key), None
        ),
        anchor_rating=settings.LEADERBOARD_ANCHOR_RATING,
        simultaneous=settings.LEADERBOARD_SIMULTANEOUS,
        min_votes=threshold,
        max_half_width=half_width,
        hide_below_min=bool(category),
        # The style-controlled board is the overall board's only, from the kept style counts.
        style_counts=None if category else style_counts.load(model_ids=counts.model_ids),
    )
    if not computed.extended:
        base = None
    shown = computed.shown_board
    styled = computed.style
    raw_centred = np.where(
        np.isfinite(computed.log_strengths),
        computed.log_strengths * bounds.POINTS_PER_LOG + 1000.0,
        np.nan,
    )
    tie_model = BoardOptions.tie_model_in_use()
    davidson, davidson_nu = None, None
    if tie_model == TieModel.DAVIDSON:
        try:
            davidson, davidson_nu = ties.davidson_ratings(core_counts=computed.core_counts)
        except ratings.ConvergenceError:
            logger.warning("Davidson fit did not converge; the board goes without its column")
    if not category and not all_votes:
        fold_online_elo()  # only the overall anonymous board shows online Elo
    elo = dict(OnlineElo.objects.values_list("model_id", "rating"))
    with transaction.atomic():
        snapshot = Snapshot.objects.create(
            category=category,
            all_votes=all_votes,
            created_at=timezone.now(),
            interval_method=method,
            bootstrap_rounds=used_rounds,
            seed=seed,
            resampled_from=base,
            resample_steps=base.resample_steps + 1 if base is not None else 0,
            votes_used=counts.votes,
            both_bad_as_tie=settings.LEADERBOARD_BOTH_BAD_AS_TIE,
            anchor=anchor_key if computed.anchor is not None else "",
            components=computed.components,
            simultaneous=settings.LEADERBOARD_SIMULTANEOUS,
            provisional_votes=threshold,
            provisional_half_width=half_width,
            style=styled.summary if styled is not None else {},
            tie_model=tie_model if davidson is not None else TieModel.HALF,
            davidson_nu=davidson_nu,
            code_version=code_version(),
            matrices={
                "model_ids": counts.model_ids,
                "win_rate": _json_matrix(computed.win_rates),
                "battles": computed.battles.astype(int).tolist(),
                "predicted": _json_matrix(computed.predicted),
                "counts_digest": digest,
            },
        )
        SnapshotRow.objects.bulk_create(
            SnapshotRow(
                snapshot=snapshot,
                model_id=counts.model_ids[i],
                rank=int(rank),
                rating=_finite(shown.rating[i]),
                lower=float(shown.lower[i]),
                upper=float(shown.upper[i]),
                status=str(shown.status[i]),
                rank_best=int(shown.rank_best[i]),
                rank_worst=int(shown.rank_worst[i]),
                votes_to_flip=None,
                controlled_rating=_finite(styled.controlled[i]) if styled is not None else None,
                style_move=_finite(styled.controlled[i] - raw_centred[i])
                if styled is not None
                else None,
                davidson_rating=_finite(davidson[i]) if davidson is not None else None,
                votes=int(computed.votes[i]),
                win_rate=float(computed.win_rate[i]),
                online_elo=elo.get(counts.model_ids[i]) if not category else None,
                provisional=bool(computed.provisional[i]),
                component=int(shown.group[i]),
            )
            for i, rank in zip(computed.shown.tolist(), computed.rank.tolist(), strict=True)
        )
        snapshot.compute_ms = (time.perf_counter() - started) * 1000
        snapshot.save(update_fields=["compute_ms"])
    if computed.resamples is not None:
        _RESAMPLES[key] = _KeptResamples(
            model_ids=counts.model_ids, resamples=computed.resamples, snapshot_id=snapshot.pk
        )
    if with_votes_to_flip:
        fill_votes_to_flip(
            snapshot=snapshot, computed=computed, model_ids=counts.model_ids, key=key
        )
    return snapshot


def fill_votes_to_flip(
    *,
    snapshot: Snapshot,
    computed: board.Board,
    model_ids: list[int],
    key: tuple[str, bool, bool] | None = None,
) -> None:
    """Compute a saved snapshot's votes to flip (each confirmed by a refit) and store them in
    its rows; a row keeps None where no removal along the searched orders flips the model."""
    pairs = computed.core_counts
    # Votes to flip are a deterministic function of the core's counts and the anchor: when no
    # vote arrived since this board's last refresh (a forced refresh), the kept answer, confirmed
    # by refits of these very counts, is reused.
    fingerprint = (
        tuple(model_ids),
        computed.anchor,
        pairs.a.tobytes(),
        pairs.b.tobytes(),
        pairs.wins_a.tobytes(),
        pairs.wins_b.tobytes(),
        pairs.ties.tobytes(),
    )
    kept = _FLIPS.get(key) if key is not None else None
    if kept is not None and kept[0] == fingerprint:
        flips = kept[1]
    else:
        flips = board.votes_to_flip(computed)
        if key is not None:
            _FLIPS[key] = (fingerprint, flips)
    rows = list(SnapshotRow.objects.filter(snapshot=snapshot))
    index = {pk: i for i, pk in enumerate(model_ids)}
    for row in rows:
        found = int(flips[index[row.model_id]])
        row.votes_to_flip = found if found != robustness.NO_FLIP else None
    SnapshotRow.objects.bulk_update(rows, ["votes_to_flip"])


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _counts_digest(counts: Counts, *, method: str) -> str:
    """A fingerprint of what a board is computed from: the counts and the settings that read
    them."""
    pairs = counts.pairs
    digest = hashlib.sha256(
        repr(
            (
                counts.model_ids,
                method,
                settings.LEADERBOARD_BOTH_BAD_AS_TIE,
                settings.LEADERBOARD_ANCHOR,
                BoardOptions.tie_model_in_use(),
            )
        ).encode()
    )
    for column in (pairs.a, pairs.b, pairs.wins_a, pairs.wins_b, pairs.ties):
        digest.update(np.ascontiguousarray(column).tobytes())
    return digest.hexdigest()


def _json_matrix(matrix: np.ndarray) -> list[list[float | None]]:
    return [[None if np.isnan(v) else round(float(v), 6) for v in row] for row in matrix]


def refresh_all(**options: object) -> list[Snapshot]:
    """Refresh the overall board and one board per category that has votes."""
    anonymous = PairCount.objects.filter(anonymous=True).order_by()
    categories = anonymous.values_list("category", flat=True).distinct()
    boards = [OVERALL, *sorted(set(categories))]
    made = []
    for category in boards:
        snapshot = refresh(category=category, **options)  # type: ignore[arg-type]
        if snapshot is not None:
            made.append(snapshot)
    if BoardOptions.all_votes_published():
        snapshot = refresh(all_votes=True, **options)  # type: ignore[arg-type]
        if snapshot is not None:
            made.append(snapshot)
    return made
