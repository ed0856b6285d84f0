"""Prompt categories and a small keyword classifier for visitor prompts.

Every battle in the arena is tagged with one category so the leaderboard can
be sliced ("which model is best at text rendering?"). Curated prompts carry a
hand-assigned label (see ``arena/data/prompts.toml``); prompts typed by
visitors are labelled by :func:`classify_prompt`.

Why keyword rules rather than a learned classifier:

* **Transparent** - every decision can be explained by pointing at the words
  that scored; anyone can read and adjust the tables below.
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
  score, with ties broken by :data:`TIE_BREAK_ORDER`.
* Prompts with no known keyword fall into ``"other"``.

The curated pool is used as a regression check: the test-suite requires the
classifier to agree with the hand labels on at least 75% of it.
"""

from __future__ import annotations

import re
from typing import Final

CATEGORIES: Final[tuple[str, ...]] = (
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

OTHER: Final[str] = "other"

# Ties are resolved in this order: the more specific, subject-defining
# categories come first, and the broad "style" categories (illustration,
# abstract, photorealism) last, because words such as "photo" or "painting"
# appear in prompts of every kind.
TIE_BREAK_ORDER: Final[tuple[str, ...]] = (
    "text_rendering",
    "product",
    "portraits",
    "animals",
    "architecture",
    "landscapes",
    "illustration",
    "abstract",
    "photorealism",
)

# Weight of a quoted string ("...", '...', or typographic quotes) that
# contains at least one letter or digit: asking for exact text is the
# clearest possible signal of a text-rendering prompt.
QUOTED_TEXT_WEIGHT: Final[int] = 4

# Keyword -> weight, per category. 3 = decisive, 2 = strong, 1 = hint.
# Single words are matched against word tokens (after folding a plural "s"/
# "es"); entries containing a space are matched as consecutive tokens.
KEYWORDS: Final[dict[str, dict[str, int]]] = {
    "photorealism": {
        "photo": 2,
        "photograph": 2,
        "photography": 2,
        "photographic": 2,
        "photorealistic": 3,
        "photoreal": 3,
        "hyperrealistic": 3,
        "realistic": 2,
        "dslr": 3,
        "35mm": 3,
        "50mm": 3,
        "85mm": 2,
        "bokeh": 3,
        "film": 1,
        "macro": 2,
        "exposure": 2,
        "lens": 1,
        "aperture": 2,
        "candid": 1,
        "documentary": 2,
        "snapshot": 2,
        "shot on": 2,
        "depth of field": 2,
        "high speed": 2,
        "drone": 1,
        "strobe": 2,
        "8k": 1,
        "4k": 1,
    },
    "portraits": {
        "portrait": 3,
        "headshot": 3,
        "selfie": 3,
        "face": 2,
        "faces": 2,
        "expression": 2,
        "smile": 2,
        "smiling": 2,
        "eyes": 1,
        "woman": 2,
        "man": 2,
        "women": 2,
        "men": 2,
        "girl": 2,
        "boy": 2,
        "child": 1,
        "person": 2,
        "people": 1,
        "grandmother": 2,
        "grandfather": 2,
        "granddaughter": 2,
        "grandson": 2,
        "teenage": 1,
        "elderly": 1,
        "freckle": 2,
        "hair": 1,
        "makeup": 2,
        "cheek": 2,
        "profile": 1,
        "close up": 1,
        "bust": 1,
    },
    "landscapes": {
        "landscape": 3,
        "mountain": 2,
        "lake": 2,
        "forest": 2,
        "valley": 3,
        "sunset": 1,
        "sunrise": 1,
        "dawn": 1,
        "horizon": 2,
        "meadow": 2,
        "river": 2,
        "canyon": 3,
        "desert": 2,
        "dune": 2,
        "coastline": 3,
        "coast": 2,
        "cliff": 2,
        "hill": 1,
        "hillside": 2,
        "field": 1,
        "savanna": 2,
        "glacier": 3,
        "waterfall": 3,
        "aurora": 2,
        "northern lights": 2,
        "peak": 2,
        "snowy": 1,
        "prairie": 3,
        "tundra": 3,
        "vista": 3,
        "scenery": 3,
        "countryside": 3,
        "wilderness": 3,
        "beach": 2,
        "island": 2,
        "volcano": 3,
        "fjord": 3,
        "jungle": 2,
        "seascape": 3,
        "ocean": 1,
        "tree": 1,
        "grass": 1,
    },
    "text_rendering": {
        "text": 2,
        "sign": 2,
        "signage": 3,
        "poster": 2,
        "logo": 3,
        "lettering": 3,
        "letter": 2,
        "typography": 3,
        "typeface": 3,
        "font": 3,
        "says": 3,
        "say": 2,
        "saying": 2,
        "reads": 3,
        "written": 3,
        "words": 2,
        "word": 2,
        "spelling": 3,
        "spell": 3,
        "caption": 3,
        "headline": 3,
        "label": 2,
        "banner": 2,
        "slogan": 3,
        "message": 2,
        "title": 2,
        "handwritten": 2,
        "calligraphy": 3,
        "graffiti": 1,
        "menu": 1,
        "note": 1,
        "neon sign": 1,
        "sans serif": 2,
        "serif": 2,
    },
    "illustration": {
        "illustration": 3,
        "illustrated": 3,
        "watercolor": 3,
        "watercolour": 3,
        "cartoon": 3,
        "anime": 3,
        "manga": 3,
        "vector": 3,
        "comic": 3,
        "drawing": 2,
        "drawn": 2,
        "sketch": 2,
        "ink": 1,
        "pen": 1,
        "gouache": 3,
        "pastel": 1,
        "storybook": 3,
        "picture book": 3,
        "children's": 2,
        "woodblock": 3,
        "ukiyo": 3,
        "isometric": 2,
        "cel": 3,
        "shading": 1,
        "linework": 2,
        "outlines": 2,
        "whimsical": 2,
        "pixel art": 3,
        "digital art": 2,
        "concept art": 2,
        "line art": 2,
        "doodle": 3,
        "clipart": 3,
        "chibi": 3,
        "flat": 1,
        "painting": 1,
        "painted": 1,
    },
    "product": {
        "product": 3,
        "packshot": 3,
        "packaging": 3,
        "package": 2,
        "bottle": 2,
        "studio shot": 3,
        "product shot": 3,
        "commercial": 3,
        "advertising": 3,
        "advertisement": 3,
        "ad": 2,
        "catalog": 3,
        "catalogue": 3,
        "e commerce": 3,
        "hero image": 2,
        "seamless backdrop": 3,
        "backdrop": 1,
        "pedestal": 2,
        "flat lay": 3,
        "display": 1,
        "displayed": 1,
        "luxury": 2,
        "perfume": 2,
        "cosmetics": 2,
        "skincare": 2,
        "sneakers": 2,
        "headphones": 2,
        "watch": 1,
        "studio": 1,
        "matte": 1,
        "glossy": 1,
    },
    "architecture": {
        "architecture": 3,
        "architectural": 3,
        "building": 3,
        "cathedral": 3,
        "church": 3,
        "temple": 3,
        "mosque": 3,
        "palace": 3,
        "castle": 3,
        "skyscraper": 3,
        "tower": 2,
        "interior": 3,
        "facade": 3,
        "house": 2,
        "library": 2,
        "station": 2,
        "bridge": 2,
        "room": 2,
        "living room": 2,
        "courtyard": 2,
        "staircase": 2,
        "arches": 2,
        "arch": 2,
        "vault": 2,
        "dome": 2,
        "column": 2,
        "brutalist": 3,
        "gothic": 2,
        "baroque": 2,
        "concrete": 1,
        "roof": 1,
        "rooftop": 1,
        "gable": 2,
        "window": 1,
        "floor": 1,
        "street": 1,
        "cityscape": 2,
        "skyline": 2,
        "kitchen": 2,
        "bedroom": 2,
        "villa": 3,
        "cottage": 2,
        "cabin": 2,
        "lighthouse": 2,
        "museum": 2,
        "mansion": 3,
    },
    "animals": {
        "animal": 3,
        "wildlife": 3,
        "cat": 3,
        "kitten": 3,
        "dog": 3,
        "puppy": 3,
        "retriever": 3,
        "bird": 3,
        "owl": 3,
        "eagle": 3,
        "parrot": 3,
        "flamingo": 3,
        "fox": 3,
        "wolf": 3,
        "bear": 3,
        "deer": 3,
        "horse": 3,
        "elephant": 3,
        "calf": 2,
        "lion": 3,
        "tiger": 3,
        "whale": 3,
        "dolphin": 3,
        "fish": 2,
        "chameleon": 3,
        "lizard": 3,
        "snake": 3,
        "frog": 3,
        "rabbit": 3,
        "butterfly": 3,
        "insect": 3,
        "herd": 2,
        "flock": 2,
        "pack": 1,
        "fur": 2,
        "feathers": 2,
        "whiskers": 2,
        "wings": 1,
        "tail": 2,
        "paw": 2,
        "fins": 1,
        "tabby": 3,
        "pig": 3,
        "cow": 3,
        "sheep": 3,
        "goat": 3,
        "monkey": 3,
        "penguin": 3,
        "duck": 3,
        "turtle": 3,
        "shark": 3,
        "octopus": 3,
        "squirrel": 3,
        "hedgehog": 3,
        "raccoon": 3,
        "zebra": 3,
        "giraffe": 3,
        "panda": 3,
        "koala": 3,
    },
    "abstract": {
        "abstract": 3,
        "abstraction": 3,
        "geometric": 3,
        "fractal": 3,
        "pattern": 2,
        "patterns": 2,
        "shapes": 1,
        "circles": 2,
        "triangles": 2,
        "hexagons": 2,
        "spiral": 2,
        "swirling": 2,
        "kaleidoscopic": 3,
        "kaleidoscope": 3,
        "mandala": 3,
        "symmetry": 2,
        "symmetrical": 2,
        "gradient": 2,
        "composition": 1,
        "void": 2,
        "infinite": 1,
        "marbled": 2,
        "fluid": 1,
        "texture": 1,
        "textured": 1,
        "brushstrokes": 1,
        "impasto": 2,
        "expressionist": 2,
        "surreal": 1,
        "minimal": 1,
        "lines": 1,
    },
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
