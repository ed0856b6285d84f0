"""Voters: who a vote comes from, and whether it may count.

A ``Voter`` ties a hashed session to the hashed address it came from and, when signed in, an
account. ``standing`` decides at the moment of the vote whether it counts; the periodic
integrity task (``arena.integrity``) revisits that later with more evidence.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from django.conf import settings
from django.core.cache import cache
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
    *, voter: Voter | None, address: str, ms_to_vote: int, gold: bool = False
) -> Vote.Standing:
    """Whether a new vote counts, and if not why; takes the daily caps' counts when it does.

    Gold battles and flagged voters are decided first, so they spend no cap.
    """
    if gold:
        return Vote.Standing.GOLD
    if voter is not None and voter.flagged:
        return Vote.Standing.VOTER_FLAGGED
    if ms_to_vote < settings.ARENA_MIN_MS_TO_VOTE:
        return Vote.Standing.TOO_FAST
    return _over_daily_cap(voter=voter, address=address)


def _over_daily_cap(*, voter: Voter | None, address: str) -> Vote.Standing:
    """Count the vote against today's caps (UTC) in the cache; the first cap passed, if any.

    The counts live in the cache because they are only a brake: were they lost, a cap would
    start again from zero, and the integrity task still sees every vote in the database.
    """
    active = _caps(voter=voter, address=address)
    if not active:
        return Vote.Standing.COUNTED
    try:
        used = _increment([key for _, key, _ in active])
    except Exception as error:  # noqa: BLE001 - a cache outage must not refuse votes
        logger.warning("daily vote caps are off: the cache cannot be reached (%s)", error)
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
        _increment(keys, by=-1)
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


def _increment(keys: list[str], *, by: int = 1) -> list[int]:
    """Add ``by`` to each counter (kept two days), in one round trip on Redis."""
    client = limits.redis_client()
    if client is None:
        counts = []
        for key in keys:
            cache.add(key, 0, timeout=2 * 86400)
            counts.append(int(cache.incr(key, by)))
        return counts
    script = getattr(client, "_arena_caps", None)
    if script is None:
        script = client.register_script(_INCREMENT)
        setattr(client, "_arena_caps", script)  # noqa: B010
    made = [cache.make_and_validate_key(key) for key in keys]
    return [int(count) for count in script(keys=made, args=[by, _KEEP_S])]


_KEEP_S = 2 * 86400
# INCRBY each key, and give a new counter its expiry: one EVALSHA instead of a pipeline of two
# commands per key (redis-py packs and parses each command of a pipeline in Python).
_INCREMENT = """
local counts = {}
for i, key in ipairs(KEYS) do
    counts[i] = redis.call('INCRBY', key, ARGV[1])
    if redis.call('TTL', key) < 0 then
        redis.call('EXPIRE', key, ARGV[2])
    end
end
return counts
"""
