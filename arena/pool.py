"""The pool of single-use battle images: secret seeds, taken once, refilled on the lowest priority.

Every curated prompt keeps, for each enabled model, a few unused images made with secret seeds.
A battle on a curated prompt takes one image per side, atomically; a taken image becomes that
battle's side and is never offered again. When the pool cannot serve a battle, it generates
live with a fresh secret seed.
"""

from __future__ import annotations

import secrets
from collections import Counter
from dataclasses import dataclass

from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from arena.models import PoolImage, Prompt
from generation import jobs as generation_jobs
from generation.models import Generation, ImageModel

# Battle seeds lie above every seed direct chat and compare accept (0 to BATTLE_SEED_MIN - 1),
# up to the largest the database column holds, so no named request can ever ask for one.
BATTLE_SEED_MIN = 2**31
BATTLE_SEED_MAX = 2**63 - 1


def secret_seed() -> int:
    """A battle seed from the operating system's cryptographic random source."""
    return BATTLE_SEED_MIN + secrets.randbelow(BATTLE_SEED_MAX - BATTLE_SEED_MIN + 1)


def stocked(*, prompt: Prompt, models: list[ImageModel]) -> bool:
    """Whether every drawable model has a servable image for the prompt at its own size.

    The pool serves a battle only then, so an instant battle says nothing about which models
    it holds: a model whose pool ran dry would otherwise be absent from every instant battle.
    """
    natural = Q()
    for model in models:
        natural |= Q(model=model, generation__width=model.width, generation__height=model.height)
    have = (
        PoolImage.objects.servable()
        .filter(natural, prompt=prompt)
        .values("model")
        .distinct()
        .count()
    )
    return bool(models) and have == len(models)


def _take_one(*, prompt: Prompt, model: ImageModel, size: tuple[int, int]) -> PoolImage | None:
    """Lock and mark taken the oldest servable image, skipping rows another battle holds."""
    found = (
        PoolImage.objects.servable()
        .filter(prompt=prompt, model=model, generation__width=size[0], generation__height=size[1])
        .select_for_update(skip_locked=True, of=("self",))
        .order_by("pk")
        .first()
    )
    if found is None:
        return None
    # Conditional, so the rule holds even where the database has no row locks (SQLite).
    taken = PoolImage.objects.filter(pk=found.pk, taken_at=None).update(taken_at=timezone.now())
    return found if taken == 1 else None


