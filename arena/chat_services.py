"""Direct chat services: one named model at a time, turns, refinement, named comparisons.

Nothing here touches the anonymous leaderboard: chat images are plain jobs, and a named
comparison is a battle with ``anonymous=False``, whose vote is counted apart.
"""

from __future__ import annotations

import random
import re
import statistics
from dataclasses import dataclass
from typing import Any

from django.db import transaction

from arena.categories import classify_prompt
from arena.models import Battle, ChatImage, ChatTurn, Conversation
from arena.pool import BATTLE_SEED_MIN
from arena.services import clean_prompt
from generation import jobs as generation_jobs
from generation.models import Generation, ImageModel

MAX_IMAGES_PER_TURN = 4
# Named requests use seeds 0 to MAX_SEED; battles draw theirs secretly from above it, so no chat
# turn or comparison can ask for a battle's seed (and chat never shares a cached battle image).
MAX_SEED = BATTLE_SEED_MIN - 1
# Medians over this many recent jobs make a model's "typical latency".
LATENCY_WINDOW = 50


class ChatError(ValueError):
    """A turn cannot start; ``field`` names the form field, the message says why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def chat_models() -> list[ImageModel]:
    """Models a person may pick in direct chat."""
    return list(ImageModel.objects.enabled().filter(retired=False).order_by("display_name"))


def can_refine(model: ImageModel) -> bool:
    """Whether the model's family has an image-to-image pipeline to refine with (sync_models
    records it)."""
    return model.can_refine


def check_refinable(source: Generation) -> None:
    """Refuse, with a ChatError, an image that cannot be refined now: one not finished, one
    whose file retention removed, or one of a model that is switched off or cannot refine."""
    model = source.model
    if source.status == Generation.Status.FAILED:
        raise ChatError("source", "This image failed, so there is nothing to refine.")
    if source.status != Generation.Status.DONE:
        raise ChatError("source", "The image to refine is not ready yet.")
    if not source.image_sha256:
        raise ChatError("source", "This image's file is no longer kept, so it cannot be refined.")
    if not model.enabled or model.retired:
        raise ChatError("source", f"{model.display_name} is not offered now, so it cannot refine.")
    if not can_refine(model):
        raise ChatError("source", f"{model.display_name} cannot refine images.")


def typical_latency_ms(model: ImageModel) -> int | None:
    """Median compute time of the model's recent freshly made images, if it has any."""
    recent = list(
        Generation.objects.filter(
            model=model, status=Generation.Status.DONE, cached_from=None, compute_ms__isnull=False
        )
        .order_by("-finished_at")
        .values_list("compute_ms", flat=True)[:LATENCY_WINDOW]
    )
    values = [ms for ms in recent if ms is not None]
    return int(statistics.median(values)) if values else None


@dataclass(frozen=True)
class TurnSettings:
    """What a person asked for, checked against the model's registry bounds."""

    model: ImageModel
    prompt: str
    negative_prompt: str
    seed: int
    steps: int
    guidance: float
    width: int
    height: int
    count: int


def _number(field: str, raw: Any, kind: type[int] | type[float], what: str) -> Any:
    try:
        return kind(raw)
    except (TypeError, ValueError):
        raise ChatError(field, f"{what} must be a number, got {str(raw)[:20]!r}.") from None


