"""Models that make images, and the jobs that make them."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone


class ImageModelQuerySet(models.QuerySet["ImageModel"]):
    def enabled(self) -> ImageModelQuerySet:
        """Models that may be drawn into new battles."""
        return self.filter(enabled=True)


class ImageModel(models.Model):
    """A text-to-image model as the registry file describes it; one row per key and version."""

    class Backend(models.TextChoices):
        DIFFUSERS = "diffusers", "diffusers pipeline"
        HTTP = "http", "HTTP endpoint"

    key = models.SlugField(max_length=100)
    version = models.CharField(max_length=100, default="1")
    display_name = models.CharField(max_length=200)
    organisation = models.CharField(max_length=200, blank=True)
    licence = models.CharField(max_length=200, blank=True)
    is_in_house = models.BooleanField(default=False)
    backend = models.CharField(max_length=20, choices=Backend.choices, default=Backend.DIFFUSERS)
    pipeline_class = models.CharField(max_length=100, blank=True)
    custom_pipeline = models.CharField(
        max_length=200, blank=True, help_text='In-house class, "package.module:ClassName"'
    )
    source = models.CharField(max_length=500, help_text="Local directory, hub id or URL")
    revision = models.CharField(max_length=100, blank=True)
    dtype = models.CharField(max_length=20, default="float32")
    default_steps = models.PositiveSmallIntegerField(default=4)
    default_guidance = models.FloatField(default=5.0)
    width = models.PositiveIntegerField(default=64)
    height = models.PositiveIntegerField(default=64)
    scheduler = models.CharField(max_length=100, blank=True)
    vae_tiling = models.BooleanField(default=False)
    # Recorded by sync_models: diffusers has an image-to-image twin of the pipeline class.
    can_refine = models.BooleanField(default=False)
    # Header name -> environment variable name. The values (secrets) live only in the workers'
    # environment, never in the database.
    http_header_env = models.JSONField(default=dict, blank=True)
    # Direct chat's bounds, from the registry entry.
    max_steps = models.PositiveSmallIntegerField(default=50)
    min_guidance = models.FloatField(default=0.0)
    max_guidance = models.FloatField(default=10.0)
    sizes = models.JSONField(default=list, blank=True, help_text='Allowed "WxH" sizes')
    queue = models.CharField(max_length=100, default="default")
    timeout_s = models.PositiveIntegerField(default=120)
    sampling_weight = models.FloatField(default=1.0)
    enabled = models.BooleanField(default=True)
    retired = models.BooleanField(default=False)
    disabled_reason = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ImageModelQuerySet.as_manager()

    class Meta:
        ordering = ["key", "version"]
        constraints = [
            models.UniqueConstraint(fields=["key", "version"], name="unique_model_key_version"),
            models.CheckConstraint(
                condition=Q(sampling_weight__gte=0), name="model_sampling_weight_non_negative"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.display_name} ({self.key}@{self.version})"

    def allowed_sizes(self) -> list[tuple[int, int]]:
        """The sizes direct chat offers: the registry's list, else the default size."""
        listed = [tuple(int(n) for n in size.split("x")) for size in self.sizes]
        return [(w, h) for w, h in listed] or [(self.width, self.height)]


class GenerationQuerySet(models.QuerySet["Generation"]):
    def unfinished(self) -> GenerationQuerySet:
        """Jobs a sweeper or a status page still has to wait for."""
        return self.filter(status__in=[Generation.Status.QUEUED, Generation.Status.RUNNING])


