"""Prompts, battles and votes."""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import F, Q

from arena.categories import CATEGORIES, LABELS
from generation.models import Generation, ImageModel

# Prompt categories, read from arena/data/categories.toml, the one list of them.
Category = models.TextChoices(  # type: ignore[call-overload]  # the functional API
    "Category", [(name.upper(), (name, LABELS[name])) for name in CATEGORIES]
)


class PromptQuerySet(models.QuerySet["Prompt"]):
    def curated(self) -> PromptQuerySet:
        """Prompts a visitor may draw with the random-prompt button."""
        return self.filter(curated=True, active=True)


class Prompt(models.Model):
    """A prompt in the curated pool (typed prompts live on their battle)."""

    text = models.TextField(unique=True)
    category = models.CharField(max_length=30, choices=Category.choices)
    curated = models.BooleanField(default=True)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = PromptQuerySet.as_manager()

    class Meta:
        ordering = ["category", "pk"]

    def __str__(self) -> str:
        return self.text[:80]


class BattleQuerySet(models.QuerySet["Battle"]):
    def counted(self) -> BattleQuerySet:
        """Battles whose votes may count on the anonymous leaderboard."""
        return self.filter(anonymous=True, status=Battle.Status.VOTED)


class Battle(models.Model):
    """Two anonymous images for one prompt, left and right, and at most one vote."""

    class Status(models.TextChoices):
        GENERATING = "generating"
        READY = "ready"
        VOTED = "voted"
        VOID = "void"

    # The public id is random, so ids can be neither guessed nor counted.
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    prompt_text = models.TextField()
    prompt = models.ForeignKey(Prompt, null=True, blank=True, on_delete=models.SET_NULL)
    category = models.CharField(max_length=30, choices=Category.choices)
    model_left = models.ForeignKey(ImageModel, on_delete=models.PROTECT, related_name="+")
    model_right = models.ForeignKey(ImageModel, on_delete=models.PROTECT, related_name="+")
    generation_left = models.OneToOneField(
        Generation, on_delete=models.PROTECT, related_name="battle_as_left"
    )
    generation_right = models.OneToOneField(
        Generation, on_delete=models.PROTECT, related_name="battle_as_right"
    )
    seed = models.BigIntegerField()
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.GENERATING)
    anonymous = models.BooleanField(default=True)
    void_reason = models.CharField(max_length=200, blank=True, help_text="Internal; never shown")
    # Sides whose failed model was replaced by the reserve model (at most one each).
    replacements = models.PositiveSmallIntegerField(default=0)
    owner = models.CharField(max_length=64, help_text="Salted hash of the creating session")
    # An attention check (arena.gold): one model against a degraded copy of its own image on
    # this side; empty for an ordinary battle. Never shown before the vote.
    gold_side = models.CharField(
        max_length=5, blank=True, choices=[("left", "left"), ("right", "right")]
    )
    created_at = models.DateTimeField(auto_now_add=True)
    ready_at = models.DateTimeField(null=True, blank=True)
    # Made only when the voter asks to share the battle after voting (arena.sharing): the key
    # of its public read-only page, random and unguessable; None means not shared.
    share_token = models.CharField(max_length=64, null=True, blank=True, unique=True)
    # The reveal floor (arena.services.shown_at): a blind battle's images are shown, and it takes
    # a vote, no earlier than this, whenever its two jobs finished. Drawn at submit from a
    # cryptographic random source, the same way for every pair; empty: shown when ready.
    reveal_at = models.DateTimeField(null=True, blank=True)

    objects = BattleQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=~Q(model_left=F("model_right")) | ~Q(gold_side=""),
                name="battle_models_differ",
            ),
            models.CheckConstraint(
                condition=~Q(generation_left=F("generation_right")),
                name="battle_generations_differ",
            ),
        ]

    def __str__(self) -> str:
        return f"Battle {self.public_id} ({self.status})"