def check_settings(
    *,
    model: ImageModel,
    prompt: str,
    negative_prompt: str = "",
    seed: Any = None,
    steps: Any = None,
    guidance: Any = None,
    size: str = "",
    count: Any = 1,
    rng: random.Random | None = None,
) -> TurnSettings:
    """Validate a turn against the model's bounds; out of range is an error, never a clamp."""
    try:
        prompt = clean_prompt(prompt)
    except ValueError as exc:
        raise ChatError("prompt", str(exc)) from None
    try:
        negative_prompt = clean_prompt(negative_prompt) if negative_prompt.strip() else ""
    except ValueError as exc:
        raise ChatError("negative_prompt", f"Negative prompt: {exc}") from None
    if seed in (None, ""):
        seed = (rng or random.SystemRandom()).randrange(MAX_SEED)
    seed = _number("seed", seed, int, "The seed")
    if not 0 <= seed <= MAX_SEED:
        raise ChatError("seed", f"The seed must be between 0 and {MAX_SEED}.")
    steps = model.default_steps if steps in (None, "") else _number("steps", steps, int, "Steps")
    if not 1 <= steps <= model.max_steps:
        raise ChatError("steps", f"{model.display_name} takes 1 to {model.max_steps} steps.")
    guidance = (
        model.default_guidance
        if guidance in (None, "")
        else _number("guidance", guidance, float, "Guidance")
    )
    if not model.min_guidance <= guidance <= model.max_guidance:
        raise ChatError(
            "guidance",
            f"{model.display_name} takes guidance from {model.min_guidance:g} "
            f"to {model.max_guidance:g}.",
        )
    allowed = model.allowed_sizes()
    if size:
        match = re.fullmatch(r"(\d+)x(\d+)", size)
        chosen = (int(match[1]), int(match[2])) if match else None
        if chosen not in allowed:
            offered = ", ".join(f"{w}x{h}" for w, h in allowed)
            raise ChatError("size", f"{model.display_name} makes these sizes: {offered}.")
        width, height = chosen
    else:
        width, height = allowed[0]
    count = _number("count", count, int, "The number of images")
    if not 1 <= count <= MAX_IMAGES_PER_TURN:
        raise ChatError("count", f"A turn makes 1 to {MAX_IMAGES_PER_TURN} images.")
    return TurnSettings(
        model=model,
        prompt=prompt,
        negative_prompt=negative_prompt,
        seed=seed,
        steps=steps,
        guidance=guidance,
        width=width,
        height=height,
        count=count,
    )


def conversation_for(*, owner: str, user: Any = None) -> Conversation:
    """The person's conversation: a signed-in user's own, else the browser session's."""
    if user is not None and user.is_authenticated:
        found = Conversation.objects.filter(user=user).first()
        if found is None:
            found = Conversation.objects.create(owner=owner, user=user)
        return found
    found = Conversation.objects.filter(owner=owner, user=None).first()
    return found or Conversation.objects.create(owner=owner)


@transaction.atomic
def start_turn(
    *,
    conversation: Conversation,
    settings: TurnSettings,
    source: Generation | None = None,
    strength: float | None = None,
) -> ChatTurn:
    """A turn with ``count`` images (seeds seed, seed+1, ...), queued on commit."""
    if source is not None:
        if not can_refine(settings.model):
            raise ChatError("strength", f"{settings.model.display_name} cannot refine images.")
        if strength is None or not 0.05 <= strength <= 1.0:
            raise ChatError("strength", "Strength must be between 0.05 and 1.")
        if source.status != Generation.Status.DONE:
            raise ChatError("source", "The image to refine is not ready yet.")
    turn = ChatTurn.objects.create(
        conversation=conversation,
        kind=ChatTurn.Kind.REFINE if source else ChatTurn.Kind.GENERATE,
        model=settings.model,
        prompt=settings.prompt,
        negative_prompt=settings.negative_prompt,
        seed=settings.seed,
        steps=settings.steps,
        guidance=settings.guidance,
        width=settings.width,
        height=settings.height,
        count=settings.count,
        source=source,
        strength=strength,
    )
    for index in range(settings.count):
        job = generation_jobs.create_generation(
            model=settings.model,
            prompt=settings.prompt,
            negative_prompt=settings.negative_prompt,
            seed=(settings.seed + index) % (MAX_SEED + 1),
            steps=settings.steps,
            guidance=settings.guidance,
            size=(settings.width, settings.height),
            source_image=source,
            strength=strength,
            purpose=Generation.Purpose.CHAT,
        )
        ChatImage.objects.create(turn=turn, generation=job, index=index)
        generation_jobs.enqueue(job)
    return turn


