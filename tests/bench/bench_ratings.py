"""Benchmark: our rating refresh against arena-rank, choix and a FastChat-style pipeline.

Run from the repository root:  python tests/bench/bench_ratings.py [--votes N] [--models M]
[--database-url postgres://.../scratch] (see tests/bench/README.md for which virtual environment
has arena-rank installed). With a scratch database, the honest refresh also reads its kept counts
(pair and style rows) from it, as services.refresh does.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

# Single-threaded BLAS, so every method is timed alike on a 2-core machine; must precede numpy.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# JAX (arena-rank) ignores OMP_NUM_THREADS and uses every core unless XLA is told otherwise.
os.environ.setdefault(
    "XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
)

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import minimize

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script from anywhere

from leaderboard import board, ratings, style  # noqa: E402

T = TypeVar("T")
Votes = tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]


def simulate_votes(*, votes: int, models: int, tie_share: float, seed: int) -> Votes:
    """Uniformly paired battles, random sides, a fixed share of ties, Bradley-Terry otherwise."""
    rng = np.random.default_rng(seed)
    strengths = rng.normal(0.0, 0.6, size=models)
    a = rng.integers(0, models, size=votes)
    b = (a + rng.integers(1, models, size=votes)) % models
    a_wins = rng.random(votes) < 1.0 / (1.0 + np.exp(strengths[b] - strengths[a]))
    outcome = np.where(rng.random(votes) < tie_share, 0.5, a_wins.astype(np.float64))
    return a, b, outcome


def simulate_style_votes(votes: Votes, *, models: int, seed: int) -> NDArray[np.float64]:
    """The same votes as per-vote rows (board.STYLE_COLUMNS: left and right model, left's
    score, then width, height and compute ms of each image), the first model of
    each vote on the left. As in the arena, both images of a battle are stored at one size
    (mostly square, some portrait or landscape, a few large), so only the side and the
    generation-time buckets differ within a vote; each model has its own typical compute time,
    and 1% of the images have none recorded."""
    a, b, outcome = votes
    rng = np.random.default_rng(seed + 7)
    sizes = np.array([[512, 512], [512, 768], [768, 512], [1024, 1024], [1536, 1024]], float)
    size = sizes[rng.choice(len(sizes), size=a.size, p=[0.6, 0.15, 0.15, 0.07, 0.03])]
    typical_ms = np.exp(rng.uniform(np.log(500.0), np.log(15_000.0), size=models))
    compute_ms = []
    for side in (a, b):
        ms = np.round(typical_ms[side] * rng.lognormal(0.0, 0.4, size=side.size))
        compute_ms.append(np.where(rng.random(side.size) < 0.01, np.nan, ms))
    images = [np.column_stack([size, ms]) for ms in compute_ms]
    return np.column_stack([a, b, outcome, *images]).astype(np.float64)


def timed(function: Callable[[], T], repeats: int) -> tuple[float, T]:
    """Median wall time over repeats, and the last result."""
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), result


def fastchat_style(votes: Votes, models: int, rounds: int, seed: int) -> dict[str, Any]:
    """Our own rendering of FastChat's pipeline: unique rows, L-BFGS-B, count bootstrap."""
    a, b, outcome = votes

    def aggregate() -> tuple[NDArray[np.int64], NDArray[np.float64]]:
        table = np.column_stack([a, b, (2 * outcome).astype(np.int64)])
        rows, count = np.unique(table, axis=0, return_counts=True)
        return rows, count.astype(np.float64)

    def fit(rows: NDArray[np.int64], weight: NDArray[np.float64]) -> NDArray[np.float64]:
        side_a, side_b, score = rows[:, 0], rows[:, 1], rows[:, 2] / 2.0
        total = weight.sum()

        def loss_and_gradient(theta: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
            d = theta[side_a] - theta[side_b]
            loss = np.sum(weight * (np.logaddexp(0.0, d) - score * d)) / total
            per_row = weight * (1.0 / (1.0 + np.exp(-d)) - score) / total
            gradient = np.bincount(side_a, per_row, models) - np.bincount(side_b, per_row, models)
            return float(loss), gradient.astype(np.float64)

        result = minimize(
            loss_and_gradient,
            np.zeros(models),
            jac=True,
            method="L-BFGS-B",
            options={"gtol": 1e-10, "ftol": 1e-14},
        )
        return np.asarray(result.x - result.x.mean())

    aggregate_s, (rows, weight) = timed(aggregate, 1)
    fit_s, theta = timed(lambda: fit(rows, weight), 1)

    def bootstrap() -> NDArray[np.float64]:
        rng = np.random.default_rng(seed)
        draws = rng.multinomial(int(weight.sum()), weight / weight.sum(), size=rounds)
        return np.array([fit(rows, draw.astype(np.float64)) for draw in draws])

    bootstrap_s, _ = timed(bootstrap, 1)
    return {"aggregate": aggregate_s, "fit": fit_s, "bootstrap": bootstrap_s, "theta": theta}


def arena_rank_timings(
    votes: Votes, models: int, repeats: int, bootstrap_rounds: int
) -> dict[str, Any] | None:
    """LMArena's arena-rank on the same votes: sandwich intervals (its default), and the cost of
    one round of its bootstrap; None if it is not installed."""
    try:
        import jax
        import pandas as pd
        from arena_rank.models.bradley_terry import BradleyTerry, fit_single_bootstrap_sample
        from arena_rank.utils.data_utils import PairDataset
    except ImportError:
        return None
    a, b, outcome = votes
    names = np.array([f"model-{i:03d}" for i in range(models)])  # sorted names keep our indices
    winner = np.where(outcome == 1.0, "model_a", np.where(outcome == 0.0, "model_b", "tie"))
    frame = pd.DataFrame({"model_a": names[a], "model_b": names[b], "winner": winner})
    # The first call compiles JAX code; report it apart from the median of the later calls.
    start = time.perf_counter()
    dataset = PairDataset.from_pandas(frame)
    BradleyTerry(n_competitors=models).compute_ratings_and_cis(dataset)
    first_s = time.perf_counter() - start
    aggregate_s, dataset = timed(lambda: PairDataset.from_pandas(frame), repeats)

    def fit() -> Any:
        return BradleyTerry(n_competitors=models).fit(dataset)

    fit_s, model = timed(fit, repeats)
    sandwich_s, result = timed(
        lambda: model.compute_ratings_and_cis(dataset, ci_method="sandwich"), repeats
    )
    # Its bootstrap draws the resampled counts as compute_ratings_and_cis(ci_method="bootstrap")
    # does, then refits each round with the function that method hands to a process pool. Here
    # the rounds run in this process: that pool forks after JAX has started its threads, which
    # deadlocked on this machine, as JAX's own warning says it may.
    total = int(np.sum(dataset.counts))
    resampled = jax.random.multinomial(
        key=jax.random.PRNGKey(0),
        n=total,
        p=dataset.counts / total,
        shape=(bootstrap_rounds + 1, dataset.counts.shape[0]),
        dtype=model.dtype,
    )
    fit_single_bootstrap_sample(resampled[0], model, dataset)  # compiles
    rounds = iter(resampled[1:])
    round_s, _ = timed(
        lambda: fit_single_bootstrap_sample(next(rounds), model, dataset), bootstrap_rounds
    )
    return {
        "aggregate": aggregate_s,
        "fit": fit_s,
        "sandwich": sandwich_s,
        "bootstrap_round": round_s,
        "first_call": first_s,
        "ratings": np.asarray(result["ratings"]),
        "lower": np.asarray(result["rating_lower"]),
        "upper": np.asarray(result["rating_upper"]),
    }


def choix_fit(counts: ratings.PairCounts, repeats: int) -> dict[str, Any]:
    """choix's iterative Luce spectral ranking on the comparison matrix, ties as half a win each."""
    import choix

    wins = np.zeros((counts.n_models, counts.n_models))
    np.add.at(wins, (counts.a, counts.b), counts.wins_a + 0.5 * counts.ties)
    np.add.at(wins, (counts.b, counts.a), counts.wins_b + 0.5 * counts.ties)
    fit_s, theta = timed(lambda: choix.ilsr_pairwise_dense(wins, alpha=0.0, tol=1e-12), repeats)
    return {"fit": fit_s, "theta": np.asarray(theta)}


PROTECTED_DATABASES = {"postgres", "test", "root"}
BENCH_MODEL_PREFIX = "bench-ratings-"


def open_database(url: str) -> None:
    """Point Django at the scratch database ``url`` and migrate it; refuse a database that
    holds counts or votes of anything but this benchmark's own models."""
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "arena.settings")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from arena.models import Vote
    from leaderboard.models import ImportedBattle, PairCount, StyleCount

    if connection.vendor != "postgresql" or connection.settings_dict["NAME"] in PROTECTED_DATABASES:
        raise SystemExit("--database-url must name a scratch PostgreSQL database")
    call_command("migrate", verbosity=0)
    theirs = [
        PairCount.objects.exclude(model_a__key__startswith=BENCH_MODEL_PREFIX),
        StyleCount.objects.exclude(model_left__key__startswith=BENCH_MODEL_PREFIX),
    ]
    if (
        any(rows.exists() for rows in theirs)
        or Vote.objects.exists()
        or (ImportedBattle.objects.exists())
    ):
        raise SystemExit("the database holds other counts or votes: give a scratch database")


