"""Aggregated vote counts that the ratings are computed from."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from generation.models import ImageModel


class PairCount(models.Model):
    """Votes between two models in one category, kept up to date by each vote.

    The pair is stored in a fixed order (lower primary key first), so one row holds both
    directions and a refresh reads these rows instead of scanning the votes.
    """

    category = models.CharField(max_length=30)
    # Named comparisons (direct chat) are counted apart and only feed the "all votes" board.
    anonymous = models.BooleanField(default=True)
    model_a = models.ForeignKey(ImageModel, on_delete=models.CASCADE, related_name="+")
    model_b = models.ForeignKey(ImageModel, on_delete=models.CASCADE, related_name="+")
    wins_a = models.PositiveIntegerField(default=0)
    wins_b = models.PositiveIntegerField(default=0)
    ties = models.PositiveIntegerField(default=0)
    both_bad = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["category", "anonymous", "model_a", "model_b"], name="unique_pair_count"
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


# StyleCount's difference columns: style.covariate_names() without the side, in that order.
STYLE_DIFFERENCES = (
    "aspect_portrait",
    "aspect_landscape",
    "resolution_small",
    "resolution_large",
    "time_medium",
    "time_slow",
)


class StyleCount(models.Model):
    """Live anonymous votes between two models, by side, whose images differed in style by one
    covariate difference, kept up to date by each vote like PairCount (leaderboard.style_counts).

    A row is one row of the style-controlled fit (style.StyledCounts): each difference column is
    the left image's covariate minus the right one's (-1, 0 or 1; style.covariate_names, the side
    left out: it is 1 on every row), so a refresh reads these rows and no vote.
    """

    model_left = models.ForeignKey(ImageModel, on_delete=models.CASCADE, related_name="+")
    model_right = models.ForeignKey(ImageModel, on_delete=models.CASCADE, related_name="+")
    aspect_portrait = models.SmallIntegerField()
    aspect_landscape = models.SmallIntegerField()
    resolution_small = models.SmallIntegerField()
    resolution_large = models.SmallIntegerField()
    time_medium = models.SmallIntegerField()
    time_slow = models.SmallIntegerField()
    wins_left = models.PositiveIntegerField(default=0)
    wins_right = models.PositiveIntegerField(default=0)
    ties = models.PositiveIntegerField(default=0)
    both_bad = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["model_left", "model_right", *STYLE_DIFFERENCES], name="unique_style_count"
            ),
            models.CheckConstraint(
                condition=~Q(model_left=F("model_right")), name="style_count_models_differ"
            ),
            *(
                models.CheckConstraint(
                    condition=Q(**{f"{name}__gte": -1, f"{name}__lte": 1}),
                    name=f"style_count_{name}_difference",
                )
                for name in STYLE_DIFFERENCES
            ),
        ]

    def __str__(self) -> str:
        return f"{self.model_left_id} (left) vs {self.model_right_id}"

    @property
    def total(self) -> int:
        return self.wins_left + self.wins_right + self.ties + self.both_bad


class OnlineElo(models.Model):
    """A model's online Elo rating, updated vote by vote (a comparison column only)."""

    model = models.OneToOneField(ImageModel, on_delete=models.CASCADE, related_name="online_elo")
    rating = models.FloatField()
    votes = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.model_id}: {self.rating:.1f}"


class OnlineEloCursor(models.Model):
    """How far online Elo has read the votes: one row, pk 1. Each refresh folds the votes with a
    larger id into OnlineElo, so a vote never locks a rating row."""

    last_vote_id = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(pk=1), name="online_elo_cursor_single_row"),
        ]

    def __str__(self) -> str:
        return f"online Elo read up to vote {self.last_vote_id}"


class SnapshotQuerySet(models.QuerySet["Snapshot"]):
    def latest_for(self, category: str = "", *, all_votes: bool = False) -> Snapshot | None:
        """The newest board for a category ("" is overall), for pages, API and exports."""
        boards = self.filter(category=category, all_votes=all_votes)
        return boards.order_by("-created_at", "-pk").first()