class Voter(models.Model):
    """One voter: a hashed session, the hashed address it started from, and an optional
    account; what the vote-integrity checks learn about them is kept here."""

    session = models.CharField(max_length=64, unique=True, help_text="Salted session hash")
    address = models.CharField(max_length=64, db_index=True, help_text="Salted address hash")
    user = models.ForeignKey(
        "auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # When this session solved the proof-of-work challenge (None: not yet).
    verified_at = models.DateTimeField(null=True, blank=True)
    flagged = models.BooleanField(default=False, db_index=True)
    flagged_at = models.DateTimeField(null=True, blank=True)
    # The anomaly scores and tests that flagged the voter, as the integrity task wrote them.
    evidence = models.JSONField(default=dict, blank=True)
    gold_passed = models.PositiveIntegerField(default=0)
    gold_failed = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Voter {self.session[:12]}"


class Vote(models.Model):
    """A visitor's verdict on one battle; the database allows one per battle.

    Every vote is stored; only votes in good standing (``standing`` empty) count on the boards.
    """

    class Choice(models.TextChoices):
        LEFT = "left", "A is better"
        RIGHT = "right", "B is better"
        TIE = "tie", "Tie"
        BOTH_BAD = "both_bad", "Both are bad"

    class Standing(models.TextChoices):
        COUNTED = "", "Counts"
        ADMIN = "admin", "Excluded by an admin"
        OVER_CAP_ADDRESS = "over_cap_address", "Over its address's daily cap"
        OVER_CAP_VOTER = "over_cap_voter", "Over its voter's daily cap"
        OVER_CAP_ACCOUNT = "over_cap_account", "Over its account's daily cap"
        VOTER_FLAGGED = "voter_flagged", "Voter flagged"
        FAILED_ATTENTION = "failed_attention", "Failed attention check"
        TOO_FAST = "too_fast", "Implausibly fast"
        GOLD = "gold", "Gold battle (attention check)"

    # One-to-one: the database's unique index allows one vote per battle, whatever races.
    battle = models.OneToOneField(Battle, on_delete=models.CASCADE, related_name="vote")
    choice = models.CharField(max_length=10, choices=Choice.choices)
    voter = models.CharField(max_length=64, help_text="Salted hash of the voting session")
    voter_record = models.ForeignKey(
        Voter, null=True, blank=True, on_delete=models.SET_NULL, related_name="votes"
    )
    address = models.CharField(max_length=64, blank=True, help_text="Salted address hash")
    ms_to_vote = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Excluded votes stay in the data (and in exports, with their standing) but not in the
    # counts. ``standing`` says why; ``excluded_reason`` holds an admin's note or the evidence.
    excluded = models.BooleanField(default=False)
    standing = models.CharField(max_length=20, choices=Standing.choices, blank=True, default="")
    excluded_reason = models.CharField(max_length=500, blank=True)
    excluded_by = models.CharField(max_length=150, blank=True)
    excluded_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(excluded=False, standing="") | (Q(excluded=True) & ~Q(standing="")),
                name="vote_excluded_has_a_standing",
            ),
        ]
        indexes = [models.Index(fields=["address", "created_at"], name="vote_address_time")]

    def __str__(self) -> str:
        return f"{self.choice} on {self.battle_id}"

    # Votes that can never count: restoring them changes nothing.
    NEVER_COUNTED = (Standing.GOLD, Standing.FAILED_ATTENTION)