def clear_database() -> None:
    """Delete this benchmark's models, with their kept counts and the boards that show them."""
    from generation.models import ImageModel
    from leaderboard.models import Snapshot

    ours = ImageModel.objects.filter(key__startswith=BENCH_MODEL_PREFIX)
    Snapshot.objects.filter(rows__model__in=ours).delete()
    ours.delete()


def store_counts(
    pairs: ratings.PairCounts, styled: style.StyledCounts, model_ids: list[int]
) -> None:
    """Write ``pairs`` and ``styled`` as the kept rows (PairCount, StyleCount) of the models
    ``model_ids`` (in index order), replacing the rows kept before."""
    from leaderboard.models import STYLE_DIFFERENCES, PairCount, StyleCount

    PairCount.objects.filter(model_a_id__in=model_ids).delete()
    StyleCount.objects.filter(model_left_id__in=model_ids).delete()
    ids = np.asarray(model_ids)
    PairCount.objects.bulk_create(
        (
            PairCount(
                category="bench",
                model_a_id=int(ids[a]),
                model_b_id=int(ids[b]),
                wins_a=int(wa),
                wins_b=int(wb),
                ties=int(t),
            )
            for a, b, wa, wb, t in zip(
                pairs.a, pairs.b, pairs.wins_a, pairs.wins_b, pairs.ties, strict=True
            )
        ),
        batch_size=5000,
    )
    StyleCount.objects.bulk_create(
        (
            StyleCount(
                model_left_id=int(ids[left]),
                model_right_id=int(ids[right]),
                **{name: int(d) for name, d in zip(STYLE_DIFFERENCES, row[1:], strict=True)},
                wins_left=int(wl),
                wins_right=int(wr),
                ties=int(t),
            )
            for left, right, row, wl, wr, t in zip(
                styled.left,
                styled.right,
                styled.features,
                styled.wins_left,
                styled.wins_right,
                styled.ties,
                strict=True,
            )
        ),
        batch_size=5000,
    )


