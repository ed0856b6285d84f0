"""A self-hosted proof-of-work check (ALTCHA's protocol, the ``altcha`` library) that a new
session passes before its first battle.

The server hands out a salted SHA-256 puzzle signed with an HMAC of its own key; the browser
(``static/arena/challenge.js``) searches for the number that solves it and sends it back. A
person waits a fraction of a second once per session; a script that opens a new session for
each vote pays the hashing every time. A payload is accepted once: its signature is remembered
in the cache until it would have expired anyway.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from altcha import v1 as altcha
from django.conf import settings
from django.contrib.sessions.backends.base import SessionBase
from django.core.cache import cache

logger = logging.getLogger(__name__)

SESSION_KEY = "challenge_ok"


class ChallengeFailed(Exception):
    """No valid solution; ``code`` is stable for API clients, ``message`` is for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def required() -> bool:
    return settings.ARENA_CHALLENGE_MAX_NUMBER > 0


def _key() -> str:
    return f"altcha:{settings.SECRET_KEY}"


def new_challenge() -> dict[str, Any]:
    """A fresh signed puzzle, as the JSON the browser's solver reads."""
    expires = datetime.now(UTC) + timedelta(seconds=settings.ARENA_CHALLENGE_TTL_S)
    options = altcha.ChallengeOptions(
        algorithm="SHA-256",
        max_number=settings.ARENA_CHALLENGE_MAX_NUMBER,
        hmac_key=_key(),
        expires=expires,
    )
    challenge = altcha.create_challenge(options)
    return dict(challenge.to_dict())


def solve(challenge: dict[str, Any]) -> str:
    """The solution payload for a puzzle (what the browser sends), for tests and API clients."""
    found = altcha.solve_challenge(
        challenge=challenge["challenge"],
        salt=challenge["salt"],
        algorithm=challenge["algorithm"],
        max_number=challenge["maxNumber"],
    )
    if found is None:
        raise ChallengeFailed("bad_challenge", "The challenge has no solution.")
    payload = altcha.Payload(
        algorithm=challenge["algorithm"],
        challenge=challenge["challenge"],
        number=found.number,
        salt=challenge["salt"],
        signature=challenge["signature"],
    )
    return str(payload.to_base64())


def verify(payload: object) -> None:
    """Accept a solution payload once; raise ChallengeFailed if it is missing, malformed,
    forged, expired or already used."""
    if not isinstance(payload, str) or not payload.strip():
        raise ChallengeFailed(
            "challenge_required",
            "Your browser must finish a short automatic check before the first battle; "
            "it needs JavaScript. Reload the page and try again.",
        )
    if len(payload) > 4000:
        raise ChallengeFailed("bad_challenge", "The check's answer is malformed.")
    try:
        ok, error = altcha.verify_solution(payload, _key(), check_expires=True)
    except Exception:  # noqa: BLE001 - any malformed payload is the visitor's error
        ok, error = False, "malformed"
    if not ok:
        expired = error is not None and "expired" in error
        raise ChallengeFailed(
            "bad_challenge",
            "The check expired; reload the page and try again."
            if expired
            else "The check's answer is not valid; reload the page and try again.",
        )
    signature = str(altcha.Payload.from_base64(payload).signature)
    try:
        fresh = cache.add(
            f"altcha-used:{signature}", 1, timeout=settings.ARENA_CHALLENGE_TTL_S + 60
        )
    except Exception as exc:  # noqa: BLE001 - fail open, like the rate limits
        logger.warning("challenge replay check is off: the cache cannot be reached (%s)", exc)
        fresh = True
    if not fresh:
        raise ChallengeFailed(
            "bad_challenge", "This check was already used; reload the page and try again."
        )


def passed(session: SessionBase) -> bool:
    """Whether this session has solved a challenge (or none is required)."""
    return not required() or bool(session.get(SESSION_KEY))


def require(*, session: SessionBase, payload: object) -> bool:
    """Pass when the session already solved a challenge, or when ``payload`` solves one
    (remembered in the session). Returns True when this call verified a new solution."""
    if passed(session):
        return False
    verify(payload)
    session[SESSION_KEY] = True
    return True
