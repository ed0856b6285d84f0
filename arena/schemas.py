"""Typed shapes of the JSON API's requests and answers (pydantic, through django-ninja).

The OpenAPI document at /api/v1/openapi.json is generated from these classes. Every answer
forbids fields it does not declare, so a field added to a view without its schema fails the
tests that validate live answers against the document.
"""

from __future__ import annotations

from typing import Annotated, Literal

from ninja import Schema
from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema


def _storable(value: str) -> str:
    """Refuse text PostgreSQL cannot store: NUL characters and lone UTF-16 surrogates."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text (no lone surrogates)") from None
    return value


# Text from a client: any string a database column can hold.
Text = Annotated[str, AfterValidator(_storable)]


class Answer(Schema):
    """Base of every answer: undeclared fields are an error, not a silent extra."""

    model_config = ConfigDict(extra="forbid")


class ErrorDetail(Answer):
    code: str = Field(description="Stable, machine-readable reason, e.g. bad_page, not_found")
    message: str = Field(description="The reason in words")


class Error(Answer):
    """The one error shape of the API, whatever the status."""

    error: ErrorDetail


class Session(Answer):
    csrf_token: str = Field(description="Send back as the X-CSRFToken header on every POST")


class BattleIn(Schema):
    prompt: Text = Field("", description="The prompt both models draw; 1 to 1000 characters")
    altcha: Text = Field(
        "",
        max_length=4000,
        description="A new session's first battle: the solved GET /challenge puzzle, "
        "base64(JSON {algorithm, challenge, number, salt, signature})",
    )
    captcha: Text = Field(
        "",
        max_length=4096,
        description="With Turnstile or hCaptcha configured: the widget's token (first battle)",
    )


class Challenge(Answer):
    """A proof-of-work puzzle (ALTCHA v1): find n up to maxNumber with SHA-256(salt + n) equal
    to challenge; each answer is accepted once."""

    required: bool
    algorithm: str | None = None
    challenge: str | None = None
    maxNumber: int | None = None  # noqa: N815 - ALTCHA's field name
    salt: str | None = None
    signature: str | None = None


Choice = Literal["left", "right", "tie", "both_bad"]  # Vote.Choice's values (a test checks)


class VoteIn(Schema):
    choice: Choice


class Sides(Answer):
    left: str
    right: str


class Battle(Answer):
    """A battle as its voter sees it: names only after the vote."""

    id: str = Field(json_schema_extra={"format": "uuid"})
    status: Literal["generating", "ready", "voted", "void"]
    progress: int = Field(ge=0, le=100)
    # Absent (not null) until they apply, hence SkipJsonSchema[None].
    images: Sides | SkipJsonSchema[None] = Field(
        None, description="Image URLs once both are ready; sides only, never names"
    )
    message: str | SkipJsonSchema[None] = Field(
        None, description="Why a void battle ended; names no model"
    )
    vote: Choice | SkipJsonSchema[None] = None
    models: Sides | SkipJsonSchema[None] = Field(None, description="Present only after the vote")


# --- Direct chat's forms -------------------------------------------------------------------
# Typed here; the bounds that depend on the model (steps, guidance, sizes) are checked by
# ``arena.chat_services.check_settings``, the one place that knows them.

MAX_SEED = 2**31 - 1
MAX_ID = 2**63 - 1  # PostgreSQL's bigint


def _blank_is_none(value: object) -> object:
    return None if value == "" else value


# A number or None; an empty form field is None.
OptionalInt = Annotated[int | None, BeforeValidator(_blank_is_none)]
OptionalFloat = Annotated[float | None, BeforeValidator(_blank_is_none)]


class ChatSettingsIn(Schema):
    """The direct-chat form: what a person asks one named model for."""

    model: Text = ""
    prompt: Text = ""
    negative_prompt: Text = ""
    seed_mode: Literal["random", "fixed"] = "random"
    seed: OptionalInt = Field(None, ge=0, le=MAX_SEED)
    steps: OptionalInt = None
    guidance: OptionalFloat = Field(None, allow_inf_nan=False)
    size: Text = ""
    count: int = 1


class RefineIn(Schema):
    prompt: Text = ""
    negative_prompt: Text | None = None
    strength: float = Field(0.6, allow_inf_nan=False)


class RunAgainIn(Schema):
    seed: Literal["same", "new", ""] = ""


class ChatPageQuery(Schema):
    """``?from=<turn id>``: "edit and rerun" fills the form with that turn's settings."""

    from_turn: OptionalInt = Field(None, alias="from", ge=1, le=MAX_ID)


class CompareIn(Schema):
    left: Text = ""
    right: Text = ""
    prompt: Text = ""
    seed: OptionalInt = Field(None, ge=0, le=MAX_SEED)