def settings_of(turn: ChatTurn) -> dict[str, Any]:
    """A turn's settings as plain data, to copy as JSON or to run again."""
    data: dict[str, Any] = {
        "model": turn.model.key,
        "model_version": turn.model.version,
        "prompt": turn.prompt,
        "negative_prompt": turn.negative_prompt,
        "seed": turn.seed,
        "steps": turn.steps,
        "guidance": turn.guidance,
        "size": f"{turn.width}x{turn.height}",
        "count": turn.count,
    }
    if turn.kind == ChatTurn.Kind.REFINE:
        data["strength"] = turn.strength
        data["source_image_sha256"] = turn.source.image_sha256 if turn.source else None
    return data


def run_again(*, turn: ChatTurn, new_seed: bool, rng: random.Random | None = None) -> ChatTurn:
    """The same turn once more, with its seed or a new one."""
    settings = TurnSettings(
        model=turn.model,
        prompt=turn.prompt,
        negative_prompt=turn.negative_prompt,
        seed=(rng or random.SystemRandom()).randrange(MAX_SEED) if new_seed else turn.seed,
        steps=turn.steps,
        guidance=turn.guidance,
        width=turn.width,
        height=turn.height,
        count=turn.count,
    )
    return start_turn(
        conversation=turn.conversation,
        settings=settings,
        source=turn.source,
        strength=turn.strength,
    )


@dataclass(frozen=True)
class ImageState:
    generation: Generation
    status: str
    progress: int
    queue_position: int


def image_states(turn: ChatTurn) -> list[ImageState]:
    """Each image's status, progress in whole percent, and place in its model's queue."""
    states = []
    for chat_image in turn.chat_images.select_related("generation__model"):
        job = chat_image.generation
        ahead = 0
        if job.status == Generation.Status.QUEUED:
            ahead = Generation.objects.filter(
                status=Generation.Status.QUEUED, model__queue=job.model.queue, pk__lt=job.pk
            ).count()
        states.append(
            ImageState(
                generation=job,
                status=job.status,
                progress=int(generation_jobs.progress(job) * 100),
                queue_position=ahead,
            )
        )
    return states


def download_name(generation: Generation) -> str:
    """model-seed-first-prompt-words.png: names the model, since chat is not blind."""
    words = re.findall(r"[a-z0-9]+", generation.prompt.lower())[:6]
    return f"{generation.model.key}-{generation.seed}-{'-'.join(words) or 'image'}.png"


@transaction.atomic
def create_named_battle(
    *,
    left: ImageModel,
    right: ImageModel,
    prompt_text: str,
    owner: str,
    seed: int | None = None,
) -> Battle:
    """Two chosen models side by side on one prompt and seed; its vote never counts on the
    anonymous board."""
    if left.pk == right.pk:
        raise ChatError("right", "Pick two different models.")
    try:
        text = clean_prompt(prompt_text)
    except ValueError as exc:
        raise ChatError("prompt", str(exc)) from None
    seed = random.SystemRandom().randrange(MAX_SEED) if seed is None else seed
    if not 0 <= seed <= MAX_SEED:
        raise ChatError("seed", f"The seed must be between 0 and {MAX_SEED}.")
    size = (min(left.width, right.width), min(left.height, right.height))
    jobs = [
        generation_jobs.create_generation(
            model=m, prompt=text, seed=seed, output_size=size, purpose=Generation.Purpose.CHAT
        )
        for m in (left, right)
    ]
    battle = Battle.objects.create(
        prompt_text=text,
        category=classify_prompt(text),
        model_left=left,
        model_right=right,
        generation_left=jobs[0],
        generation_right=jobs[1],
        seed=seed,
        owner=owner,
        anonymous=False,
    )
    if all(job.status == Generation.Status.DONE for job in jobs):
        from arena.services import on_generation_finished

        on_generation_finished(generation=jobs[0])
    for job in jobs:
        generation_jobs.enqueue(job)
    return battle
