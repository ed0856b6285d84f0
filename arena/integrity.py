"""Anomaly detection on votes: score voters and addresses, flag them with the evidence, and
stop counting their votes.

Signals, over the last ``ARENA_INTEGRITY_WINDOW_H`` hours, per voter (all of them) and per
client address (preference and one-vote sessions):

- **preference**: wins for one model that are improbable under the current board. For each
  model, the decisive votes a group cast on battles with it are tested one-sided against the
  board's win probabilities. The count of wins follows a Poisson-binomial law; a binomial law
  with the same mean has at least its variance, so the binomial tail is a conservative p-value.
  The test runs at ``ARENA_INTEGRITY_ALPHA`` divided by the number of models tested (Bonferroni),
  so an honest group is flagged by it with probability at most ``ARENA_INTEGRITY_ALPHA``.
- **one-vote sessions**: many sessions from one address that each cast a single vote.
- **burst**: more than ``ARENA_INTEGRITY_BURST`` votes within one minute.
- **fast**: a median time to vote under ``ARENA_INTEGRITY_FAST_MS``.
- **attention**: failed more than half of at least two attention checks (gold battles).

A group is flagged when the preference test fires, or when two or more of the other signals
fire together (each alone has innocent explanations: a campus behind one address, a quick
reader). Flagging marks its voters, records the evidence on each, and moves their counted votes
in the window to the ``voter_flagged`` standing; the pair counts are rebuilt and the boards
refreshed after the commit. An admin reviews flagged voters and can unflag them.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from statistics import median
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from arena.models import Vote, Voter
from leaderboard.models import Snapshot

logger = logging.getLogger(__name__)

# Decisive votes with a model before a group's preference for it is tested at all.
MIN_PREFERENCE_VOTES = 10


@dataclass
class Scan:
    """What one scan found and did."""

    voters_scanned: int = 0
    addresses_scanned: int = 0
    flagged_voters: list[int] = field(default_factory=list)
    flagged_addresses: list[str] = field(default_factory=list)
    votes_excluded: int = 0


@dataclass(frozen=True)
class _Vote:
    pk: int
    voter: int | None
    address: str
    ms: int
    at: float
    choice: str
    left: int
    right: int


def win_probability(rating_a: float, rating_b: float) -> float:
    """The chance that a beats b on the board's display scale (400 points = 10:1)."""
    return 1.0 / (1.0 + 10.0 ** ((rating_b - rating_a) / 400.0))


def preference_evidence(
    votes: Iterable[_Vote], ratings: dict[int, float], *, alpha: float
) -> dict[str, Any] | None:
    """The strongest improbable preference for one model among these votes, or None."""
    by_model: dict[int, list[tuple[bool, float]]] = defaultdict(list)
    for vote in votes:
        if vote.choice not in ("left", "right"):
            continue
        if vote.left not in ratings or vote.right not in ratings:
            continue
        winner = vote.left if vote.choice == "left" else vote.right
        for model, other in ((vote.left, vote.right), (vote.right, vote.left)):
            p = win_probability(ratings[model], ratings[other])
            by_model[model].append((winner == model, p))
    tested = {
        m: outcomes for m, outcomes in by_model.items() if len(outcomes) >= MIN_PREFERENCE_VOTES
    }
    if not tested:
        return None
    from scipy.stats import binomtest  # here: scipy.stats is 1.7 s of a web server's start

    threshold = alpha / len(tested)
    worst: dict[str, Any] | None = None
    for model, outcomes in tested.items():
        n = len(outcomes)
        wins = sum(won for won, _ in outcomes)
        expected = sum(p for _, p in outcomes) / n
        p_value = float(binomtest(wins, n, expected, alternative="greater").pvalue)
        if p_value < threshold and (worst is None or p_value < worst["p_value"]):
            worst = {
                "model_id": model,
                "wins": wins,
                "decisive_votes": n,
                "expected_win_rate": round(expected, 4),
                "p_value": p_value,
                "threshold": threshold,
            }
    return worst


def _max_per_minute(times: list[float]) -> int:
    times = sorted(times)
    best, start = 0, 0
    for end, at in enumerate(times):
        while at - times[start] > 60:
            start += 1
        best = max(best, end - start + 1)
    return best


