"""Voters: who a vote comes from, and whether it may count.

A ``Voter`` ties a hashed session to the hashed address it came from and, when signed in, an
account. ``standing`` decides at the moment of the vote whether it counts; the periodic
integrity task (``arena.integrity``) revisits that later with more evidence.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from django.conf import settings
from django.utils import timezone

from arena import integrity, limits
from arena.models import Vote, Voter

logger = logging.getLogger(__name__)


def voter_for(
    *, session: str, address: str, user_id: int | None, known: Voter | None = None
) -> Voter:
    """The voter of this session, created on first use (one query when it exists; none when
    the caller read it already, as ``known``)."""
    # The fields a vote reads (standing, caps, the vote's link); others load on first use.
    voter = (
        known or Voter.objects.filter(session=session).only("session", "user", "flagged").first()
    )
    if voter is None:
        flagged = integrity.address_flagged(address)
        voter, _ = Voter.objects.get_or_create(
            session=session,
            defaults={
                "address": address,
                "user_id": user_id,
                "flagged": flagged,
                "flagged_at": timezone.now() if flagged else None,
                "evidence": {"address_flagged": True} if flagged else {},
            },
        )
    if user_id is not None and voter.user_id is None:
        # Signing in attaches the account to the session's voter, once.
        Voter.objects.filter(pk=voter.pk, user=None).update(user_id=user_id)
        voter.user_id = user_id
    return voter


def standing(
    *,
    voter: Voter | None,
    address: str,
    ms_to_vote: int,
    gold: bool = False,
    take: Take | None = None,
) -> Vote.Standing:
    """Whether a new vote counts, and if not why; takes the daily caps' counts when it does.

    Gold battles and flagged voters are decided first, so they spend no cap. ``take`` is the
    request limit's call (limits.hit for this visitor), which adds one to the caps it is given
    in the same round trip; it is called exactly once, with no caps when they do not apply.
    """
    take = take or _count
    decided = None
    if gold:
        decided = Vote.Standing.GOLD
    elif voter is not None and voter.flagged:
        decided = Vote.Standing.VOTER_FLAGGED
    elif ms_to_vote < settings.ARENA_MIN_MS_TO_VOTE:
        decided = Vote.Standing.TOO_FAST
    if decided is not None:
        take([])
        return decided
    return _over_daily_cap(voter=voter, address=address, take=take)


# The request limit's call: adds one to each counter it is given when the request may go on
# (raises limits.RateLimited when not); the counters' new values, or [] when the cache is down.
Take = Callable[[list[str]], list[int]]


def _count(keys: list[str]) -> list[int]:
    """The caps' counters without a request limit (a vote cast in code)."""
    if not keys:
        return []
    try:
        return limits.count(keys)
    except Exception as error:  # noqa: BLE001 - a cache outage must not refuse votes
        logger.warning("daily vote caps are off: the cache cannot be reached (%s)", error)
        return []


def _over_daily_cap(*, voter: Voter | None, address: str, take: Take) -> Vote.Standing:
    """Count the vote against today's caps (UTC) in the cache; the first cap passed, if any.

    The counts live in the cache because they are only a brake: were they lost, a cap would
    start again from zero, and the integrity task still sees every vote in the database.
    """
    active = _caps(voter=voter, address=address)
    used = take([key for _, key, _ in active])
    if len(used) != len(active):  # the cache could not be reached: the caps are off
        return Vote.Standing.COUNTED
    for (reason, _, cap), count in zip(active, used, strict=True):
        if count > cap:
            return reason
    return Vote.Standing.COUNTED


def give_back(*, voter: Voter | None, address: str, standing: Vote.Standing) -> None:
    """Undo what ``standing`` took from today's caps, for a vote that was not stored after all
    (another vote claimed its battle first)."""
    if standing in (Vote.Standing.GOLD, Vote.Standing.VOTER_FLAGGED, Vote.Standing.TOO_FAST):
        return  # decided before the caps were counted
    keys = [key for _, key, _ in _caps(voter=voter, address=address)]
    if not keys:
        return
    try:
        limits.count(keys, by=-1)
    except Exception as error:  # noqa: BLE001 - a brake; the integrity task sees every vote
        logger.warning("daily vote caps: could not give back one vote (%s)", error)


def _caps(*, voter: Voter | None, address: str) -> list[tuple[Vote.Standing, str, int]]:
    """Today's (UTC) caps that apply to this vote: (standing when passed, counter key, cap)."""
    day = datetime.now(UTC).strftime("%Y%m%d")
    caps = [
        (Vote.Standing.OVER_CAP_ADDRESS, address, settings.ARENA_DAILY_CAP_ADDRESS),
        (
            Vote.Standing.OVER_CAP_VOTER,
            voter.session if voter else "",
            settings.ARENA_DAILY_CAP_VOTER,
        ),
        (
            Vote.Standing.OVER_CAP_ACCOUNT,
            str(voter.user_id) if voter and voter.user_id else "",
            settings.ARENA_DAILY_CAP_ACCOUNT,
        ),
    ]
    return [
        (reason, f"daily-cap:{reason}:{who}:{day}", cap) for reason, who, cap in caps if who and cap
    ]
