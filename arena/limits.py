"""Request limits per browser session and per client address, kept in the cache.

Fixed windows: simple and cheap, and with Redis as the cache they hold across web processes.
"""

from __future__ import annotations

import time

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest


class RateLimited(Exception):
    """Too many requests; ``retry_after`` says in how many seconds to try again."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"Too many requests; try again in {retry_after} s.")
        self.retry_after = retry_after
        self.message = (
            f"You are making images faster than this arena allows. "
            f"Try again in {retry_after} seconds."
        )


def _parse(rule: str) -> tuple[int, int]:
    count, _, window = rule.partition("/")
    return int(count), int(window)


def client_address(request: HttpRequest) -> str:
    """The client's address: REMOTE_ADDR, which the reverse proxy must set to the real one."""
    return str(request.META.get("REMOTE_ADDR", "unknown"))


def hit(*, scope: str, session: str, address: str) -> None:
    """Count one generation request; raise RateLimited when a limit is passed."""
    for name, who, rule in (
        ("session", session, settings.ARENA_RATE_LIMIT_SESSION),
        ("address", address, settings.ARENA_RATE_LIMIT_ADDRESS),
    ):
        if not rule:
            continue
        limit, window = _parse(rule)
        now = int(time.time())
        start = now - now % window
        key = f"rate:{scope}:{name}:{who}:{start}"
        cache.add(key, 0, timeout=window + 1)
        try:
            used = cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.add(key, 1, timeout=window + 1)
            used = 1
        if used > limit:
            raise RateLimited(retry_after=start + window - now)
