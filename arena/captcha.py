"""Optional third-party check: Cloudflare Turnstile or hCaptcha instead of the proof of work.

With ``ARENA_CAPTCHA`` set (``turnstile`` or ``hcaptcha``) and its keys, the prompt form shows
the provider's widget to a session that has not passed it, and the first battle's request must
carry the widget's token, which the server checks with the provider. If the provider cannot be
reached the check lets the request through and logs a warning, like the rate limits.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from django.conf import settings
from django.contrib.sessions.backends.base import SessionBase
from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from arena.challenge import ChallengeFailed

logger = logging.getLogger(__name__)

SESSION_KEY = "captcha_ok"
PROVIDERS = {
    "turnstile": {
        "field": "cf-turnstile-response",
        "verify": "https://challenges.cloudflare.com/turnstile/v0/siteverify",
        "script": "https://challenges.cloudflare.com/turnstile/v0/api.js",
        "widget": "cf-turnstile",
    },
    "hcaptcha": {
        "field": "h-captcha-response",
        "verify": "https://api.hcaptcha.com/siteverify",
        "script": "https://js.hcaptcha.com/1/api.js",
        "widget": "h-captcha",
    },
}


def enabled() -> bool:
    return bool(settings.ARENA_CAPTCHA)


def field_name() -> str:
    return PROVIDERS[settings.ARENA_CAPTCHA]["field"]


def verify(*, token: object, address: str) -> None:
    """Ask the provider whether the widget's token is good; raise ChallengeFailed if not."""
    if not isinstance(token, str) or not token or len(token) > 4096:
        raise ChallengeFailed(
            "captcha_required",
            "Please complete the check under the prompt box (it needs JavaScript).",
        )
    provider = PROVIDERS[settings.ARENA_CAPTCHA]
    body = urllib.parse.urlencode(
        {"secret": settings.ARENA_CAPTCHA_SECRET, "response": token, "remoteip": address}
    ).encode()
    url = settings.ARENA_CAPTCHA_VERIFY_URL or provider["verify"]
    try:
        request = urllib.request.Request(url, data=body, method="POST")  # noqa: S310
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            answer: Any = json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError) as error:
        logger.warning("captcha check is off: %s cannot be reached (%s)", url, error)
        return
    if not isinstance(answer, dict) or answer.get("success") is not True:
        raise ChallengeFailed("bad_captcha", "The check did not pass; please try it again.")


def require(*, session: SessionBase, token: object, address: str) -> None:
    """Pass a session that passed once; else verify the token and remember the pass."""
    if session.get(SESSION_KEY):
        return
    verify(token=token, address=address)
    session[SESSION_KEY] = True


def context(request: HttpRequest) -> dict[str, Any]:
    """Template context: the widget to show when a provider is configured, else whether the
    proof-of-work check is still due for this session."""
    from arena import challenge

    if not enabled():
        session = getattr(request, "session", None)
        return {
            # Read when a template asks (the prompt form): it loads the session, which the
            # battle panel's polls need not.
            "challenge_due": SimpleLazyObject(
                lambda: session is not None and not challenge.passed(session)
            ),
            "accounts_enabled": settings.ARENA_ACCOUNTS,
        }
    provider = PROVIDERS[settings.ARENA_CAPTCHA]
    return {
        "captcha": {
            "site_key": settings.ARENA_CAPTCHA_SITE_KEY,
            "script": provider["script"],
            "widget": provider["widget"],
            "passed": bool(request.session.get(SESSION_KEY))
            if hasattr(request, "session")
            else False,
        }
    }
