"""Typed shapes of the leaderboard API's answers (pydantic, through django-ninja)."""

from __future__ import annotations

import datetime
from typing import Any, Literal

from pydantic import Field

from arena.schemas import Answer

# Rating figures are null where the fit gives no finite value (e.g. an unbounded interval).
Figure = float | None


class Provenance(Answer):
    """How and from what a board was computed, enough to compute it again."""

    id: int
    category: str = Field(description="'overall' or a category")
    created_at: datetime.datetime
    method: str
    interval_method: Literal["sandwich", "bootstrap"]
    bootstrap_rounds: int
    seed: int | None
    resampled_from: int | None = Field(
        description="Bootstrap boards: the board whose rounds this one extended"
    )
    resample_steps: int = Field(
        description="Extensions since the bootstrap rounds were last drawn afresh"
    )
    level: float
    votes_used: int
    both_bad_as_tie: bool
    anchor: str
    components: int
    simultaneous: bool = Field(
        description="The intervals hold jointly (family-wise 95%), not model by model"
    )
    provisional_votes: int = Field(description="Votes a model needs to stop being provisional")
    provisional_half_width: float = Field(
        description="Largest interval half-width (points) of a model that is not provisional"
    )
    style: dict[str, Any] = Field(
        description=(
            "The style-controlled fit (live votes only): votes, and per covariate (side_left,"
            " aspect_*, resolution_*, time_*) its coefficient in logits with a 95% interval"
        )
    )
    tie_model: Literal["half", "davidson"] = Field(
        description=(
            "half: ties count as half a win (LMArena's scale) everywhere; davidson: the rows"
            " also carry davidson_rating, a fit with ties as their own outcome, on its own scale"
        )
    )
    davidson_nu: float | None = Field(
        description="Davidson's tie parameter (a tie between equals: nu / (2 + nu)); null on half"
    )
    code_version: str


class BoardRow(Answer):
    rank: int = Field(description="Rank (UB) within the model's group")
    model: str
    key: str
    version: str
    organisation: str
    licence: str
    in_house: bool
    rating: Figure
    lower: Figure
    upper: Figure
    minus: Figure
    plus: Figure
    votes: int
    win_rate: Figure
    online_elo: Figure
    provisional: bool
    bound: Literal["", "below", "above", "unbounded", "anchor"] = Field(
        description=(
            "Why the interval is open (rating null): below (never won or tied against the"
            " rest: only an upper bound), above (never lost or tied against them: only a lower"
            " bound), unbounded (only ties, or no bound); anchor: the fixed model, no interval"
        )
    )
    rank_best: int = Field(description="95% rank confidence set (all models at once), best end")
    rank_worst: int = Field(description="95% rank confidence set, worst end")
    votes_to_flip: int | None = Field(
        description=(
            "Fewest votes found whose removal changes Rank (UB) or swaps the model with a"
            " neighbour, each confirmed by a refit; null if none was found"
        )
    )

    controlled_rating: Figure = Field(
        description="Rating with image style (side, aspect, resolution, time) held equal"
    )
    style_move: Figure = Field(description="controlled_rating minus the raw rating")
    davidson_rating: Figure = Field(
        description=(
            "Rating under Davidson's tie model (mean-centred, boards with tie_model davidson);"
            " wider gaps than the half-win rating when ties occur regardless of strength"
        )
    )


class Board(Answer):
    snapshot: Provenance | None
    rows: list[BoardRow]


class ModelVersion(Answer):
    version: str
    name: str
    enabled: bool = Field(description="Drawn into new battles")
    retired: bool = Field(description="Superseded by a newer version")
    created_at: datetime.datetime


class Model(Answer):
    key: str
    name: str = Field(description="Display name of the current version")
    organisation: str
    licence: str
    in_house: bool
    current_version: str
    versions: list[ModelVersion] = Field(description="Newest first")


class ModelDetail(Model):
    rating: BoardRow | None = Field(
        description="The newest version's row on the latest overall board"
    )
    snapshot: Provenance | None


class HistoryRow(Answer):
    snapshot_id: int
    created_at: datetime.datetime
    version: str
    rank: int = Field(description="Rank (UB)")
    rating: Figure
    lower: Figure
    upper: Figure
    votes: int
    provisional: bool


class Page(Answer):
    count: int = Field(ge=0)
    next: str | None = Field(description="Full URL of the next page")
    previous: str | None = Field(description="Full URL of the previous page")


class ModelPage(Page):
    results: list[Model]


class HistoryPage(Page):
    results: list[HistoryRow]


class Outcomes(Answer):
    votes: int = Field(ge=0)
    tie_share: float | None = Field(ge=0, le=1)
    both_bad_share: float | None = Field(ge=0, le=1)


class DayCount(Answer):
    date: datetime.date
    votes: int = Field(ge=0, description="Counted votes")
    stored_votes: int = Field(ge=0, description="Every anonymous vote stored, counted or not")
    counted_share: float | None = Field(
        description="votes / stored_votes; null on a day without votes"
    )


class OutcomeBreakdown(Answer):
    overall: Outcomes
    categories: dict[str, Outcomes]


class PoolTotals(Answer):
    """The single-use battle image pool now (totals; per model in the admin)."""

    per_pair: int = Field(description="Target of unused images per curated prompt and model")
    prompts: int = Field(description="Curated prompts")
    models: int = Field(description="Enabled models")
    ready: int = Field(description="Unused images ready to serve")
    pending: int = Field(description="Unused images still being made")
    empty_pairs: int = Field(description="Curated prompt and model pairs with no image ready")


class Stats(Answer):
    """Live votes only (imported logs are not included). Counted votes are anonymous and not
    excluded, as on the boards."""

    days: int
    votes_per_day: list[DayCount] = Field(
        description="Counted votes per UTC day, oldest first, one entry per day"
    )
    total_votes: int = Field(description="Every vote, excluded ones too")
    counted_votes: int
    excluded_votes: int
    battles_voided: int
    pool: PoolTotals
    outcomes: OutcomeBreakdown


class PolicyModel(Answer):
    key: str
    name: str
    base_weight: float = Field(description="Its sampling weight; 0 while it cannot serve soon")
    weight: float = Field(description="The weight after the new-model boost")
    boosted: bool = Field(description="Fewer votes than boost_until_votes: weight boosted")
    board_votes: int = Field(description="Its votes on the latest overall board")
    chance_next: float = Field(
        description="Chance that it is in the next battle (the models' chances sum to 2)"
    )
    battles: int = Field(description="Battles it was drawn into in the window (gold left out)")
    share: float | None = Field(
        description="Its share of battle sides in the window (sums to 1); null without battles"
    )


class SamplingPolicy(Answer):
    """How matchmaking picks the next pair, and what it actually picked."""

    boost: float = Field(description="Weight multiplier of a model under boost_until_votes")
    boost_until_votes: int
    uncertainty_share: float = Field(
        description=(
            "Share of battles drawn between rating neighbours, in proportion to how much one"
            " battle shrinks the variance of their difference"
        )
    )
    uncertainty_share_in_force: float = Field(
        description="The share used now: 0 until a board gives two bounded, drawable models"
    )
    board: int | None = Field(description="The overall board the policy reads (snapshot id)")
    window_days: int
    battles: int = Field(description="Battles created in the window, gold checks left out")
    models: list[PolicyModel]
