"""Request limits per browser session, client address and signed-in account, kept in the cache.

Each rule is a token bucket (the generic cell rate algorithm: one stored "theoretical arrival
time" per bucket), so a burst across a window boundary gets no second budget. With Redis as the
cache, one Lua script checks every bucket a request touches and takes a token from each only
when all allow it, atomically for all web processes. Any other cache (the laptop's local
memory) runs the same algorithm in the process.

The limits fail open: when the cache cannot be reached, requests pass and a warning is logged,
because refusing every visitor would turn a Redis outage into a site outage.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import cache, caches
from django.core.cache.backends.redis import RedisCache
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.shortcuts import render
from django.utils.html import format_html

logger = logging.getLogger(__name__)

# The setting that holds each scope's rules, and what a refused visitor reads.
SCOPES = {
    "sessions": (
        "ARENA_LIMIT_SESSIONS",
        "Too many new sessions have come from your network. Try again in {s}.",
    ),
    "battles": (
        "ARENA_LIMIT_BATTLES",
        "You are starting battles faster than this arena allows. Try again in {s}.",
    ),
    "votes": (
        "ARENA_LIMIT_VOTES",
        "You are voting faster than this arena allows. Try again in {s}.",
    ),
    "chat": (
        "ARENA_LIMIT_CHAT",
        "You are making images faster than this arena allows. Try again in {s}.",
    ),
}

# KEYS: the buckets, then counters. ARGV: how many KEYS are buckets, per bucket its emission
# interval and period in microseconds, then the counters' lifetime in seconds. Returns {0, the
# counters' new values} (a token taken from every bucket, one added to every counter) or {the
# microseconds to wait} (nothing taken, nothing counted). The clock is the Redis server's, so
# web hosts with skewed clocks share one timeline.
_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local buckets = tonumber(ARGV[1])
local wait = 0
local tats = {}
for i = 1, buckets do
  local interval = tonumber(ARGV[2 * i])
  local period = tonumber(ARGV[2 * i + 1])
  local tat = tonumber(redis.call('GET', KEYS[i]) or now)
  if tat < now then tat = now end
  tats[i] = tat + interval
  local allow_at = tats[i] - period
  if allow_at > now and allow_at - now > wait then wait = allow_at - now end
end
if wait > 0 then return {wait} end
for i = 1, buckets do
  redis.call('SET', KEYS[i], tats[i], 'PX', math.ceil((tats[i] - now) / 1000) + 1)
end
local out = {0}
for i = buckets + 1, #KEYS do
  out[#out + 1] = redis.call('INCRBY', KEYS[i], 1)
  if redis.call('TTL', KEYS[i]) < 0 then redis.call('EXPIRE', KEYS[i], ARGV[2 * buckets + 2]) end
end
return out
"""
# Counters (the daily vote caps) live two days.
COUNTER_KEEP_S = 2 * 86400

_WARN_EVERY_S = 30.0
_state = {"warned_at": -math.inf}
_local_lock = threading.Lock()


class RateLimited(Exception):
    """Too many requests; ``retry_after`` says in how many seconds to try again."""

    def __init__(self, retry_after: int, scope: str = "chat") -> None:
        super().__init__(f"Too many requests; try again in {retry_after} s.")
        self.retry_after = retry_after
        self.scope = scope
        wait = "1 second" if retry_after == 1 else f"{retry_after} seconds"
        self.message = SCOPES.get(scope, SCOPES["chat"])[1].format(s=wait)


@dataclass(frozen=True)
class Rule:
    who: str
    count: int
    seconds: int


def rules(scope: str) -> list[Rule]:
    """The scope's rules, from its setting (validated at start in settings.py)."""
    raw = getattr(settings, SCOPES[scope][0])
    parsed = []
    for item in filter(None, (part.strip() for part in raw.split(","))):
        who, _, rate = item.partition("=")
        count, _, seconds = rate.partition("/")
        parsed.append(Rule(who=who, count=int(count), seconds=int(seconds)))
    return parsed


