"""Aggregated vote counts that the ratings are computed from."""

from __future__ import annotations

from django.db import models
from django.db.models import F, Q

from generation.models import ImageModel


class PairCount(models.Model):
    """Votes between two models in one category, kept up to date by each vote.

    The pair is stored in a fixed order (lower primary key first), so one row holds both
    directions and a refresh reads these rows instead of scanning the votes.
    """

    category = models.CharField(max_length=30)
    model_a = models.ForeignKey(ImageModel, on_delete=models.CASCADE, related_name="+")
    model_b = models.ForeignKey(ImageModel, on_delete=models.CASCADE, related_name="+")
    wins_a = models.PositiveIntegerField(default=0)
    wins_b = models.PositiveIntegerField(default=0)
    ties = models.PositiveIntegerField(default=0)
    both_bad = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["category", "model_a", "model_b"], name="unique_pair_count"
            ),
            models.CheckConstraint(
                condition=Q(model_a__lt=F("model_b")), name="pair_count_ordered"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.model_a_id} vs {self.model_b_id} [{self.category}]"

    @property
    def total(self) -> int:
        return self.wins_a + self.wins_b + self.ties + self.both_bad
