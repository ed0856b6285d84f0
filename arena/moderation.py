"""Prompt moderation: a blocklist the admin edits, plus an optional classifier hook.

A refused prompt gets one message that says nothing about the models or the rule that caught
it, and the refusal is counted per day and reason (``PromptRefusal``). The classifier is any
callable named by ``ARENA_PROMPT_CLASSIFIER`` (a dotted path) that takes the prompt and returns
a reason to refuse it, or None.
"""

from __future__ import annotations

import contextlib
import re
import unicodedata
from collections.abc import Callable
from functools import cache as memoise
from pathlib import Path

from django.conf import settings
from django.core.cache import cache
from django.db.models import F
from django.utils import timezone
from django.utils.module_loading import import_string

from arena.models import BlockedTerm, PromptRefusal
from arena.services import PromptError

REFUSED_MESSAGE = "This prompt cannot be used in the arena. Please try a different one."
_CACHE_KEY = "moderation:blocklist"
_CACHE_S = 60


class PromptRefused(PromptError):
    """Moderation refused the prompt; ``reason`` is for counting, never for the visitor."""

    def __init__(self, reason: str) -> None:
        super().__init__(REFUSED_MESSAGE)
        self.reason = reason


def _normalise(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def _terms() -> list[tuple[str, str]]:
    try:
        terms = cache.get(_CACHE_KEY)
    except Exception:  # noqa: BLE001 - without the cache, read the table
        terms = None
    if terms is None:
        rows = BlockedTerm.objects.filter(active=True).values_list("term", "reason")
        terms = [(_normalise(term), reason) for term, reason in rows]
        # Without the cache, the next call reads the table again.
        with contextlib.suppress(Exception):
            cache.set(_CACHE_KEY, terms, timeout=_CACHE_S)
    return list(terms)


def forget_terms() -> None:
    """Drop the cached list, so an admin's edit applies at once (on this cache)."""
    with contextlib.suppress(Exception):  # it expires within a minute anyway
        cache.delete(_CACHE_KEY)


@memoise
def _classifier(path: str) -> Callable[[str], str | None]:
    return import_string(path)


def reason_to_refuse(text: str) -> str | None:
    """Why the prompt is refused, or None when it may be used."""
    normal = _normalise(text)
    for term, reason in _terms():
        if term and re.search(rf"(?<!\w){re.escape(term)}(?!\w)", normal):
            return reason
    if settings.ARENA_PROMPT_CLASSIFIER:
        verdict = _classifier(settings.ARENA_PROMPT_CLASSIFIER)(text)
        if verdict:
            return str(verdict)[:40]
    return None


def check_prompt(text: str) -> None:
    """Raise PromptRefused, counting the refusal by reason, when moderation refuses ``text``."""
    reason = reason_to_refuse(text)
    if reason is None:
        return
    day = timezone.now().date()
    counted = PromptRefusal.objects.filter(day=day, reason=reason).update(count=F("count") + 1)
    if not counted:
        row, _ = PromptRefusal.objects.get_or_create(day=day, reason=reason)
        PromptRefusal.objects.filter(pk=row.pk).update(count=F("count") + 1)
    raise PromptRefused(reason)


def load_blocklist(*, path: Path | None = None) -> int:
    """Add the blocklist file's terms that are not in the table yet; returns how many."""
    added = 0
    for line in (path or settings.ARENA_BLOCKLIST).read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        term, _, reason = (part.strip() for part in line.partition("|"))
        _, created = BlockedTerm.objects.get_or_create(
            term=term[:200], defaults={"reason": (reason or "blocklist")[:40]}
        )
        added += created
    forget_terms()
    return added