def _signals(votes: list[_Vote], ratings: dict[int, float]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    preference = preference_evidence(votes, ratings, alpha=settings.ARENA_INTEGRITY_ALPHA)
    if preference:
        found["preference"] = preference
    burst = _max_per_minute([v.at for v in votes])
    if burst > settings.ARENA_INTEGRITY_BURST:
        found["burst"] = {"votes_in_a_minute": burst}
    if len(votes) >= MIN_PREFERENCE_VOTES:
        typical = median(v.ms for v in votes)
        if typical < settings.ARENA_INTEGRITY_FAST_MS:
            found["fast"] = {"median_ms_to_vote": typical}
    return found


def _flags(found: dict[str, Any]) -> bool:
    return "preference" in found or len(found) >= 2


def _ratings() -> dict[int, float]:
    board = Snapshot.objects.latest_for("")
    if board is None:
        return {}
    # Models outside the board's bounded core have no rating; their votes are not tested.
    return {m: r for m, r in board.rows.values_list("model_id", "rating") if r is not None}


def scan(*, now: Any = None) -> Scan:
    """Score every voter and address with votes in the window; flag those whose signals say
    so and stop counting their votes."""
    now = now or timezone.now()
    since = now - timedelta(hours=settings.ARENA_INTEGRITY_WINDOW_H)
    rows = Vote.objects.filter(created_at__gte=since, battle__anonymous=True).values_list(
        "pk",
        "voter_record_id",
        "address",
        "ms_to_vote",
        "created_at",
        "choice",
        "battle__model_left_id",
        "battle__model_right_id",
    )
    votes = [
        _Vote(pk, voter, address, ms or 0, at.timestamp(), choice, left, right)
        for pk, voter, address, ms, at, choice, left, right in rows.iterator(chunk_size=5000)
    ]
    ratings = _ratings()
    by_voter: dict[int, list[_Vote]] = defaultdict(list)
    by_address: dict[str, list[_Vote]] = defaultdict(list)
    for vote in votes:
        if vote.voter is not None:
            by_voter[vote.voter].append(vote)
        if vote.address:
            by_address[vote.address].append(vote)
    result = Scan(voters_scanned=len(by_voter), addresses_scanned=len(by_address))
    evidence: dict[int, dict[str, Any]] = {}

    attention = dict(
        Voter.objects.filter(pk__in=list(by_voter), gold_failed__gte=2).values_list(
            "pk", "gold_failed"
        )
    )
    passed = dict(Voter.objects.filter(pk__in=list(attention)).values_list("pk", "gold_passed"))
    for voter, own in by_voter.items():
        found = _signals(own, ratings)
        failed = attention.get(voter, 0)
        if failed and failed > passed.get(voter, 0):
            found["attention"] = {"failed": failed, "passed": passed.get(voter, 0)}
        if _flags(found):
            evidence[voter] = {"voter": found}
            result.flagged_voters.append(voter)

    for address, own in by_address.items():
        # Per address, only the signals that many honest people behind one address (a campus,
        # a carrier NAT) do not trip together: their bursts and speed add up, their
        # preferences do not.
        found = {}
        preference = preference_evidence(own, ratings, alpha=settings.ARENA_INTEGRITY_ALPHA)
        if preference:
            found["preference"] = preference
        sessions: dict[int | None, int] = defaultdict(int)
        for vote in own:
            sessions[vote.voter] += 1
        single = sum(1 for n in sessions.values() if n == 1)
        if single >= settings.ARENA_INTEGRITY_ONE_VOTE_SESSIONS and single >= 0.8 * len(sessions):
            found["one_vote_sessions"] = {"sessions": len(sessions), "with_one_vote": single}
        if _flags(found):
            result.flagged_addresses.append(address)
            for session_voter in sessions:
                if session_voter is not None:
                    evidence.setdefault(session_voter, {})["address"] = found

    if evidence:
        result.votes_excluded = _flag(
            evidence=evidence, addresses=result.flagged_addresses, since=since
        )
        for voter in evidence:
            if voter not in result.flagged_voters:
                result.flagged_voters.append(voter)
    logger.info(
        "integrity scan: %d voters, %d addresses; flagged %d voters, %d addresses; "
        "%d votes no longer count",
        result.voters_scanned,
        result.addresses_scanned,
        len(result.flagged_voters),
        len(result.flagged_addresses),
        result.votes_excluded,
    )
    return result


def _flag(*, evidence: dict[int, dict[str, Any]], addresses: list[str], since: Any) -> int:
    """Mark the voters flagged with their evidence and stop counting their window's votes."""
    from arena.services import _recount_on_commit

    now = timezone.now()
    with transaction.atomic():
        for voter, found in evidence.items():
            Voter.objects.filter(pk=voter).update(flagged=True, flagged_at=now, evidence=found)
        summary = "flagged by the integrity scan: " + ", ".join(
            sorted(
                {
                    signal
                    for found in evidence.values()
                    for group in found.values()
                    for signal in group
                }
            )
        )
        votes = Vote.objects.filter(created_at__gte=since, excluded=False).filter(
            voter_record__in=list(evidence)
        ) | Vote.objects.filter(created_at__gte=since, excluded=False, address__in=addresses)
        changed = Vote.objects.filter(pk__in=votes.values("pk")).update(
            excluded=True,
            standing=Vote.Standing.VOTER_FLAGGED,
            excluded_reason=summary[:500],
            excluded_by="integrity scan",
            excluded_at=now,
        )
        if changed:
            _recount_on_commit()
    return changed


def address_flagged(address: str) -> bool:
    """Whether a voter from this address was flagged within the window: a new session from
    it starts flagged, so opening sessions does not wash a flag off."""
    since = timezone.now() - timedelta(hours=settings.ARENA_INTEGRITY_WINDOW_H)
    return Voter.objects.filter(address=address, flagged=True, flagged_at__gte=since).exists()