def take_pair(
    *,
    prompt: Prompt,
    left: ImageModel,
    right: ImageModel,
    left_size: tuple[int, int],
    right_size: tuple[int, int],
) -> tuple[Generation, Generation] | None:
    """Take one servable image per side for a battle, both or neither; None when the pool
    cannot serve this pair. Call inside the transaction that creates the battle."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("take_pair must run inside the battle's transaction")
    sid = transaction.savepoint()
    first = _take_one(prompt=prompt, model=left, size=left_size)
    second = _take_one(prompt=prompt, model=right, size=right_size) if first else None
    if first is None or second is None:
        transaction.savepoint_rollback(sid)  # give back a side taken alone
        return None
    transaction.savepoint_commit(sid)
    return first.generation, second.generation


@dataclass(frozen=True)
class Refill:
    queued: list[int]
    present: int


def refill(
    *,
    per_pair: int,
    model_keys: list[str] | None = None,
    prompt_limit: int | None = None,
    max_pending: int | None = None,
) -> Refill:
    """Queue pool jobs until every curated prompt has ``per_pair`` unused images per enabled
    model; returns the new jobs and how many unused images were already there.

    Jobs go out with the pool's purpose, the broker's lowest priority. With ``max_pending``,
    a model whose queue already holds that many pool jobs, or any live battle job waiting,
    gets no more this time: the pool fills when the workers are idle.
    """
    models = list(ImageModel.objects.enabled().filter(retired=False).order_by("pk"))
    if model_keys:
        models = [m for m in models if m.key in model_keys]
    prompts = list(Prompt.objects.curated().order_by("pk")[:prompt_limit])
    unused = Counter(
        {
            (row["prompt"], row["model"]): row["n"]
            for row in PoolImage.objects.unused()
            .filter(prompt__in=prompts, model__in=models)
            .values("prompt", "model")
            .annotate(n=Count("pk"))
        }
    )
    present = sum(unused.values())
    room = None if max_pending is None else _room_per_queue(models, cap=max_pending)
    queued: list[int] = []
    with transaction.atomic():
        # Round by round, so a capped refill brings every prompt to one image before any to two.
        for level in range(per_pair):
            for model in models:
                for prompt in prompts:
                    if unused[(prompt.pk, model.pk)] > level:
                        continue
                    if room is not None:
                        if room[model.queue] <= 0:
                            break
                        room[model.queue] -= 1
                    queued.append(_queue_one(prompt=prompt, model=model))
                    unused[(prompt.pk, model.pk)] += 1
    return Refill(queued=queued, present=present)


def _room_per_queue(models: list[ImageModel], *, cap: int) -> dict[str, int]:
    """How many more pool jobs each queue may take now: none while a live battle job waits."""
    waiting = Generation.objects.unfinished().filter(model__queue__in={m.queue for m in models})
    pool_jobs = Counter(
        waiting.filter(purpose=Generation.Purpose.POOL).values_list("model__queue", flat=True)
    )
    live = set(
        waiting.filter(
            purpose=Generation.Purpose.BATTLE, status=Generation.Status.QUEUED
        ).values_list("model__queue", flat=True)
    )
    return {m.queue: 0 if m.queue in live else max(cap - pool_jobs[m.queue], 0) for m in models}


def _queue_one(*, prompt: Prompt, model: ImageModel) -> int:
    job = generation_jobs.create_generation(
        model=model,
        prompt=prompt.text,
        seed=secret_seed(),
        use_cache=False,
        purpose=Generation.Purpose.POOL,
    )
    PoolImage.objects.create(prompt=prompt, model=model, generation=job)
    generation_jobs.enqueue(job)
    return job.pk


@dataclass(frozen=True)
class ModelLevel:
    key: str
    version: str
    ready: int
    pending: int
    empty_prompts: int


@dataclass(frozen=True)
class Levels:
    per_pair: int
    prompts: int
    models: list[ModelLevel]

    @property
    def ready(self) -> int:
        return sum(m.ready for m in self.models)

    @property
    def pending(self) -> int:
        return sum(m.pending for m in self.models)

    @property
    def empty_pairs(self) -> int:
        return sum(m.empty_prompts for m in self.models)


def levels() -> Levels:
    """Unused images per drawable model: ready, still being made, and curated prompts with none
    ready."""
    from django.conf import settings

    models = list(ImageModel.objects.enabled().filter(retired=False).order_by("key", "pk"))
    prompt_ids = set(Prompt.objects.curated().values_list("pk", flat=True))
    counts = (
        PoolImage.objects.unused()
        .filter(model__in=models, prompt__in=prompt_ids)
        .values("model", "prompt", "generation__status")
        .annotate(n=Count("pk"))
    )
    ready: Counter[int] = Counter()
    pending: Counter[int] = Counter()
    stocked_prompts: dict[int, set[int]] = {m.pk: set() for m in models}
    for row in counts:
        if row["generation__status"] == Generation.Status.DONE:
            ready[row["model"]] += row["n"]
            stocked_prompts[row["model"]].add(row["prompt"])
        else:
            pending[row["model"]] += row["n"]
    return Levels(
        per_pair=settings.ARENA_POOL_SIZE,
        prompts=len(prompt_ids),
        models=[
            ModelLevel(
                key=m.key,
                version=m.version,
                ready=ready[m.pk],
                pending=pending[m.pk],
                empty_prompts=len(prompt_ids - stocked_prompts[m.pk]),
            )
            for m in models
        ],
    )