class Generation(models.Model):
    """One image job: what to make, who made it, how long it took, where the bytes are."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    class Purpose(models.TextChoices):
        """Who waits for the image; it decides the job's priority (battle first, pool last)."""

        BATTLE = "battle", "live battle"
        CHAT = "chat", "direct chat or compare"
        POOL = "pool", "pool refill or pregenerate"

    class FailureKind(models.TextChoices):
        """Why a job failed; only the model's own kinds count towards disabling it."""

        MODEL_ERROR = "model_error", "the model raised an error"
        TIMEOUT = "timeout", "the model ran past its time limit"
        ENQUEUE = "enqueue", "the broker refused the message"
        ATTEMPTS = "attempts", "out of attempts (workers died or messages were lost)"
        DEADLINE = "deadline", "its battle passed the deadline"
        RECORDING = "recording", "the result could not be stored"
        CONFIG = "config", "the deployment is misconfigured (e.g. a missing secret)"

    model = models.ForeignKey(ImageModel, on_delete=models.PROTECT, related_name="generations")
    prompt = models.TextField()
    negative_prompt = models.TextField(blank=True)
    seed = models.BigIntegerField()
    steps = models.PositiveSmallIntegerField()
    guidance = models.FloatField()
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    # The stored image's size; a battle gives both sides the same one.
    output_width = models.PositiveIntegerField()
    output_height = models.PositiveIntegerField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    purpose = models.CharField(max_length=10, choices=Purpose.choices, default=Purpose.BATTLE)
    steps_done = models.PositiveSmallIntegerField(default=0)
    attempts = models.PositiveSmallIntegerField(default=0)
    # The file's name is random: it must not tell which model made it.
    image = models.FileField(upload_to="images/", blank=True)
    image_sha256 = models.CharField(max_length=64, blank=True)
    # Provenance: what exactly made the image (copied at creation; the scheduler at run time).
    model_version = models.CharField(max_length=100, blank=True)
    scheduler = models.CharField(max_length=100, blank=True)
    # Same model, version, prompt, seed and settings: same key, so a finished image is reused.
    cache_key = models.CharField(max_length=64, blank=True, db_index=True)
    cached_from = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Image-to-image (direct chat's "refine"): the image to start from and how far to move.
    source_image = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    strength = models.FloatField(null=True, blank=True)
    error = models.TextField(blank=True, help_text="Internal detail; never shown to voters")
    failure_kind = models.CharField(max_length=20, choices=FailureKind.choices, blank=True)
    # The Celery task id of the delivery that claimed the job: a retry of that same delivery
    # (a database blip) may take the job back without waiting for the sweeper.
    claimed_by = models.CharField(max_length=64, blank=True)
    worker_host = models.CharField(max_length=200, blank=True)
    device = models.CharField(max_length=50, blank=True)
    # The device by name ("NVIDIA H100 80GB HBM3", the CPU's model): the board's speed column
    # says what its times were measured on. Empty where the backend does not say (HTTP).
    hardware = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # When the job was last sent to its queue; the sweeper measures lost messages from here.
    queued_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    queue_wait_ms = models.PositiveIntegerField(null=True, blank=True)
    compute_ms = models.PositiveIntegerField(null=True, blank=True)

    objects = GenerationQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "created_at"])]
        constraints = [
            models.CheckConstraint(condition=Q(steps__gte=1), name="generation_steps_positive"),
            models.CheckConstraint(
                condition=Q(steps_done__lte=models.F("steps")),
                name="generation_steps_done_within_steps",
            ),
            models.CheckConstraint(
                condition=Q(status="failed") | Q(failure_kind=""),
                name="generation_kind_only_when_failed",
            ),
        ]

    def __str__(self) -> str:
        return f"Generation {self.pk} ({self.status})"

    @property
    def finished(self) -> bool:
        return self.status in {self.Status.DONE, self.Status.FAILED}


# Model faults: a model whose last N finished jobs all ended in one of these is disabled.
MODEL_FAULTS = (Generation.FailureKind.MODEL_ERROR, Generation.FailureKind.TIMEOUT)


class WorkerHeartbeat(models.Model):
    """What one Celery worker (a node) reported last: its queues, and whether every pool child
    is alive and warm. Written every few seconds by the worker's parent process; readiness and
    matchmaking read it."""

    node = models.CharField(max_length=200, unique=True)
    queues = models.JSONField(default=list)
    warm_models = models.JSONField(default=list)
    children = models.PositiveSmallIntegerField(default=0)
    warm_children = models.PositiveSmallIntegerField(default=0)
    ready = models.BooleanField(default=False)
    seen_at = models.DateTimeField()
    # When this incarnation of the node started (its parent, before any child took a job): a
    # message reserved or a job claimed earlier on this node belonged to a process now gone.
    started_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["node"]

    def __str__(self) -> str:
        return f"{self.node} ({'ready' if self.ready else 'not ready'})"
