"""Retention: delete generated images nobody will need, and never one behind a vote.

Deleted: both images of battles that got no vote and are older than the unvoted limit (the
battle is voided: it can no longer be voted on), and direct-chat images older than the chat
limit. Kept, whatever their age: every image of a battle with a vote (counted, or excluded and
kept for the record), pool images waiting for a battle, and anything newer than its limit.

A pruned job keeps its row (provenance, timings, the vote history) but loses its file, its
checksum and its cache key, so no later job reuses an image that is gone and the image URL
answers 404.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from arena.models import Battle, ChatImage
from generation.models import Generation

logger = logging.getLogger(__name__)

PRUNED_REASON = "unvoted past the retention limit; images deleted"
BATCH = 500


@dataclass(frozen=True)
class Pruned:
    """What one run deleted (or, in a dry run, would delete)."""

    battle_images: int
    chat_images: int
    battles_voided: int


def expired_battles(*, before: datetime) -> QuerySet[Battle]:
    """Battles without a vote created before ``before``: nobody will vote on them now."""
    return Battle.objects.filter(created_at__lt=before, vote__isnull=True)


def _battle_generations(battles: QuerySet[Battle]) -> QuerySet[Generation]:
    ids = battles.values_list("generation_left_id", "generation_right_id")
    flat = [pk for pair in ids for pk in pair]
    return Generation.objects.filter(pk__in=flat)


def _with_file(generations: QuerySet[Generation]) -> QuerySet[Generation]:
    return generations.exclude(image="").exclude(image_sha256="")


def _voted_generations() -> Q:
    """Jobs that are a side of a battle with a vote: never pruned."""
    return Q(battle_as_left__vote__isnull=False) | Q(battle_as_right__vote__isnull=False)


def prune_images(
    *, unvoted_after: timedelta, chat_after: timedelta, dry_run: bool = False
) -> Pruned:
    """Delete the files of expired unvoted battles and old chat images; returns the counts."""
    now = timezone.now()
    battles = expired_battles(before=now - unvoted_after)
    battle_jobs = _with_file(_battle_generations(battles)).exclude(_voted_generations())
    chat_ids = ChatImage.objects.filter(turn__created_at__lt=now - chat_after).values_list(
        "generation_id", flat=True
    )
    chat_jobs = _with_file(Generation.objects.filter(pk__in=chat_ids)).exclude(_voted_generations())
    if dry_run:
        return Pruned(
            battle_images=battle_jobs.count(),
            chat_images=chat_jobs.count(),
            battles_voided=battles.exclude(status=Battle.Status.VOID).count(),
        )
    with transaction.atomic():
        voided = battles.exclude(status=Battle.Status.VOID).update(
            status=Battle.Status.VOID, void_reason=PRUNED_REASON
        )
    return Pruned(
        battle_images=_delete_files(battle_jobs),
        chat_images=_delete_files(chat_jobs),
        battles_voided=voided,
    )


def _delete_files(generations: QuerySet[Generation]) -> int:
    """Forget each file in its row first, then delete it: a crash leaves a stray file at worst,
    never a row that points at nothing."""
    deleted = 0
    while batch := list(generations.order_by("pk")[:BATCH]):
        for generation in batch:
            name = str(generation.image.name)
            forgotten = Generation.objects.filter(pk=generation.pk, image=name).update(
                image_sha256="", cache_key=""
            )
            if forgotten:
                generation.image.storage.delete(name)
                deleted += 1
    logger.info("retention deleted %d image files", deleted)
    return deleted
