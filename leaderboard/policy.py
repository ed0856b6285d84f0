"""The matchmaking policy in force: which pair meets next, and the published account of it.

The numbers come from leaderboard.sampling; this module feeds it from the database. Each model
starts from its sampling weight (zero while it cannot serve a battle: arena.services.
match_weights). A model with fewer than ARENA_NEW_MODEL_VOTES votes on the latest overall board
has it multiplied by ARENA_NEW_MODEL_BOOST. A share 1 - ARENA_UNCERTAINTY_SHARE of battles is
drawn from those weights exactly as arena.matchmaking.pick_pair draws (one model in proportion
to its weight, then a second among the rest); the remaining share goes to neighbours in rating
order on that board, in proportion to how much one battle would shrink the variance of their
difference. The variances come from the board's interval half-widths (the contrast's covariance
is not kept, so the two variances are added): close, thinly measured neighbours first.

``current`` computes the policy for a battle; ``published`` adds each model's actual share of
battles, for the policy page and the API.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from datetime import timedelta

import numpy as np
from django.conf import settings
from django.db.models import Count
from django.utils import timezone

# ndtri is norm.ppf, without the import of scipy.stats (a second of every start).
from scipy.special import ndtri

from generation.models import ImageModel
from leaderboard import bounds, sampling
from leaderboard.models import Snapshot

Floats = sampling.Floats
SHARE_WINDOW_DAYS = 30


@dataclass(frozen=True)
class Policy:
    """The chance of each pair and what it was computed from, one entry per model of ``ids``."""

    ids: list[int]
    base_weights: list[float]
    weights: list[float]  # after the new-model boost
    boosted: list[bool]
    board_votes: list[int]  # votes on the latest overall board (0 when not on it)
    plain: Floats  # pair chances of the weighted draw (pick_pair's law)
    gain: Floats  # the uncertainty part's pair chances; all zero when it has nothing to go on
    uncertainty_share: float  # the share actually given to ``gain`` (0 when it is all zero)
    boost: float
    boost_until: int
    snapshot_id: int | None

    @property
    def pairs(self) -> Floats:
        """Symmetric, zero diagonal, sums to one, as leaderboard.sampling's matrices: the chance
        that i and j meet next is pairs[i, j] + pairs[j, i]."""
        share = self.uncertainty_share
        return np.asarray((1.0 - share) * self.plain + share * self.gain, dtype=np.float64)

    @property
    def appearance(self) -> Floats:
        """Each model's chance of being in the next battle (sums to two)."""
        return np.asarray(2.0 * self.pairs.sum(axis=1), dtype=np.float64)


def sequential_pair_probabilities(weights: list[float]) -> Floats:
    """Pair chances of pick_pair: the first model in proportion to its weight, the second in
    proportion to its weight among the rest (sides apart)."""
    w = np.asarray(weights, dtype=np.float64)
    total = w.sum()
    matrix = np.zeros((w.size, w.size))
    if total <= 0:
        return matrix
    first = w / total
    rest = total - w
    second = np.divide(
        w[None, :], rest[:, None], out=np.zeros_like(matrix), where=rest[:, None] > 0
    )
    ordered = first[:, None] * second
    np.fill_diagonal(ordered, 0.0)
    matrix = ordered + ordered.T
    return np.asarray(matrix / matrix.sum() if matrix.sum() > 0 else matrix, dtype=np.float64)


