"""Prompt categories and a small keyword classifier for visitor prompts.

Every battle in the arena is tagged with one category so the leaderboard can
be sliced ("which model is best at text rendering?"). Curated prompts carry a
hand-assigned label (see ``arena/data/prompts.toml``); prompts typed by
visitors are labelled by :func:`classify_prompt`.

Why keyword rules rather than a learned classifier:

* **Transparent** - every decision can be explained by pointing at the words
  that scored; anyone can read and adjust the tables in ``arena/data/categories.toml``.
* **Deterministic** - the same text always gets the same label, on every
  machine and every release, so per-category leaderboards stay reproducible.
* **Cheap** - stdlib only: no model download, no GPU, no network, and it runs
  in microseconds inside a request.

Limits (accepted on purpose):

* It only sees surface words. Negation ("no people"), metaphor ("a face made
  of clouds") and context ("a poster of a mountain") can mislead it.
* English only; plurals are folded by a crude suffix rule, there is no real
  stemming or lemmatisation, and misspellings are not matched.
* A prompt that fits several categories gets exactly one label: the highest
  score, with ties broken by :data:`TIE_BREAK_ORDER` (each category's ``tie_break``).
* Prompts with no known keyword fall into ``"other"``.

The curated pool is used as a regression check: the test-suite requires the
classifier to agree with the hand labels on at least 75% of it.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any, Final

DATA_FILE: Final[Path] = Path(__file__).resolve().parent / "data" / "categories.toml"


def _load(path: Path) -> dict[str, Any]:
    with path.open("rb") as file:
        return tomllib.load(file)


_DATA: Final[dict[str, Any]] = _load(DATA_FILE)
_TABLES: Final[list[dict[str, Any]]] = _DATA["category"]

# The categories in display order, "other" last; their labels for people.
CATEGORIES: Final[tuple[str, ...]] = tuple(str(table["name"]) for table in _TABLES)
LABELS: Final[dict[str, str]] = {str(t["name"]): str(t["label"]) for t in _TABLES}
OTHER: Final[str] = "other"
# The order in which equal scores are resolved; "other" takes no part.
TIE_BREAK_ORDER: Final[tuple[str, ...]] = tuple(
    str(t["name"])
    for t in sorted(_TABLES, key=lambda t: int(t.get("tie_break", 0)))
    if "tie_break" in t
)
QUOTED_TEXT_WEIGHT: Final[int] = int(_DATA["quoted_text_weight"])
# Keyword -> weight, per category.
KEYWORDS: Final[dict[str, dict[str, int]]] = {
    str(t["name"]): {str(word): int(weight) for word, weight in t["keywords"].items()}
    for t in _TABLES
    if "keywords" in t
}

_QUOTED_RE: Final[re.Pattern[str]] = re.compile(
    r"\"[^\"]*[^\W_][^\"]*\"|\u201c[^\u201d]*[^\W_][^\u201d]*\u201d"
    r"|(?<!\w)'[^']*[^\W_][^']*'(?!\w)|\u2018[^\u2019]*[^\W_][^\u2019]*\u2019"
)
_TOKEN_RE: Final[re.Pattern[str]] = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def _tokens(text: str) -> list[str]:
    """Lowercase word tokens; typographic apostrophes become ASCII ones."""
    return _TOKEN_RE.findall(text.lower().replace("\u2019", "'"))


def _word_weight(table: dict[str, int], token: str) -> int:
    """Weight of ``token`` in ``table``, folding simple English plurals."""
    if token in table:
        return table[token]
    if token.endswith("'s") and token[:-2] in table:
        return table[token[:-2]]
    if token.endswith("es") and token[:-2] in table:
        return table[token[:-2]]
    if token.endswith("s") and not token.endswith("ss") and token[:-1] in table:
        return table[token[:-1]]
    return 0


def score_prompt(text: str) -> dict[str, int]:
    """Return the keyword score of every category except ``"other"``.

    Each distinct keyword (or phrase) counts once per prompt, so repeating a
    word does not inflate a score.
    """
    tokens = _tokens(text)
    scores: dict[str, int] = {category: 0 for category in CATEGORIES if category != OTHER}

    if _QUOTED_RE.search(text):
        scores["text_rendering"] += QUOTED_TEXT_WEIGHT

    padded = " " + " ".join(tokens) + " "
    distinct = set(tokens)
    for category, table in KEYWORDS.items():
        matched: set[str] = set()
        for token in distinct:
            weight = _word_weight(table, token)
            if weight:
                matched.add(token)
                scores[category] += weight
        for keyword, weight in table.items():
            if " " in keyword and f" {keyword} " in padded and keyword not in matched:
                scores[category] += weight
    return scores


def classify_prompt(text: str) -> str:
    """Classify a free-text prompt into one of :data:`CATEGORIES`.

    The category with the highest keyword score wins; ties are broken by
    :data:`TIE_BREAK_ORDER`. A prompt without any matching keyword (including
    an empty prompt) is classified as ``"other"``.
    """
    scores = score_prompt(text)
    best = max(scores.values(), default=0)
    if best <= 0:
        return OTHER
    for category in TIE_BREAK_ORDER:
        if scores[category] == best:
            return category
    return OTHER  # pragma: no cover - TIE_BREAK_ORDER lists every category