class Snapshot(models.Model):
    """One computed board: how it was computed, from how many votes, and when."""

    class IntervalMethod(models.TextChoices):
        SANDWICH = "sandwich"
        BOOTSTRAP = "bootstrap"

    category = models.CharField(max_length=30, blank=True, help_text="Empty for overall")
    all_votes = models.BooleanField(default=False, help_text="Named comparisons counted too")
    created_at = models.DateTimeField()
    method = models.CharField(max_length=40, default="bradley_terry")
    interval_method = models.CharField(max_length=20, choices=IntervalMethod.choices)
    bootstrap_rounds = models.PositiveIntegerField(default=0)
    seed = models.BigIntegerField(null=True, blank=True)
    # A bootstrap board either draws its rounds afresh from seed (resample_steps 0, reproducible
    # from the counts and the seed) or extends the rounds of the board it names, with seed driving
    # only the extension (ratings.bootstrap): every round is still an exact multinomial draw.
    resampled_from = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The board whose bootstrap rounds this one extended",
    )
    resample_steps = models.PositiveIntegerField(
        default=0, help_text="Extensions since the bootstrap rounds were last drawn afresh"
    )
    level = models.FloatField(default=0.95)
    votes_used = models.PositiveIntegerField()
    both_bad_as_tie = models.BooleanField(default=True)
    anchor = models.CharField(max_length=100, blank=True, help_text="Anchored model key, if any")
    components = models.PositiveIntegerField(default=1, help_text="Parts of the comparison graph")
    simultaneous = models.BooleanField(
        default=False, help_text="Intervals hold jointly (family-wise), not model by model"
    )
    # The rule a model had to meet to lose its "provisional" mark on this board.
    provisional_votes = models.PositiveIntegerField(default=0)
    provisional_half_width = models.FloatField(default=0.0)
    # The style-controlled fit: its votes and each covariate's coefficient with its interval.
    style = models.JSONField(default=dict, blank=True)
    # The tie model of the extra Davidson column (leaderboard.ties); "half" boards have none.
    tie_model = models.CharField(max_length=10, default="half")
    davidson_nu = models.FloatField(
        null=True, blank=True, help_text="Davidson's tie parameter; a tie between equals: nu/(2+nu)"
    )
    code_version = models.CharField(max_length=64, blank=True)
    compute_ms = models.FloatField(default=0.0)
    # Model ids in matrix order, and the win-rate, battle-count and predicted matrices.
    matrices = models.JSONField(default=dict)

    objects = SnapshotQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["category", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.category or 'overall'} at {self.created_at:%Y-%m-%d %H:%M:%S}"


class SnapshotRow(models.Model):
    """One model's line on a board."""

    snapshot = models.ForeignKey(Snapshot, on_delete=models.CASCADE, related_name="rows")
    model = models.ForeignKey(ImageModel, on_delete=models.PROTECT, related_name="+")

    class Bound(models.TextChoices):
        """Why an interval is open (leaderboard.bounds): the data bound the model on one side
        at most, so it has no rating, only a bound."""

        BOUNDED = "", "bounded"
        BELOW = "below", "never won or tied against the rest: only an upper bound"
        ABOVE = "above", "never lost or tied against the rest: only a lower bound"
        UNBOUNDED = "unbounded", "only ties, or never linked to decided battles: no bound"
        ANCHOR = "anchor", "the anchor: its rating is fixed, so it has no interval"

    rank = models.PositiveIntegerField(help_text="Rank (UB) within its group")
    # Null where the data cannot bound the model (see status); lower/upper are then -inf/+inf
    # on the open side.
    rating = models.FloatField(null=True, blank=True)
    lower = models.FloatField()
    upper = models.FloatField()
    status = models.CharField(max_length=10, choices=Bound.choices, blank=True, default="")
    rank_best = models.PositiveIntegerField(default=0, help_text="95% rank set, best end")
    rank_worst = models.PositiveIntegerField(default=0, help_text="95% rank set, worst end")
    votes_to_flip = models.PositiveIntegerField(
        null=True, blank=True, help_text="Fewest removed votes found that change its place"
    )
    controlled_rating = models.FloatField(
        null=True, blank=True, help_text="Rating with image style held equal (mean-centred)"
    )
    style_move = models.FloatField(
        null=True, blank=True, help_text="Style-controlled minus raw rating, both mean-centred"
    )
    davidson_rating = models.FloatField(
        null=True, blank=True, help_text="Rating under Davidson's tie model (mean-centred)"
    )
    votes = models.PositiveIntegerField()
    win_rate = models.FloatField()
    online_elo = models.FloatField(null=True, blank=True)
    provisional = models.BooleanField(default=False)
    component = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["rank", "-rating"]
        constraints = [
            models.UniqueConstraint(fields=["snapshot", "model"], name="unique_snapshot_model"),
        ]

    def __str__(self) -> str:
        shown = "open" if self.rating is None else f"{self.rating:.1f}"
        return f"#{self.rank} {self.model_id} {shown}"

    @property
    def minus(self) -> float | None:
        """Distance from the rating down to the interval's lower bound (None without one)."""
        return None if self.rating is None else self.rating - self.lower

    @property
    def plus(self) -> float | None:
        """Distance from the rating up to the interval's upper bound (None without one)."""
        return None if self.rating is None else self.upper - self.rating

    @property
    def is_open(self) -> bool:
        return self.status in {self.Bound.BELOW, self.Bound.ABOVE, self.Bound.UNBOUNDED}

    @property
    def half_width(self) -> float:
        return (self.upper - self.lower) / 2.0


