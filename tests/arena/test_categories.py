"""Tests for arena.categories and the curated prompt pool (no Django, no DB)."""

from __future__ import annotations

import tomllib
from collections import Counter
from pathlib import Path

import pytest

from arena.categories import CATEGORIES, classify_prompt

PROMPTS_PATH = Path(__file__).resolve().parents[2] / "arena" / "data" / "prompts.toml"

MIN_WORDS = 8
MAX_WORDS = 40
MIN_POOL_SIZE = 60
MIN_PER_CATEGORY = 6
MIN_AGREEMENT = 0.75


def _load_pool() -> list[dict[str, str]]:
    with PROMPTS_PATH.open("rb") as fh:
        data = tomllib.load(fh)
    prompts: list[dict[str, str]] = data["prompt"]
    return prompts


def test_categories_are_the_nine_curated_ones_then_other() -> None:
    assert CATEGORIES == (
        "photorealism",
        "portraits",
        "landscapes",
        "text_rendering",
        "illustration",
        "product",
        "architecture",
        "animals",
        "abstract",
        "other",
    )


def test_photograph_with_camera_terms_is_photorealism() -> None:
    assert classify_prompt("A DSLR photograph of a rainy street, 35mm, bokeh") == "photorealism"


def test_headshot_of_a_woman_is_portraits() -> None:
    assert classify_prompt("Close-up headshot of a smiling woman") == "portraits"


def test_mountain_lake_at_sunset_is_landscapes() -> None:
    assert classify_prompt("Snowy mountains above a calm lake at sunset") == "landscapes"


def test_sign_with_lettering_is_text_rendering() -> None:
    assert classify_prompt("A shop sign with gold lettering that says welcome") == "text_rendering"


def test_watercolor_cartoon_is_illustration() -> None:
    assert classify_prompt("A watercolor cartoon of a village fair") == "illustration"


def test_studio_shot_of_a_bottle_is_product() -> None:
    assert classify_prompt("Studio shot of a glass bottle on a white backdrop") == "product"


def test_cathedral_interior_is_architecture() -> None:
    assert classify_prompt("The interior of a gothic cathedral") == "architecture"


def test_dog_and_cat_are_animals() -> None:
    assert classify_prompt("A dog and a cat asleep together") == "animals"


def test_geometric_fractal_pattern_is_abstract() -> None:
    assert classify_prompt("An abstract geometric fractal pattern") == "abstract"


@pytest.mark.parametrize("text", ["", "   ", "qwerty zxcvb", "a spaceship", "!!! ???"])
def test_empty_or_unmatched_text_is_other(text: str) -> None:
    assert classify_prompt(text) == "other"


def test_classification_ignores_case() -> None:
    assert classify_prompt("A PORTRAIT OF A MAN") == classify_prompt("a portrait of a man")


def test_classification_is_deterministic() -> None:
    text = "A fox in a forest, watercolor illustration"
    assert len({classify_prompt(text) for _ in range(20)}) == 1


def test_result_is_always_a_known_category() -> None:
    for text in ["", "a cat", "a sign", "an anime girl with blue hair", "zzz"]:
        assert classify_prompt(text) in CATEGORIES


@pytest.mark.parametrize(
    "text",
    [
        'a kitchen wall with "HOME" on it',
        "a kitchen wall with \u201cHOME\u201d on it",
        "a kitchen wall with 'HOME' on it",
    ],
)
def test_quoted_words_push_to_text_rendering(text: str) -> None:
    assert classify_prompt("a kitchen wall with HOME on it") != "text_rendering"
    assert classify_prompt(text) == "text_rendering"


def test_apostrophes_are_not_treated_as_quotes() -> None:
    assert classify_prompt("the dog's tail and the cat's whiskers") == "animals"


def test_tie_is_broken_deterministically_by_documented_order() -> None:
    # "portrait" (3) vs "anime" (3): portraits precedes illustration in TIE_BREAK_ORDER.
    assert classify_prompt("anime portrait") == "portraits"


def test_curated_prompt_pool_is_well_formed_and_agrees_with_classifier() -> None:
    pool = _load_pool()
    assert len(pool) >= MIN_POOL_SIZE, f"only {len(pool)} prompts"

    labels = [p["category"] for p in pool]
    texts = [p["text"] for p in pool]
    counts = Counter(labels)
    assert set(labels) <= set(CATEGORIES) - {"other"}, f"unknown labels: {set(labels)}"
    for category in CATEGORIES:
        if category != "other":
            assert counts[category] >= MIN_PER_CATEGORY, f"{category}: {counts[category]}"

    assert len(set(texts)) == len(texts), "duplicate prompt texts"
    for text in texts:
        words = len(text.split())
        assert MIN_WORDS <= words <= MAX_WORDS, f"{words} words: {text!r}"

    misses = [(p["category"], classify_prompt(p["text"]), p["text"]) for p in pool]
    misses = [m for m in misses if m[0] != m[1]]
    agreement = 1 - len(misses) / len(pool)
    print(f"classifier agreement with curated labels: {agreement:.1%} ({len(pool)} prompts)")
    assert agreement >= MIN_AGREEMENT, (
        f"classifier agrees with curated labels on {agreement:.1%} of {len(pool)} prompts "
        f"(need {MIN_AGREEMENT:.0%}); misses: {misses}"
    )


def test_the_data_file_lists_each_category_once_with_keywords_and_a_tie_break() -> None:
    from arena.categories import KEYWORDS, LABELS, OTHER, TIE_BREAK_ORDER

    assert len(set(CATEGORIES)) == len(CATEGORIES) and CATEGORIES[-1] == OTHER
    assert set(LABELS) == set(CATEGORIES)
    assert set(KEYWORDS) == set(TIE_BREAK_ORDER) == set(CATEGORIES) - {OTHER}
    assert all(weight in {1, 2, 3} for table in KEYWORDS.values() for weight in table.values())