class Conversation(models.Model):
    """Direct chat with named models: a browser session's (or a signed-in person's) history."""

    owner = models.CharField(max_length=64, db_index=True, help_text="Salted session identity")
    user = models.ForeignKey(
        "auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Conversation {self.pk}"


class ChatTurn(models.Model):
    """One submission in a conversation: a model, its settings, and 1 to 4 images."""

    class Kind(models.TextChoices):
        GENERATE = "generate"
        REFINE = "refine", "Refine (image to image)"

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="turns")
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.GENERATE)
    model = models.ForeignKey(ImageModel, on_delete=models.PROTECT, related_name="+")
    prompt = models.TextField()
    negative_prompt = models.TextField(blank=True)
    seed = models.BigIntegerField()
    steps = models.PositiveSmallIntegerField()
    guidance = models.FloatField()
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    count = models.PositiveSmallIntegerField(default=1)
    # Refine: the image this turn starts from, and how far it may move away from it.
    source = models.ForeignKey(
        Generation, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    strength = models.FloatField(null=True, blank=True)
    images = models.ManyToManyField(Generation, through="ChatImage", related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "pk"]
        constraints = [
            models.CheckConstraint(
                condition=Q(count__gte=1, count__lte=4), name="chat_turn_one_to_four_images"
            ),
        ]

    def __str__(self) -> str:
        return f"Turn {self.pk} ({self.model_id})"


class ChatImage(models.Model):
    """One image of a turn, in order; the n-th image uses the turn's seed plus n."""

    turn = models.ForeignKey(ChatTurn, on_delete=models.CASCADE, related_name="chat_images")
    generation = models.OneToOneField(Generation, on_delete=models.PROTECT, related_name="+")
    index = models.PositiveSmallIntegerField()

    class Meta:
        ordering = ["turn", "index"]
        constraints = [
            models.UniqueConstraint(fields=["turn", "index"], name="unique_chat_image_index"),
        ]

    def __str__(self) -> str:
        return f"Turn {self.turn_id} image {self.index}"


class PoolImageQuerySet(models.QuerySet["PoolImage"]):
    def unused(self) -> PoolImageQuerySet:
        """Images no battle has taken yet (made, or still being made)."""
        return self.filter(taken_at=None).exclude(generation__status=Generation.Status.FAILED)

    def servable(self) -> PoolImageQuerySet:
        """Unused, finished images whose model may still be drawn and whose prompt is live."""
        return self.filter(
            taken_at=None,
            generation__status=Generation.Status.DONE,
            model__enabled=True,
            model__retired=False,
            prompt__active=True,
            prompt__curated=True,
        )


class PoolImage(models.Model):
    """A pregenerated battle image for a curated prompt, made with a secret seed.

    A battle takes it once (``taken_at``) and its job becomes that battle's side; the battle's
    one-to-one sides make a second use impossible in the database too.
    """

    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="pool_images")
    model = models.ForeignKey(ImageModel, on_delete=models.PROTECT, related_name="+")
    generation = models.OneToOneField(
        Generation, on_delete=models.PROTECT, related_name="pool_image"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    taken_at = models.DateTimeField(null=True, blank=True)

    objects = PoolImageQuerySet.as_manager()

    class Meta:
        ordering = ["pk"]
        indexes = [
            models.Index(
                fields=["prompt", "model"],
                condition=Q(taken_at=None),
                name="pool_image_unused",
            )
        ]

    def __str__(self) -> str:
        return f"Pool image {self.pk} ({'taken' if self.taken_at else 'unused'})"


class BlockedTerm(models.Model):
    """A word or phrase that refuses a typed prompt (``arena.moderation``); edited in the
    admin, seeded from ``ARENA_BLOCKLIST`` by ``manage.py load_blocklist``."""

    term = models.CharField(max_length=200, unique=True, help_text="Matched as whole words")
    reason = models.CharField(max_length=40, default="blocklist", help_text="Counted by this")
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["term"]

    def __str__(self) -> str:
        return self.term


class PromptRefusal(models.Model):
    """How many typed prompts moderation refused, per UTC day and reason."""

    day = models.DateField()
    reason = models.CharField(max_length=40)
    count = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-day", "reason"]
        constraints = [
            models.UniqueConstraint(fields=["day", "reason"], name="unique_refusal_day_reason")
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.reason}: {self.count}"