def _trusted(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(
        ip in ipaddress.ip_network(net, strict=False) for net in settings.ARENA_TRUSTED_PROXIES
    )


def client_address(request: HttpRequest) -> str:
    """The client's address: REMOTE_ADDR, or behind trusted proxies the nearest address in
    X-Forwarded-For that is not one of them.

    The chain is read from the right, the end our own proxies wrote; anything left of the
    first untrusted hop was written by the client and may be forged.
    """
    remote = str(request.META.get("REMOTE_ADDR", "")) or "unknown"
    if not settings.ARENA_TRUSTED_PROXIES or not _trusted(remote):
        return remote
    forwarded = str(request.META.get("HTTP_X_FORWARDED_FOR", ""))
    hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
    client = remote
    for hop in reversed(hops):
        try:
            client = str(ipaddress.ip_address(hop))
        except ValueError:
            # Garbage where an address should be: the hop that wrote it is not ours to trust.
            return client
        if not _trusted(client):
            return client
    return client


def login_address(request: HttpRequest) -> str | None:
    """The client address for django-axes' lockout; None where there is no request address
    (a login made in code)."""
    address = client_address(request)
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return None


def _key(scope: str, rule: Rule, subject: str) -> str:
    digest = hashlib.sha256(subject.encode()).hexdigest()[:32]
    return f"limit:{scope}:{rule.who}:{rule.count}/{rule.seconds}:{digest}"


def hit(
    *,
    scope: str,
    session: str | None = None,
    address: str | None = None,
    account: str | None = None,
    counters: Sequence[str] = (),
) -> list[int]:
    """Take one token from each of the scope's buckets for these subjects; raise RateLimited
    (taking none) when any bucket is empty. Subjects that are None are not limited.

    When the tokens are taken, also add one to each of ``counters`` (cache keys, kept
    COUNTER_KEEP_S; the daily vote caps) in the same round trip, and return their new values;
    an empty list when the cache cannot be reached (both fail open)."""
    subjects = {"session": session, "address": address, "account": account}
    buckets = [
        (_key(scope, rule, subject), rule)
        for rule in rules(scope)
        if (subject := subjects[rule.who]) is not None
    ]
    if not buckets and not counters:
        return []
    try:
        wait_us, counts = _take(buckets, list(counters))
    except Exception as error:  # noqa: BLE001 - any cache failure must let the request pass
        now = time.monotonic()
        if now - _state["warned_at"] >= _WARN_EVERY_S:
            _state["warned_at"] = now
            logger.warning("rate limits are off: the cache cannot be reached (%s)", error)
        return []
    if wait_us > 0:
        raise RateLimited(retry_after=max(1, math.ceil(wait_us / 1_000_000)), scope=scope)
    return counts


def _take(buckets: list[tuple[str, Rule]], counters: list[str]) -> tuple[int, list[int]]:
    """Microseconds until every bucket has a token (0: the tokens were taken, and then the
    counters' new values)."""
    arguments: list[int] = [len(buckets)]
    for _, rule in buckets:
        period = rule.seconds * 1_000_000
        arguments += [period // rule.count, period]
    arguments.append(COUNTER_KEEP_S)
    client = redis_client()
    if client is not None:
        keys = [cache.make_and_validate_key(key) for key, _ in buckets]
        keys += [cache.make_and_validate_key(key) for key in counters]
        # One round trip: EVALSHA, with the script's text sent only when Redis lacks it.
        wait, *counts = _gcra_script(client)(keys=keys, args=arguments)
        return int(wait), [int(count) for count in counts]
    wait = _take_locally(buckets, arguments[1:-1])
    return wait, ([] if wait else count(counters))


def count(keys: Sequence[str], *, by: int = 1) -> list[int]:
    """Add ``by`` to each counter (kept COUNTER_KEEP_S); their new values."""
    client = redis_client()
    if client is None:
        counts = []
        for key in keys:
            cache.add(key, 0, timeout=COUNTER_KEEP_S)
            counts.append(int(cache.incr(key, by)))
        return counts
    pipe = client.pipeline(transaction=False)
    for key in keys:
        made = cache.make_and_validate_key(key)
        pipe.incrby(made, by)
        pipe.expire(made, COUNTER_KEEP_S, nx=True)
    results = pipe.execute()
    return [int(results[2 * i]) for i in range(len(keys))]


def redis_client() -> Any:
    """The Redis connection behind Django's cache, or None for any other cache backend.

    Made once per cache object (Django keeps one per thread) over the cache's own connection
    pool, not once per request."""
    backend = caches["default"]
    if not isinstance(backend, RedisCache):
        return None
    holder = backend._cache
    client = getattr(holder, "_arena_client", None)
    if client is None:
        client = holder.get_client(write=True)
        setattr(holder, "_arena_client", client)  # noqa: B010
    return client


def _gcra_script(client: Any) -> Any:
    script = getattr(client, "_arena_gcra", None)
    if script is None:
        script = client.register_script(_GCRA)
        setattr(client, "_arena_gcra", script)  # noqa: B010
    return script


def _take_locally(buckets: list[tuple[str, Rule]], arguments: list[int]) -> int:
    """The same algorithm through the plain cache API: exact within one process only."""
    with _local_lock:
        now = int(time.time() * 1_000_000)
        stored = cache.get_many([key for key, _ in buckets])
        tats = []
        wait = 0
        for i, (key, _) in enumerate(buckets):
            interval, period = arguments[2 * i], arguments[2 * i + 1]
            tat = max(int(stored.get(key, now)), now) + interval
            tats.append(tat)
            wait = max(wait, tat - period - now)
        if wait > 0:
            return wait
        for (key, _), tat in zip(buckets, tats, strict=True):
            cache.set(key, tat, timeout=math.ceil((tat - now) / 1_000_000) + 1)
        return 0


class RateLimitMiddleware:
    """Answer a RateLimited that a view did not handle (a new session over its address's
    limit) with 429, Retry-After and the message: JSON for the API, a fragment for htmx, a
    page otherwise."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, RateLimited):
            return None
        response: HttpResponse
        if request.path.startswith("/api/"):
            error = {"code": "rate_limited", "message": exception.message}
            response = JsonResponse({"error": error}, status=429)
        elif request.headers.get("HX-Request") == "true":
            response = HttpResponse(
                format_html('<p class="error" role="alert">{}</p>', exception.message), status=429
            )
        else:
            response = render(
                request, "arena/error.html", {"message": exception.message}, status=429
            )
        response["Retry-After"] = str(exception.retry_after)
        return response