def read_counts() -> tuple[ratings.PairCounts, style.StyledCounts]:
    """What services.refresh reads for the overall board: the summed pair counts, then the
    kept style rows between its models."""
    from leaderboard import services, style_counts

    counts = services.load_counts()
    return counts.pairs, style_counts.load(model_ids=counts.model_ids)


def same_pairs(one: ratings.PairCounts, other: ratings.PairCounts) -> bool:
    """Whether two pair counts hold the same rows, whatever their order."""

    def rows(counts: ratings.PairCounts) -> NDArray[np.float64]:
        table = np.column_stack([counts.a, counts.b, counts.wins_a, counts.wins_b, counts.ties])
        return table[np.lexsort(table.T[::-1])]

    return one.n_models == other.n_models and np.array_equal(rows(one), rows(other))


def main() -> None:
    """Time every method on one synthetic data set and print the comparison table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--votes", type=int, default=1_000_000)
    parser.add_argument("--models", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=1000, help="bootstrap rounds for our refresh")
    parser.add_argument("--fastchat-rounds", type=int, default=100)
    parser.add_argument(
        "--arena-bootstrap-rounds",
        type=int,
        default=5,
        help="arena-rank bootstrap rounds to time (each refits from scratch, about 0.6 s)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count() or 1,
        help="threads for the fresh bootstrap draws, in one extra row",
    )
    parser.add_argument(
        "--new-votes",
        type=int,
        nargs="+",
        default=[10, 100],
        help="votes arriving between two refreshes, for the extended-bootstrap refresh",
    )
    parser.add_argument("--tie-share", type=float, default=0.2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--database-url",
        default="",
        help="a scratch PostgreSQL database: the honest refresh then reads its kept counts there",
    )
    args = parser.parse_args()
    if args.database_url:
        open_database(args.database_url)

    added = max(args.new_votes)
    everything = simulate_votes(
        votes=args.votes + added, models=args.models, tie_share=args.tie_share, seed=args.seed
    )
    votes: Votes = (
        everything[0][: args.votes],
        everything[1][: args.votes],
        everything[2][: args.votes],
    )
    a, b, outcome = votes
    aggregate_s, counts = timed(
        lambda: ratings.aggregate_votes(a=a, b=b, outcome=outcome, n_models=args.models),
        args.repeats,
    )
    fit_s, theta = timed(lambda: ratings.fit_bradley_terry(counts=counts), args.repeats)
    sandwich_s, (low, high) = timed(
        lambda: ratings.sandwich_intervals(counts=counts, log_strengths=theta), args.repeats
    )
    bootstrap_s, drawn = timed(
        lambda: ratings.bootstrap(
            counts=counts,
            rounds=args.rounds,
            rng=np.random.default_rng(args.seed),
            log_strengths=theta,
        ),
        args.repeats,
    )
    boot_low, boot_high = drawn.lower, drawn.upper
    cells = np.concatenate([counts.wins_a, counts.wins_b, counts.ties])
    before = drawn  # the board the refreshes below extend
    points_per_log = 400.0 / np.log(10.0)

    def refresh(
        grown: ratings.PairCounts, previous: ratings.Resamples | None, threads: int = 1
    ) -> ratings.Bootstrap:
        """What a bootstrap board computes from kept counts: fit, sandwich, bootstrap."""
        point = ratings.fit_bradley_terry(counts=grown)
        ratings.sandwich_intervals(counts=grown, log_strengths=point)
        return ratings.bootstrap(
            counts=grown,
            rounds=args.rounds,
            rng=np.random.default_rng(args.seed + 1),
            log_strengths=point,
            previous=previous,
            threads=threads,
        )

    def moved(result: ratings.Bootstrap) -> float:
        """Largest change of a bound from the board before, in display points."""
        change = max(
            np.max(np.abs(result.lower - before.lower)), np.max(np.abs(result.upper - before.upper))
        )
        return float(change * points_per_log)

    refreshes: list[tuple[str, float, str]] = []
    for new in [0, *args.new_votes]:
        # Counts are kept per vote in production, so aggregating the grown log is not timed.
        grown = ratings.aggregate_votes(
            a=everything[0][: args.votes + new],
            b=everything[1][: args.votes + new],
            outcome=everything[2][: args.votes + new],
            n_models=args.models,
        )
        seconds, result = timed(functools.partial(refresh, grown, before.resamples), args.repeats)
        assert result.extended, f"+{new} votes: the kept rounds were not extended"
        afresh = refresh(grown, None)
        refreshes.append(
            (
                f"+{new} votes, rounds extended",
                seconds,
                f"bounds moved {moved(result):.2f} pts (drawn afresh: {moved(afresh):.2f})",
            )
        )
    seconds, _ = timed(lambda: refresh(counts, None), args.repeats)
    refreshes.append(("rounds drawn afresh", seconds, ""))
    if args.threads > 1:
        seconds, _ = timed(lambda: refresh(counts, None, args.threads), args.repeats)
        refreshes.append((f"rounds drawn afresh, {args.threads} threads", seconds, ""))

    def draws_only() -> None:
        # Same chunks of 128 rounds as a fresh bootstrap draws, so the two times compare.
        rng = np.random.default_rng(args.seed)
        for first in range(0, args.rounds, 128):
            rng.multinomial(
                int(cells.sum()), cells / cells.sum(), size=min(128, args.rounds - first)
            )

    draws_s, _ = timed(draws_only, args.repeats)
    ours = ratings.to_display(log_strengths=theta)
    our_low, our_high = ratings.intervals_to_display(log_strengths=theta, lower=low, upper=high)
    boot_low_pts, boot_high_pts = ratings.intervals_to_display(
        log_strengths=theta, lower=boot_low, upper=boot_high
    )

    def honest(
        grown: ratings.PairCounts,
        styled: style.StyledCounts,
        previous: ratings.Resamples | None,
        read: Callable[[], tuple[ratings.PairCounts, style.StyledCounts]] | None = None,
    ) -> dict[str, float]:
        """An honest board's refresh from kept counts (services.refresh's maths): with ``read``,
        first the kept counts read from the database as services.refresh reads them (the pair
        counts summed, then the kept style rows); then the board (board.compute_board: bounded
        core, fit, intervals, sandwich or the extended bootstrap when ``previous`` is given,
        open bounds, ranks and rank sets, and the style-controlled fit of the overall board, from
        kept style counts; what the snapshot is saved with), then votes to flip (filled into
        the saved snapshot afterwards)."""
        times: dict[str, float] = {}
        start = time.perf_counter()
        if read is not None:
            grown, styled = read()
            times["read kept counts"] = time.perf_counter() - start
        mark = time.perf_counter()
        computed = board.compute_board(
            counts=grown,
            intervals="bootstrap" if previous is not None else "sandwich",
            rng=np.random.default_rng(args.seed + 2),
            rounds=args.rounds,
            previous=previous,
            style_counts=styled,
        )
        assert computed.style is not None
        assert previous is None or computed.extended, "the kept rounds were not extended"
        times["board (saved)"] = time.perf_counter() - mark
        mark = time.perf_counter()
        board.votes_to_flip(computed)
        times["votes to flip (filled after)"] = time.perf_counter() - mark
        times["total"] = time.perf_counter() - start
        return times

    plus_ten = ratings.aggregate_votes(
        a=everything[0][: args.votes + 10],
        b=everything[1][: args.votes + 10],
        outcome=everything[2][: args.votes + 10],
        n_models=args.models,
    )
    # Per-vote rows with their images' sizes and times, and the style counts kept from them.
    style_rows = simulate_style_votes(everything, models=args.models, seed=args.seed)
    style_count_s, styled = timed(
        lambda: board.count_style_votes(votes=style_rows[: args.votes], n_models=args.models),
        args.repeats,
    )
    styled_plus_ten = board.count_style_votes(
        votes=style_rows[: args.votes + 10], n_models=args.models
    )
    core = np.ones(args.models, dtype=bool)
    style_fit_s, _ = timed(lambda: board.style_fit(counts=styled, core=core), args.repeats)

    def database_runs(
        base: ratings.PairCounts,
        base_styled: style.StyledCounts,
        grown: ratings.PairCounts,
        grown_styled: style.StyledCounts,
    ) -> dict[str, list[dict[str, float]]]:
        """The honest refreshes with their kept counts read from the scratch database, and
        services.refresh end to end (reads, board, snapshot saved, votes to flip filled in)."""
        from generation.models import ImageModel
        from leaderboard import services

        clear_database()
        model_ids = [
            ImageModel.objects.create(
                key=f"{BENCH_MODEL_PREFIX}{i:03d}", display_name=f"Model {i}", source="bench"
            ).pk
            for i in range(args.models)
        ]
        runs: dict[str, list[dict[str, float]]] = {}

        def end_to_end(**options: Any) -> dict[str, float]:
            services._FLIPS.clear()  # a cache of the last answer: each run computes its own
            start = time.perf_counter()
            snapshot = services.refresh(**options)
            assert snapshot is not None and snapshot.style
            return {"total": time.perf_counter() - start}

        store_counts(base, base_styled, model_ids)
        read_pairs, read_styled = read_counts()
        assert same_pairs(read_pairs, base), "the stored pair counts read back differ"
        for name in ("left", "right", "features", "wins_left", "wins_right", "ties"):
            assert np.array_equal(getattr(read_styled, name), getattr(base_styled, name)), name
        runs["sandwich, kept counts read from PostgreSQL"] = [
            honest(base, base_styled, None, read_counts) for _ in range(args.repeats)
        ]
        runs["sandwich, services.refresh end to end"] = [
            end_to_end(interval_method="sandwich") for _ in range(args.repeats)
        ]
        # A bootstrap board on the counts before, whose rounds the next refresh extends.
        services._RESAMPLES.clear()
        services.refresh(interval_method="bootstrap", rounds=args.rounds, with_votes_to_flip=False)
        kept = dict(services._RESAMPLES)
        store_counts(grown, grown_styled, model_ids)
        runs[f"{args.rounds}-rd bootstrap extended by 10 votes, read from PostgreSQL"] = [
            honest(grown, grown_styled, before.resamples, read_counts) for _ in range(args.repeats)
        ]

        def extended_end_to_end() -> dict[str, float]:
            services._RESAMPLES.clear()
            services._RESAMPLES.update(kept)
            return end_to_end(interval_method="bootstrap", rounds=args.rounds)

        runs[f"{args.rounds}-rd bootstrap extended by 10 votes, services.refresh end to end"] = [
            extended_end_to_end() for _ in range(args.repeats)
        ]
        clear_database()
        return runs

    honest_runs = {
        "sandwich": [honest(counts, styled, None) for _ in range(args.repeats)],
        f"{args.rounds}-rd bootstrap extended by 10 votes": [
            honest(plus_ten, styled_plus_ten, before.resamples) for _ in range(args.repeats)
        ],
    }
    if args.database_url:
        honest_runs.update(database_runs(counts, styled, plus_ten, styled_plus_ten))

    arena = arena_rank_timings(votes, args.models, args.repeats, args.arena_bootstrap_rounds)
    choix_result = choix_fit(counts, args.repeats)
    fastchat = fastchat_style(votes, args.models, args.fastchat_rounds, args.seed)

    def gap(other: NDArray[np.float64] | None) -> str:
        return "-" if other is None else f"{np.max(np.abs(other - ours)):.1e}"

    arena_total = arena["aggregate"] + arena["fit"] + arena["sandwich"] if arena else None
    rows: list[tuple[str, float | None, float | None, float | None, float | None, str, str]] = [
        (
            "ours, sandwich (LMArena default)",
            aggregate_s,
            fit_s,
            sandwich_s,
            None,
            "(reference)",
            "(reference)",
        ),
        (
            f"ours, sandwich + {args.rounds}-rd bootstrap",
            aggregate_s,
            fit_s,
            sandwich_s,
            bootstrap_s,
            "",
            "",
        ),
    ]
    if arena:
        bound_gap = max(
            np.max(np.abs(arena["lower"] - our_low)), np.max(np.abs(arena["upper"] - our_high))
        )
        rows.append(
            (
                "arena-rank 0.1.1 (JAX, sandwich)",
                arena["aggregate"],
                arena["fit"],
                arena["sandwich"],
                None,
                gap(arena["ratings"]),
                f"{bound_gap:.1e}",
            )
        )
    rows.append(
        (
            "choix ilsr_pairwise_dense",
            None,
            choix_result["fit"],
            None,
            None,
            gap(ratings.to_display(log_strengths=choix_result["theta"])),
            "-",
        )
    )
    rows.append(
        (
            f"FastChat-style, {args.fastchat_rounds}-rd bootstrap",
            fastchat["aggregate"],
            fastchat["fit"],
            None,
            fastchat["bootstrap"],
            gap(ratings.to_display(log_strengths=fastchat["theta"])),
            "-",
        )
    )

    def cell(seconds: float | None) -> str:
        return f"{'-' if seconds is None else f'{seconds:.4f}':>10}"

    print(
        f"{args.votes:,} votes, {args.models} models, {args.tie_share:.0%} ties, seed {args.seed}, "
        f"{counts.a.size} pair rows, OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}, "
        f"XLA_FLAGS={os.environ['XLA_FLAGS']!r}; "
        f"seconds, median of {args.repeats} (FastChat-style: one run)"
    )
    header = (
        f"{'method':<36}{'aggregate':>10}{'fit':>10}{'sandwich':>10}{'bootstrap':>10}{'total':>10}"
        f"{'arena/this':>11}{'max|d rating|':>15}{'max|d bound|':>14}"
    )
    print(header)
    print("-" * len(header))
    for name, aggregate, fit, sandwich, bootstrap, rating_gap, bound_gap in rows:
        total = sum(part for part in (aggregate, fit, sandwich, bootstrap) if part is not None)
        speed = f"{arena_total / total:.1f}x" if arena_total else "n/a"
        print(
            f"{name:<36}{cell(aggregate)}{cell(fit)}{cell(sandwich)}{cell(bootstrap)}{cell(total)}"
            f"{speed:>11}{rating_gap:>15}{bound_gap:>14}"
        )
    if arena:
        print(f"arena-rank's first call, which compiles its JAX code: {arena['first_call']:.2f} s")
        per_round = arena["bootstrap_round"]
        print(
            f"arena-rank's bootstrap: {per_round:.3f} s per round (median of"
            f" {args.arena_bootstrap_rounds}), so {per_round * args.rounds:.0f} s for"
            f" {args.rounds} rounds in one process (rounds are independent refits: linear)"
        )
    else:
        print(
            "arena-rank is not importable here: run with /work/bench-venv/bin/python, see README.md"
        )
    print(
        "rating and bound gaps are in display points (400 * log10 scale), against our sandwich row"
    )
    print(
        f"our bootstrap: numpy's multinomial draws alone ({args.rounds} rounds x {cells.size}"
        f" cells) take {draws_s:.4f} s of its {bootstrap_s:.4f} s; the batched refits the rest"
    )
    arena_fit = arena["fit"] + arena["sandwich"] if arena else None
    # arena-rank's own bootstrap board: its fit and sandwich, then one refit per round.
    arena_boot = arena_fit + arena["bootstrap_round"] * args.rounds if arena and arena_fit else None
    print(
        f"refresh from kept counts (fit + sandwich + {args.rounds}-round bootstrap), seconds,"
        f" median of {args.repeats}; speed-up over arena-rank's fit + sandwich"
        + (
            f" ({arena_fit:.2f} s) / over arena-rank from the votes ({arena_total:.2f} s)"
            f" / over arena-rank's {args.rounds}-round bootstrap ({arena_boot:.0f} s)"
            if arena_fit and arena_total and arena_boot
            else ""
        )
    )
    for label, seconds, note in refreshes:
        speed = (
            f"{arena_fit / seconds:.0f}x / {arena_total / seconds:.0f}x"
            f" / {arena_boot / seconds:,.0f}x"
            if arena_fit and arena_total and arena_boot
            else ""
        )
        print(f"  {label:<34}{seconds:>10.4f}  {speed:<22} {note}")
    print(
        "honest refresh from kept counts (board.py + robustness.py, what services.refresh"
        " computes, the style-controlled fit from kept style counts included), seconds,"
        f" median of {args.repeats}:"
    )
    for label, runs in honest_runs.items():
        stages = ", ".join(
            f"{stage} {statistics.median(run[stage] for run in runs):.4f}"
            for stage in runs[0]
            if stage != "total"
        )
        total = statistics.median(run["total"] for run in runs)
        print(f"  {label:<72} total {total:.4f}" + (f"  ({stages})" if stages else ""))
    if not args.database_url:
        print(
            "  (no --database-url: the kept counts were not read from a database, so these"
            " totals leave out the reads that services.refresh makes)"
        )
    print(
        f"  of which the style-controlled fit ({styled.left.size} kept rows of (left, right,"
        f" covariate difference)): {style_fit_s:.4f}; counting the {args.votes:,} per-vote rows"
        f" into those rows (board.count_style_votes, not in the totals): {style_count_s:.4f}"
    )
    width = our_high - our_low
    boot_width = boot_high_pts - boot_low_pts
    print(
        f"95% interval width: sandwich mean {width.mean():.2f} pts,"
        f" bootstrap mean {boot_width.mean():.2f} pts,"
        " "
        f"largest per-model difference {np.max(np.abs(width - boot_width)):.2f} pts"
    )


if __name__ == "__main__":
    main()