def current(*, models: list[ImageModel], weights: list[float]) -> Policy:
    """The policy for the next battle among ``models`` with base ``weights``."""
    snapshot = Snapshot.objects.latest_for("")
    rows = (
        {
            row.model_id: row
            for row in snapshot.rows.only("model_id", "votes", "rating", "lower", "upper")
        }
        if snapshot is not None
        else {}
    )
    votes = [rows[m.pk].votes if m.pk in rows else 0 for m in models]
    boost = float(settings.ARENA_NEW_MODEL_BOOST)
    boost_until = int(settings.ARENA_NEW_MODEL_VOTES)
    boosted_weights = sampling.boosted_weights(
        weights=weights, votes=votes, boost_until=boost_until, boost=boost
    )
    boosted = [
        bool(v < boost_until and w > 0 and boost > 1) for v, w in zip(votes, weights, strict=True)
    ]
    theta = np.full(len(models), np.nan)
    variance = np.full(len(models), np.nan)
    if snapshot is not None:
        # Half-widths back to standard errors: z of the board's own intervals (Bonferroni over
        # the bounded models for a family-wise board, as bounds.relative_half_widths).
        bounded = [r for r in rows.values() if r.rating is not None and not r.status]
        family = max(len(bounded), 1) if snapshot.simultaneous else 1
        z = float(ndtri(1.0 - (1.0 - snapshot.level) / (2.0 * family)))
        for i, model in enumerate(models):
            row = rows.get(model.pk)
            if row is None or row.rating is None or row.status:
                continue  # open intervals and the anchor: no finite variance to shrink
            theta[i] = (row.rating - 1000.0) / bounds.POINTS_PER_LOG
            variance[i] = ((row.upper - row.lower) / 2.0 / z / bounds.POINTS_PER_LOG) ** 2
    gain = sampling.neighbour_gain(
        weights=boosted_weights, log_strengths=theta, covariance=np.diag(variance)
    )
    share = float(settings.ARENA_UNCERTAINTY_SHARE) if gain.sum() > 0 else 0.0
    return Policy(
        ids=[m.pk for m in models],
        base_weights=[float(w) for w in weights],
        weights=[float(w) for w in boosted_weights],
        boosted=boosted,
        board_votes=[int(v) for v in votes],
        plain=sequential_pair_probabilities([float(w) for w in boosted_weights]),
        gain=gain,
        uncertainty_share=share,
        boost=boost,
        boost_until=boost_until,
        snapshot_id=snapshot.pk if snapshot is not None else None,
    )


def draw(policy: Policy, rng: random.Random) -> tuple[int, int] | None:
    """The uncertainty part's pair (sides in random order) with chance uncertainty_share,
    else None: the caller then draws from ``policy.weights`` with pick_pair."""
    if policy.uncertainty_share <= 0 or rng.random() >= policy.uncertainty_share:
        return None
    upper = np.triu(policy.gain, k=1)
    flat = upper.ravel()
    point = rng.random() * float(flat.sum())
    index = int(np.searchsorted(np.cumsum(flat), point, side="right"))
    index = min(index, flat.size - 1)
    while flat[index] <= 0:  # rounding at the very end of the cumulative sum
        index -= 1
    i, j = divmod(index, len(policy.ids))
    first, second = policy.ids[i], policy.ids[j]
    return (first, second) if rng.random() < 0.5 else (second, first)


@dataclass(frozen=True)
class ModelShare:
    key: str
    name: str
    base_weight: float
    weight: float
    boosted: bool
    board_votes: int
    chance_next: float  # chance of being in the next battle
    battles: int  # non-gold battles in the window
    share: float | None  # share of battle sides in the window


def published(*, models: list[ImageModel], weights: list[float]) -> dict[str, object]:
    """The policy in force and each model's actual share of battles over the last
    SHARE_WINDOW_DAYS days (gold battles, planted checks, left out), for the page and the API."""
    from arena.models import Battle

    policy = current(models=models, weights=weights)
    since = timezone.now() - timedelta(days=SHARE_WINDOW_DAYS)
    battles = Battle.objects.filter(created_at__gte=since, gold_side="")
    total = battles.count()
    left = dict(battles.values("model_left").annotate(n=Count("pk")).values_list("model_left", "n"))
    right = dict(
        battles.values("model_right").annotate(n=Count("pk")).values_list("model_right", "n")
    )
    appearance = policy.appearance
    rows = []
    for i, model in enumerate(models):
        count = left.get(model.pk, 0) + right.get(model.pk, 0)
        rows.append(
            asdict(
                ModelShare(
                    key=model.key,
                    name=model.display_name,
                    base_weight=policy.base_weights[i],
                    weight=policy.weights[i],
                    boosted=policy.boosted[i],
                    board_votes=policy.board_votes[i],
                    chance_next=float(appearance[i]),
                    battles=count,
                    share=count / (2 * total) if total else None,
                )
            )
        )
    return {
        "boost": policy.boost,
        "boost_until_votes": policy.boost_until,
        "uncertainty_share": float(settings.ARENA_UNCERTAINTY_SHARE),
        "uncertainty_share_in_force": policy.uncertainty_share,
        "board": policy.snapshot_id,
        "window_days": SHARE_WINDOW_DAYS,
        "battles": total,
        "models": rows,
    }
