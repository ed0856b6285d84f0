"""What a model's page shows besides its rating: sample images and its head-to-head record.

Samples come only from images already shown with the model's name: direct chat, named
comparisons, and anonymous battles after their vote (gold battles left out: one side is a
degraded copy). An image whose bytes also belong to a battle not yet voted on, or to a pool
image no battle has taken, is never a sample, whatever the row it came from: naming it would
name that battle's side (ARCHITECTURE.md, 5b).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Q, QuerySet

from arena.models import Battle, ChatImage, PoolImage
from generation.models import Generation, ImageModel
from leaderboard.models import PairCount

SAMPLES = 12


@dataclass(frozen=True)
class Sample:
    generation: Generation
    source: str  # "direct chat", "named comparison" or "battle"
    prompt: str

    @property
    def file_name(self) -> str:
        """The stored image's random file name, as the image address takes it."""
        return str(self.generation.image.name).rsplit("/", 1)[-1]


def hidden_generations() -> QuerySet[Generation]:
    """Images that must stay unnamed: sides of anonymous battles without a vote, and pool
    images no battle has taken yet."""
    unrevealed = Battle.objects.filter(anonymous=True).exclude(status=Battle.Status.VOTED)
    return Generation.objects.filter(
        Q(pk__in=unrevealed.values("generation_left_id"))
        | Q(pk__in=unrevealed.values("generation_right_id"))
        | Q(pk__in=PoolImage.objects.filter(taken_at=None).values("generation_id"))
    )


def samples(key: str, *, limit: int = SAMPLES) -> list[Sample]:
    """The newest images of the model (any version) already shown with its name."""
    revealed = Battle.objects.filter(
        Q(anonymous=False) | Q(status=Battle.Status.VOTED, gold_side="")
    )
    chat = ChatImage.objects.values("generation_id")
    hidden = hidden_generations().exclude(image_sha256="").values("image_sha256")
    rows = (
        Generation.objects.filter(model__key=key, status=Generation.Status.DONE)
        .exclude(image_sha256="")
        .exclude(image="")
        .filter(
            Q(pk__in=chat)
            | Q(pk__in=revealed.values("generation_left_id"))
            | Q(pk__in=revealed.values("generation_right_id"))
        )
        .exclude(pk__in=hidden_generations().values("pk"))
        .exclude(image_sha256__in=hidden)
        .order_by("-finished_at", "-pk")[:limit]
    )
    found = list(rows)
    chat_ids = set(
        ChatImage.objects.filter(generation__in=found).values_list("generation_id", flat=True)
    )
    named = set(
        Battle.objects.filter(anonymous=False)
        .filter(Q(generation_left__in=found) | Q(generation_right__in=found))
        .values_list("generation_left_id", "generation_right_id")
    )
    named_ids = {pk for pair in named for pk in pair}
    return [
        Sample(
            generation=g,
            source="direct chat"
            if g.pk in chat_ids
            else "named comparison"
            if g.pk in named_ids
            else "battle",
            prompt=g.prompt,
        )
        for g in found
    ]


@dataclass(frozen=True)
class HeadToHead:
    """The model's record against one opponent, in counted anonymous votes."""

    opponent: ImageModel  # the opponent's newest version, for its name and page
    wins: int
    losses: int
    ties: int
    both_bad: int

    @property
    def battles(self) -> int:
        return self.wins + self.losses + self.ties + self.both_bad

    @property
    def win_rate(self) -> float:
        """Share won, ties and "both bad" as half (the board's convention)."""
        return (self.wins + (self.ties + self.both_bad) / 2) / self.battles


def head_to_head(key: str) -> list[HeadToHead]:
    """Wins, losses and ties of the model (all versions) against each other model, summed
    over categories from the counts the anonymous board is computed from; most battles first."""
    rows = (
        PairCount.objects.filter(anonymous=True)
        .filter(Q(model_a__key=key) | Q(model_b__key=key))
        .exclude(model_a__key=key, model_b__key=key)
        .values_list(
            "model_a__key", "model_b__key", "wins_a", "wins_b", "ties", "both_bad", named=False
        )
    )
    totals: dict[str, list[int]] = {}
    for key_a, key_b, wins_a, wins_b, ties, both_bad in rows:
        mine_first = key_a == key
        opponent = key_b if mine_first else key_a
        wins, losses = (wins_a, wins_b) if mine_first else (wins_b, wins_a)
        total = totals.setdefault(opponent, [0, 0, 0, 0])
        for i, value in enumerate((wins, losses, ties, both_bad)):
            total[i] += value
    newest: dict[str, ImageModel] = {}
    for model in ImageModel.objects.filter(key__in=totals).order_by("created_at", "pk"):
        newest[model.key] = model
    records = [
        HeadToHead(opponent=newest[k], wins=t[0], losses=t[1], ties=t[2], both_bad=t[3])
        for k, t in totals.items()
        if sum(t) and k in newest
    ]
    return sorted(records, key=lambda r: (-r.battles, r.opponent.display_name))
