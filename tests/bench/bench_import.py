"""Benchmark: import a million-row battle log, then compute boards from the counts.

Run from the repository root against a scratch database (never one in use):

    createdb -h 127.0.0.1 -U postgres arena_bench
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/arena_bench .venv/bin/python manage.py migrate
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/arena_bench \
        .venv/bin/python tests/bench/bench_import.py [--rows N] [--models M] [--reset]

``--baseline REV`` (default ``886fd81``, the row-by-row import) also times
``leaderboard/imports.py`` as it is at that git revision, in the same run on the same file,
checks that both store the same counts, and prints the ratio; ``--baseline ''`` skips it.
``--imports-only`` stops after the imports. ``--repeats N`` imports N times (each after a
reset, the baseline's import right after this code's) and reports medians and ranges.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

# Single-threaded BLAS, as in bench_ratings.py; must precede numpy.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "arena.settings")

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script from anywhere

import django  # noqa: E402

django.setup()

from django.db import connection, transaction  # noqa: E402
from django.db.models import Sum  # noqa: E402

from arena.categories import CATEGORIES  # noqa: E402
from generation.models import ImageModel  # noqa: E402
from leaderboard import services  # noqa: E402
from leaderboard.imports import import_battles  # noqa: E402
from leaderboard.models import ImportedBattle, OnlineElo, PairCount, Snapshot  # noqa: E402

PROTECTED_DATABASES = {"postgres", "test", "root"}
T = TypeVar("T")


def write_log(*, path: Path, rows: int, models: int, seed: int) -> None:
    """A seeded JSONL log in FastChat's layout: Bradley-Terry winners, 20% ties, 3% both bad,
    5% non-anonymous, random categories, increasing timestamps and a few extra columns."""
    rng = np.random.default_rng(seed)
    strengths = rng.normal(0.0, 0.6, size=models)
    a = rng.integers(0, models, size=rows)
    b = (a + rng.integers(1, models, size=rows)) % models
    a_wins = rng.random(rows) < 1.0 / (1.0 + np.exp(strengths[b] - strengths[a]))
    draw = rng.random(rows)
    winner = np.where(a_wins, 0, 1)
    winner = np.where(draw < 0.20, 2, np.where(draw < 0.23, 3, winner))
    outcomes = ("model_a", "model_b", "tie", "tie (bothbad)")
    anony = np.where(rng.random(rows) < 0.95, "true", "false")
    category = rng.integers(0, len(CATEGORIES), size=rows)
    tstamp = 1_700_000_000.0 + np.cumsum(rng.exponential(2.0, size=rows))
    judge = rng.integers(0, 100_000, size=rows)
    with path.open("w") as file:
        for i in range(rows):
            file.write(
                f'{{"question_id": "{i:08x}", "model_a": "Model {a[i]:02d}", '
                f'"model_b": "Model {b[i]:02d}", "winner": "{outcomes[winner[i]]}", '
                f'"judge": "arena_user_{judge[i]}", "turn": 1, "anony": {anony[i]}, '
                f'"language": "English", "tstamp": {tstamp[i]:.4f}, '
                f'"category": "{CATEGORIES[category[i]]}"}}\n'
            )


def reset() -> None:
    """Delete what the imports left, then, on PostgreSQL, vacuum the battles' table: this
    server runs without autovacuum, and the dead rows of the import before would otherwise
    stay in the heap and indexes that the next import writes to (and builds indexes over)."""
    delete_imports()
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"VACUUM {ImportedBattle._meta.db_table}")  # noqa: S608


@transaction.atomic
def delete_imports() -> None:
    """Forget every imported battle, count, Elo rating and imported model (and the boards
    that show them)."""
    imported = ImageModel.objects.filter(source="imported")
    Snapshot.objects.filter(rows__model__in=imported).delete()
    ImportedBattle.objects.all().delete()
    PairCount.objects.all().delete()
    OnlineElo.objects.all().delete()
    imported.delete()


MOVED_IMPORTS = {
    "from leaderboard.exports import FORMULA_STARTS": (
        "from generation.records import FORMULA_STARTS"
    ),
}


def baseline_import(revision: str) -> Callable[..., object]:
    """``import_battles`` of leaderboard/imports.py at a git revision, as a module of its own."""
    root = Path(__file__).resolve().parents[2]
    text = subprocess.run(
        ["git", "show", f"{revision}:leaderboard/imports.py"],
        cwd=root,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    for before, after in MOVED_IMPORTS.items():  # names that moved since, by today's layout
        text = text.replace(before, after)
    spec = importlib.util.spec_from_loader("leaderboard_imports_baseline", loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    exec(compile(text, f"{revision}:leaderboard/imports.py", "exec"), module.__dict__)  # noqa: S102
    function: Callable[..., object] = module.import_battles
    return function


def cpu_seconds() -> float:
    """CPU seconds of this process and, on PostgreSQL, of its server backend (same machine):
    on a shared machine the wall clock also counts time other processes held the cores."""
    used = time.process_time()
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            (pid,) = cursor.fetchone()
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return float("nan")
        used += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return used


def kept_counts() -> list[tuple[object, ...]]:
    return sorted(
        PairCount.objects.values_list(
            "category",
            "anonymous",
            "model_a__key",
            "model_b__key",
            "wins_a",
            "wins_b",
            "ties",
            "both_bad",
        )
    )


def timed(function: Callable[[], T]) -> tuple[float, T]:
    started = time.perf_counter()
    result = function()
    return time.perf_counter() - started, result


CHOICES = ("left", "right", "tie", "both_bad")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--models", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reset", action="store_true", help="delete earlier imports first")
    # 886fd81: the last commit with the row-by-row import (before issue #17's Arrow one).
    parser.add_argument("--baseline", default="886fd81", help="git revision to compare with")
    parser.add_argument("--imports-only", action="store_true", help="skip the boards")
    parser.add_argument(
        "--repeats", type=int, default=1, help="imports of each (medians, with the range)"
    )
    args = parser.parse_args()

    name = str(connection.settings_dict["NAME"])
    if connection.vendor == "postgresql" and name in PROTECTED_DATABASES:
        sys.exit(f"refusing to benchmark in the database {name!r}; create a scratch one")
    if args.reset:
        reset()
    elif ImportedBattle.objects.exists():
        sys.exit(f"{name} already holds imported battles; pass --reset to delete them first")

    table: list[tuple[str, float, str]] = []
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "battles.jsonl"
        seconds, _ = timed(
            lambda: write_log(path=path, rows=args.rows, models=args.models, seed=args.seed)
        )
        table.append(("write synthetic JSONL", seconds, f"{path.stat().st_size / 1e6:.0f} MB"))
        ours: list[tuple[float, float]] = []
        theirs: list[tuple[float, float]] = []
        loads = [os.getloadavg()[0]]
        for run in range(args.repeats):
            if run:
                reset()
            cpu = cpu_seconds()
            result = import_battles(path=path)
            ours.append((result.seconds, cpu_seconds() - cpu))
            if args.baseline:
                kept = kept_counts()
                reset()
                old_cpu = cpu_seconds()
                old_seconds, _ = timed(lambda: baseline_import(args.baseline)(path=path))
                theirs.append((old_seconds, cpu_seconds() - old_cpu))
                assert kept_counts() == kept, "the baseline stored other counts"
            loads.append(os.getloadavg()[0])
            print(
                f"run {run + 1}: import_battles {ours[-1][0]:.2f} s ({ours[-1][1]:.2f} s CPU)"
                + (
                    f", at {args.baseline} {theirs[-1][0]:.2f} s ({theirs[-1][1]:.2f} s CPU)"
                    if theirs
                    else ""
                )
                + f"; load {loads[-1]:.2f}",
                flush=True,
            )
        if args.baseline and not args.imports_only:
            reset()
            import_battles(path=path)  # this code's import in place for the boards
    seconds, cpu = (statistics.median(column) for column in zip(*ours, strict=True))
    if theirs:
        old_seconds, old_cpu = (statistics.median(column) for column in zip(*theirs, strict=True))
        table.append(
            (
                f"import_battles at {args.baseline}",
                old_seconds,
                f"same counts; {old_cpu:.1f} s CPU; this code is "
                f"{old_seconds / seconds:.1f}x faster ({old_cpu / cpu:.1f}x in CPU)"
                + _spread(theirs),
            )
        )
    table.append(
        (
            "import_battles",
            seconds,
            f"{result.rows:,} rows, {result.anonymous_rows:,} anonymous, "
            f"{len(result.models_created)} models created; {cpu:.1f} s CPU" + _spread(ours),
        )
    )
    print(f"load average (1 min) from {min(loads):.2f} to {max(loads):.2f} over the imports")
    if args.imports_only:
        print_table(name, table)
        return
    counted = PairCount.objects.aggregate(
        total=Sum("wins_a") + Sum("wins_b") + Sum("ties") + Sum("both_bad")
    )["total"]
    assert counted == result.anonymous_rows, (counted, result.anonymous_rows)
    boards = {
        "refresh (sandwich)": lambda: services.refresh(interval_method="sandwich"),
        "refresh (bootstrap, 1000 rounds)": lambda: services.refresh(
            interval_method="bootstrap", rounds=1000, seed=0
        ),
    }
    for label, refresh in boards.items():
        seconds, snapshot = timed(refresh)
        assert snapshot is not None
        note = f"{snapshot.rows.count()} models, {snapshot.votes_used:,} votes"
        table.append((label, seconds, note))
    counts_before = sorted(
        PairCount.objects.values_list(
            "category", "anonymous", "model_a", "model_b", "wins_a", "wins_b", "ties", "both_bad"
        )
    )
    before = dict(
        services.refresh(interval_method="sandwich").rows.values_list("model_id", "rating")
    )
    seconds, rebuilt = timed(services.rebuild_counts)
    counts_after = sorted(
        PairCount.objects.values_list(
            "category", "anonymous", "model_a", "model_b", "wins_a", "wins_b", "ties", "both_bad"
        )
    )
    after = dict(
        services.refresh(interval_method="sandwich").rows.values_list("model_id", "rating")
    )
    assert counts_after == counts_before, "the rebuilt counts equal the kept ones"
    gap = max(abs(after[pk] - before[pk]) for pk in before)
    table.append(
        (
            "rebuild counts from the votes",
            seconds,
            f"{rebuilt:,} votes, same counts, ratings within {gap:.1e} points",
        )
    )

    # The beat's case: a few votes arrive, then the next bootstrap board extends the rounds of the
    # one before instead of drawing them afresh. Last, because these votes are counted without
    # vote rows behind them, so a rebuild of the counts would drop them.
    services.refresh(interval_method="bootstrap", rounds=1000, seed=0)
    rng = random.Random(args.seed)
    model_ids = list(snapshot.rows.values_list("model_id", flat=True))
    for new_votes in (10, 100):
        times = []
        for _ in range(5):
            for _ in range(new_votes):
                left, right = rng.sample(model_ids, 2)
                services.count_vote(
                    left_id=left,
                    right_id=right,
                    category=rng.choice(CATEGORIES),
                    choice=rng.choice(CHOICES),
                )
            seconds, snapshot = timed(
                lambda: services.refresh(interval_method="bootstrap", rounds=1000)
            )
            assert snapshot is not None and snapshot.resampled_from is not None
            times.append(seconds)
        table.append(
            (
                f"refresh (bootstrap, +{new_votes} votes)",
                statistics.median(times),
                f"median of 5; rounds extended, {snapshot.resample_steps} steps since drawn",
            )
        )

    print_table(name, table)


def _spread(runs: list[tuple[float, float]]) -> str:
    """The range over several runs, wall and CPU, when there were several."""
    if len(runs) < 2:
        return ""
    walls, cpus = zip(*runs, strict=True)
    return (
        f"; median of {len(runs)}, wall [{min(walls):.2f}, {max(walls):.2f}],"
        f" CPU [{min(cpus):.2f}, {max(cpus):.2f}]"
    )


def print_table(name: str, table: list[tuple[str, float, str]]) -> None:
    print(f"database: {connection.vendor} ({name}); {os.cpu_count()} CPUs")
    print(f"{'step':<34} {'seconds':>8}  notes")
    for label, seconds, note in table:
        print(f"{label:<34} {seconds:>8.3f}  {note}")


if __name__ == "__main__":
    main()