class ImportedBattle(models.Model):
    """A vote from an existing log (FastChat's clean-battle layout) rather than from a battle
    played here; it has no images, only the two models, the outcome and where it came from."""

    class Winner(models.TextChoices):
        MODEL_A = "model_a"
        MODEL_B = "model_b"
        TIE = "tie"
        BOTH_BAD = "tie (bothbad)"

    source = models.CharField(max_length=300, help_text="File name the row came from")
    line = models.PositiveIntegerField()
    model_a = models.ForeignKey(ImageModel, on_delete=models.PROTECT, related_name="+")
    model_b = models.ForeignKey(ImageModel, on_delete=models.PROTECT, related_name="+")
    winner = models.CharField(max_length=16, choices=Winner.choices)
    tstamp = models.DateTimeField(null=True, blank=True)
    anonymous = models.BooleanField(default=True)
    category = models.CharField(max_length=30, blank=True)
    judge = models.CharField(max_length=200, blank=True)
    imported_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["tstamp"])]
        constraints = [
            models.CheckConstraint(
                condition=~Q(model_a=F("model_b")), name="imported_battle_models_differ"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.source}:{self.line}"


class TieModel(models.TextChoices):
    HALF = "half", "ties count as half a win (LMArena's scale)"
    DAVIDSON = "davidson", "also fit Davidson's tie model (its own scale)"


class BoardOptions(models.Model):
    """Switches an admin flips without a redeploy: one row, pk 1, made on first save."""

    publish_all_votes = models.BooleanField(
        default=False,
        help_text=(
            "Also compute and show a board that counts named comparisons from direct chat. "
            "The next refresh computes it; turning it off hides it at once."
        ),
    )
    tie_model = models.CharField(
        max_length=10,
        choices=TieModel.choices,
        default=TieModel.HALF,
        help_text=(
            "Davidson adds a column fitted with ties as their own outcome. The ratings, "
            "intervals and ranks stay ties-as-half, comparable with LMArena. The next refresh "
            "computes it."
        ),
    )
    changed_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = verbose_name_plural = "board options"
        constraints = [
            models.CheckConstraint(condition=Q(pk=1), name="board_options_single_row"),
        ]

    def __str__(self) -> str:
        return "Board options"

    @classmethod
    def all_votes_published(cls) -> bool:
        """Whether the all-votes board is on: the admin's switch, else LEADERBOARD_ALL_VOTES."""
        value = cls.objects.filter(pk=1).values_list("publish_all_votes", flat=True).first()
        return bool(settings.LEADERBOARD_ALL_VOTES) if value is None else value

    @classmethod
    def tie_model_in_use(cls) -> str:
        """The tie model the next refresh uses: the admin's choice, else "half"."""
        value = cls.objects.filter(pk=1).values_list("tie_model", flat=True).first()
        return value or TieModel.HALF
