"""Image Arena settings.

One file for every deployment. Each value that changes between deployments comes from the
environment, with a default that runs on a laptop with nothing installed but Python: SQLite and
media under ``var/``, a Celery broker on the local file system, tiny models under ``var/models``.
A bad value stops the process at start with a message naming the variable.
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from csp.constants import NONCE
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str) -> str:
    """The variable's value; unset and empty both mean the default."""
    return os.environ.get(name) or default


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false), got {raw!r}")


def env_int(name: str, default: int, *, minimum: int = 0) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {value}")
    return value


def env_path(name: str, default: Path) -> Path:
    raw = os.environ.get(name)
    return Path(raw).expanduser().resolve() if raw else default


def database_from_url(url: str) -> dict[str, object]:
    """Translate ``sqlite:///path`` or ``postgres://user:pw@host:port/name`` to Django's form."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        # sqlite:///relative/path and sqlite:////absolute/path, as SQLAlchemy spells them.
        path = unquote(parts.path[1:] if parts.path.startswith("/") else parts.path)
        if not path:
            raise ImproperlyConfigured(f"DATABASE_URL {url!r} names no SQLite file")
        (BASE_DIR / path).parent.mkdir(parents=True, exist_ok=True)
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str((BASE_DIR / path).resolve()) if not Path(path).is_absolute() else path,
            # WAL lets the web server read while a worker writes progress; IMMEDIATE makes
            # a writing transaction take its lock at BEGIN, so two workers finishing the two
            # sides of a battle at once queue up instead of failing with "database is locked".
            "OPTIONS": {
                "timeout": 30,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
            # A file (not memory), so worker processes started by tests share it; one per
            # test process, so two test runs never share one.
            "TEST": {"NAME": str(VAR_DIR / f"test-{os.getpid()}.sqlite3")},
        }
    if parts.scheme in {"postgres", "postgresql", "pgsql"}:
        query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        # Server-side prepared statements for the vote path's fixed statements only (the rest of
        # the ORM binds on the client, which never prepares); off for a pooler in transaction
        # mode that cannot keep them (PgBouncer before 1.21).
        options: dict[str, object] = {
            "prepare_threshold": 5 if env_bool("DATABASE_PREPARED_STATEMENTS", True) else None
        }
        if "sslmode" in query:
            options["sslmode"] = query["sslmode"]
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": unquote(parts.path.lstrip("/")) or "postgres",
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname or "",
            "PORT": str(parts.port or ""),
            "CONN_MAX_AGE": env_int("DATABASE_CONN_MAX_AGE", 60),
            "CONN_HEALTH_CHECKS": True,
            "OPTIONS": options,
        }
    raise ImproperlyConfigured(
        f"DATABASE_URL must start with sqlite:// or postgres://, got {parts.scheme!r}"
    )


VAR_DIR = env_path("ARENA_VAR_DIR", BASE_DIR / "var")

DEBUG = env_bool("DEBUG", True)
SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off")
    SECRET_KEY = "insecure-local-development-key-do-not-deploy"  # noqa: S105
ALLOWED_HOSTS = [h.strip() for h in env_str("ALLOWED_HOSTS", "127.0.0.1,localhost").split(",") if h]
CSRF_TRUSTED_ORIGINS = [
    o.strip() for o in env_str("CSRF_TRUSTED_ORIGINS", "").split(",") if o.strip()
]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_prometheus",
    "axes",
    "generation",
    "leaderboard",
    "arena",
]

MIDDLEWARE = [
    # Outermost: a lost database, broker or cache connection answers 503, never 500.
    "arena.outages.ServiceUnavailableMiddleware",
    # Request metrics: the Before middleware first and the After one last, so they time it all.
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "arena.metrics.MetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    # /healthz and /readyz answer any Host (probes send the pod's address); before CommonMiddleware.
    "arena.health.ProbeMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "arena.limits.RateLimitMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it answers a locked-out login attempt.
    "axes.middleware.AxesMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "arena.urls"
WSGI_APPLICATION = "arena.wsgi.application"
ASGI_APPLICATION = "arena.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "arena.captcha.context",
            ],
        },
    },
]

DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'arena.sqlite3'}")
DATABASES = {"default": database_from_url(DATABASE_URL)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_str("REDIS_URL", "")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            # A dead Redis must cost a request a fraction of a second, not a hang: the rate
            # limits fail open (arena.limits).
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = env_path("STATIC_ROOT", VAR_DIR / "static")
MEDIA_ROOT = env_path("MEDIA_ROOT", VAR_DIR / "media")
# Images are served by arena.views.image under random names; MEDIA_URL is never exposed.
MEDIA_URL = "/media-internal/"
# Generated images on an S3-compatible store (django-storages) when a bucket is named, else on
# local disk under MEDIA_ROOT. Credentials come from boto3's usual AWS_ACCESS_KEY_ID and
# AWS_SECRET_ACCESS_KEY. Path-style addressing keeps one URL shape for every store, which the
# proxy's internal location relies on (deploy/README.md, "Media").
ARENA_MEDIA_S3_BUCKET = env_str("ARENA_MEDIA_S3_BUCKET", "")
STORAGES: dict[str, dict[str, object]] = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}


def s3_media_storage(*, bucket: str, endpoint_url: str, region: str) -> dict[str, object]:
    """django-storages' S3 backend for generated images: private objects, signed URLs."""
    return {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": bucket,
            "endpoint_url": endpoint_url or None,
            "region_name": region or None,
            "addressing_style": "path",
            "signature_version": "s3v4",
            # Private objects, reached only through signed URLs that the proxy fetches.
            "default_acl": None,
            "querystring_auth": True,
            "querystring_expire": 60,
            "file_overwrite": False,
        },
    }


if ARENA_MEDIA_S3_BUCKET:
    STORAGES["default"] = s3_media_storage(
        bucket=ARENA_MEDIA_S3_BUCKET,
        endpoint_url=env_str("ARENA_MEDIA_S3_ENDPOINT_URL", ""),
        region=env_str("ARENA_MEDIA_S3_REGION", ""),
    )
# How image bytes reach the browser: "django" streams them from the web process (the default,
# no proxy needed); "accel" answers with X-Accel-Redirect and the proxy sends the bytes, from
# MEDIA_ROOT or, with a bucket, from the store through a signed URL (deploy/README.md).
ARENA_MEDIA_SERVE = env_str("ARENA_MEDIA_SERVE", "django")
if ARENA_MEDIA_SERVE not in {"django", "accel"}:
    raise ImproperlyConfigured(
        f"ARENA_MEDIA_SERVE must be django or accel, got {ARENA_MEDIA_SERVE!r}"
    )

# Django's database sessions, read with a fixed (prepared) statement: arena/sessions.py.
SESSION_ENGINE = "arena.sessions"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SECURE_CONTENT_TYPE_NOSNIFF = True
# Behind a TLS-terminating proxy that sets X-Forwarded-Proto (see deploy/README.md).
if env_bool("ARENA_BEHIND_TLS_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
X_FRAME_OPTIONS = "DENY"
# HSTS and the HTTP-to-HTTPS redirect (deploy/README.md, "Production settings"). The probes and
# the metrics are exempt from the redirect: kubelets and Prometheus talk plain HTTP to the pod.
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]

# Content-Security-Policy (django-csp), on by default so every test and browser run sees it.
# Scripts: our own files plus the one-line inline script of base.html, which carries the
# request's nonce. Styles: our own file only (htmx's injected indicator style is switched off
# in base.html's htmx-config). Images, fetches and forms: this origin only.
ARENA_CSP = env_bool("ARENA_CSP", True)
ARENA_CSP_REPORT_URI = env_str("ARENA_CSP_REPORT_URI", "")
_csp_directives: dict[str, object] = {
    "default-src": ["'self'"],
    "script-src": ["'self'", NONCE],
    "style-src": ["'self'"],
    "img-src": ["'self'", "data:"],
    "connect-src": ["'self'"],
    "form-action": ["'self'"],
    "frame-ancestors": ["'none'"],
    "base-uri": ["'self'"],
    "object-src": ["'none'"],
}
if ARENA_CSP_REPORT_URI:
    _csp_directives["report-uri"] = ARENA_CSP_REPORT_URI
CONTENT_SECURITY_POLICY = {"DIRECTIVES": _csp_directives} if ARENA_CSP else None

# --- Celery -------------------------------------------------------------------------------
# The default broker is a file-system transport: no server to install, and a real worker
# process still consumes from it. kombu's own one reads message files that are still being
# written, so filesystem:// runs on arena.broker's, whose every write and claim is an atomic
# rename (see its docstring). Production points this at Redis.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://")
_broker_dir = VAR_DIR / "broker"
if CELERY_BROKER_URL.startswith("filesystem://"):
    CELERY_BROKER_TRANSPORT = "arena.broker:Transport"
    # A host name, so kombu does not warn at every connection that none was given.
    CELERY_BROKER_URL = "filesystem://localhost/"
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        # A reader renames a message here to take it: same file system as the queue folder.
        "claim_folder": str(_broker_dir / "claimed"),
        # Exchange bindings; kombu's default is a "control" folder in the working directory.
        "control_folder": str(_broker_dir / "control"),
        "polling_interval": 0.05,
    }
else:
    # A killed worker's unacknowledged task comes back after this many seconds; every
    # task's hard time limit stays below it (checked by a test).
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 3600, minimum=60),
        # One Redis list per step; a worker pops the lowest step first, whatever the queue
        # (generation.jobs.PRIORITY: battle 0, chat 3, pool 9).
        "priority_steps": [0, 3, 6, 9],
        "queue_order_strategy": "priority",
    }
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_TIMEOUT = 3
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 2,
    "interval_start": 0,
    "interval_step": 0.5,
    "interval_max": 1,
}
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Celery's prefork pool, with a lock that dies with a killed child (generation.worker).
CELERY_WORKER_POOL = "generation.worker:TaskPool"
# A replacement pool child must load its models before Celery gives up on it (default 4 s).
CELERY_WORKER_PROC_ALIVE_TIMEOUT = float(env_int("ARENA_WORKER_WARM_TIMEOUT_S", 600, minimum=5))
CELERY_TASK_DEFAULT_QUEUE = "default"
# Leaderboard refreshes have a queue of their own, served by one process: that process keeps the
# bootstrap rounds of each board between refreshes and extends them (leaderboard.services).
LEADERBOARD_QUEUE = env_str("LEADERBOARD_QUEUE", "leaderboard")
CELERY_TASK_ROUTES = {"leaderboard.tasks.refresh": {"queue": LEADERBOARD_QUEUE}}
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]

# --- Arena --------------------------------------------------------------------------------
MODELS_DIR = env_path("ARENA_MODELS_DIR", VAR_DIR / "models")
MODEL_REGISTRY = env_path("ARENA_MODEL_REGISTRY", BASE_DIR / "deploy" / "models.tiny.toml")
PROMPT_POOL = env_path("ARENA_PROMPT_POOL", BASE_DIR / "arena" / "data" / "prompts.toml")
ARENA_MAX_PROMPT_CHARS = env_int("ARENA_MAX_PROMPT_CHARS", 1000, minimum=1)
# A battle still generating after this many seconds is voided: it covers a dead worker or a
# lost message, which the job's own time limit cannot see.
ARENA_BATTLE_DEADLINE_S = env_int("ARENA_BATTLE_DEADLINE_S", 300, minimum=5)
# Jobs: a sweeper re-queues jobs stuck in queued or running past their deadline, and fails them
# after this many attempts; a model whose jobs fail this many times in a row is disabled.
ARENA_SWEEP_S = env_int("ARENA_SWEEP_S", 10, minimum=1)
# A queued job whose message has been absent from the broker this long was lost (a broker
# restart without persistence, a purge): the sweeper sends it again.
ARENA_LOST_MESSAGE_S = env_int("ARENA_LOST_MESSAGE_S", 10, minimum=1)
# Each worker records every this many seconds whether all its children are alive and warm;
# a record three times older counts as a dead worker.
ARENA_WORKER_HEARTBEAT_S = env_int("ARENA_WORKER_HEARTBEAT_S", 5, minimum=1)
# Matchmaking draws only models whose queue has a live, warm worker (off: any enabled model),
# and whose expected wait for a battle job is at most this many seconds (0: no limit).
ARENA_MATCH_LIVE_WORKERS = env_bool("ARENA_MATCH_LIVE_WORKERS", True)
ARENA_MAX_EXPECTED_WAIT_S = env_int("ARENA_MAX_EXPECTED_WAIT_S", 60)
# Active sampling (leaderboard.policy, published at /leaderboard/policy/ and in the API): a
# model with fewer than ARENA_NEW_MODEL_VOTES votes on the overall board has its weight
# multiplied by ARENA_NEW_MODEL_BOOST (1: no boost), and a share ARENA_UNCERTAINTY_SHARE of
# battles goes to neighbouring ranks, where one more battle most shrinks their interval.
try:
    ARENA_NEW_MODEL_BOOST = float(env_str("ARENA_NEW_MODEL_BOOST", "2"))
    ARENA_UNCERTAINTY_SHARE = float(env_str("ARENA_UNCERTAINTY_SHARE", "0.2"))
except ValueError as error:
    raise ImproperlyConfigured(f"active sampling settings must be numbers: {error}") from None
if not 1.0 <= ARENA_NEW_MODEL_BOOST <= 100.0:
    raise ImproperlyConfigured("ARENA_NEW_MODEL_BOOST must lie between 1 and 100")
if not 0.0 <= ARENA_UNCERTAINTY_SHARE <= 1.0:
    raise ImproperlyConfigured("ARENA_UNCERTAINTY_SHARE must lie between 0 and 1")
ARENA_NEW_MODEL_VOTES = env_int("ARENA_NEW_MODEL_VOTES", 300)
ARENA_MAX_ATTEMPTS = env_int("ARENA_MAX_ATTEMPTS", 3, minimum=1)
ARENA_DISABLE_AFTER_FAILURES = env_int("ARENA_DISABLE_AFTER_FAILURES", 5, minimum=1)
# Slack beyond a model's time limit before its job counts as stuck (the worker died).
ARENA_CLAIM_GRACE_S = env_int("ARENA_CLAIM_GRACE_S", 30, minimum=0)
# A model key that stands in for a side whose model failed; empty voids such battles.
ARENA_RESERVE_MODEL = env_str("ARENA_RESERVE_MODEL", "")
# The pool of single-use battle images (arena.pool): unused images kept per curated prompt and
# enabled model, how often beat tops it up (each finished pool image also tops it up), and how
# many pool jobs may be queued or running per model queue. With 1 and two or more processes on a
# queue, a live battle job always finds a process that is not making a pool image.
ARENA_POOL_SIZE = env_int("ARENA_POOL_SIZE", 2, minimum=0)
ARENA_POOL_REFILL_S = env_int("ARENA_POOL_REFILL_S", 30, minimum=1)
ARENA_POOL_REFILL_PENDING = env_int("ARENA_POOL_REFILL_PENDING", 1, minimum=1)
# Request limits (arena.limits): token buckets shared by every web process through the cache.
# Each scope takes rules "who=count/seconds", comma-separated; "who" is session, address or
# account (a signed-in user), and one who may have several rules (a burst and a daily budget).
# An empty value turns a scope's limits off.
ARENA_LIMIT_SESSIONS = env_str("ARENA_LIMIT_SESSIONS", "address=30/600")
ARENA_LIMIT_BATTLES = env_str("ARENA_LIMIT_BATTLES", "session=30/60,address=120/60,account=60/60")
ARENA_LIMIT_VOTES = env_str("ARENA_LIMIT_VOTES", "session=30/60,address=120/60,account=60/60")
ARENA_LIMIT_CHAT = env_str("ARENA_LIMIT_CHAT", "session=30/60,address=120/60,account=60/60")
for _name in (
    "ARENA_LIMIT_SESSIONS",
    "ARENA_LIMIT_BATTLES",
    "ARENA_LIMIT_VOTES",
    "ARENA_LIMIT_CHAT",
):
    for _rule in filter(None, (r.strip() for r in globals()[_name].split(","))):
        if not re.fullmatch(r"(session|address|account)=[1-9][0-9]*/[1-9][0-9]*", _rule):
            raise ImproperlyConfigured(
                f"{_name} must look like session=30/60,address=120/60 "
                f"(who=count/seconds), got {_rule!r}"
            )
# Reverse proxies whose X-Forwarded-For is believed: addresses or networks, comma-separated
# (e.g. 127.0.0.1,::1 for nginx on the same host). Empty: the client is REMOTE_ADDR.
ARENA_TRUSTED_PROXIES = [
    p.strip() for p in env_str("ARENA_TRUSTED_PROXIES", "").split(",") if p.strip()
]
for _proxy in ARENA_TRUSTED_PROXIES:
    try:
        ipaddress.ip_network(_proxy, strict=False)
    except ValueError:
        raise ImproperlyConfigured(
            f"ARENA_TRUSTED_PROXIES: {_proxy!r} is not an address or network"
        ) from None
# The reveal floor: a live blind battle's images are shown (and it takes a vote) no sooner than
# ARENA_REVEAL_MIN_MS after submit plus a uniform jitter of up to ARENA_REVEAL_JITTER_MS, drawn
# from a cryptographic random source; one finished later is shown at the next whole
# ARENA_REVEAL_STEP_MS past that floor. Set the floor above the slowest model's usual battle time:
# then when the images appear says nothing about which models made them. Pool battles are ready
# at submit for every pair and are shown at once. 0 and 0: shown as soon as both are done.
ARENA_REVEAL_MIN_MS = env_int("ARENA_REVEAL_MIN_MS", 3000)
ARENA_REVEAL_JITTER_MS = env_int("ARENA_REVEAL_JITTER_MS", 1000)
ARENA_REVEAL_STEP_MS = env_int("ARENA_REVEAL_STEP_MS", 1000)
# Votes that count: a vote sooner than this after its images were ready does not count.
ARENA_MIN_MS_TO_VOTE = env_int("ARENA_MIN_MS_TO_VOTE", 1000)
# Counted votes per UTC day; later votes are stored but do not count (0: no cap).
ARENA_DAILY_CAP_VOTER = env_int("ARENA_DAILY_CAP_VOTER", 100)
ARENA_DAILY_CAP_ADDRESS = env_int("ARENA_DAILY_CAP_ADDRESS", 300)
ARENA_DAILY_CAP_ACCOUNT = env_int("ARENA_DAILY_CAP_ACCOUNT", 200)
# Proof of work (ALTCHA, self-hosted) that a new session solves before its first battle:
# about ARENA_CHALLENGE_MAX_NUMBER / 2 SHA-256 hashes on average; 0 turns the check off.
ARENA_CHALLENGE_MAX_NUMBER = env_int("ARENA_CHALLENGE_MAX_NUMBER", 100_000)
ARENA_CHALLENGE_TTL_S = env_int("ARENA_CHALLENGE_TTL_S", 600, minimum=10)
# Anomaly detection (arena.integrity), every ARENA_INTEGRITY_SCAN_S on beat, over the last
# ARENA_INTEGRITY_WINDOW_H hours: the preference test's false-positive rate per voter or
# address, and the thresholds of the other signals.
ARENA_INTEGRITY_SCAN_S = env_int("ARENA_INTEGRITY_SCAN_S", 300, minimum=10)
ARENA_INTEGRITY_WINDOW_H = env_int("ARENA_INTEGRITY_WINDOW_H", 168, minimum=1)
try:
    ARENA_INTEGRITY_ALPHA = float(env_str("ARENA_INTEGRITY_ALPHA", "0.001"))
except ValueError:
    raise ImproperlyConfigured("ARENA_INTEGRITY_ALPHA must be a number") from None
if not 0 < ARENA_INTEGRITY_ALPHA < 1:
    raise ImproperlyConfigured("ARENA_INTEGRITY_ALPHA must be between 0 and 1")
ARENA_INTEGRITY_BURST = env_int("ARENA_INTEGRITY_BURST", 30, minimum=1)
ARENA_INTEGRITY_FAST_MS = env_int("ARENA_INTEGRITY_FAST_MS", 1500)
ARENA_INTEGRITY_ONE_VOTE_SESSIONS = env_int("ARENA_INTEGRITY_ONE_VOTE_SESSIONS", 20, minimum=2)
# Prompt moderation: the blocklist file `manage.py load_blocklist` loads (then edited in the
# admin), and an optional classifier: a dotted path to a callable(prompt) -> reason or None.
ARENA_BLOCKLIST = env_path("ARENA_BLOCKLIST", BASE_DIR / "arena" / "data" / "blocklist.txt")
ARENA_PROMPT_CLASSIFIER = env_str("ARENA_PROMPT_CLASSIFIER", "")
# Share of battles that are attention checks (arena.gold): a model against a degraded copy.
try:
    ARENA_GOLD_RATE = float(env_str("ARENA_GOLD_RATE", "0.05"))
except ValueError:
    raise ImproperlyConfigured("ARENA_GOLD_RATE must be a number") from None
if not 0 <= ARENA_GOLD_RATE <= 1:
    raise ImproperlyConfigured("ARENA_GOLD_RATE must be between 0 and 1")
# The admin lives under this prefix (keep it unguessable in production).
ADMIN_URL = env_str("ADMIN_URL", "admin/").strip("/") + "/"
# The admin login locks out (django-axes) after this many failed attempts from one client
# address or for one user name, for ADMIN_LOCKOUT_HOURS; `manage.py axes_reset` lifts it.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("ADMIN_LOCKOUT_FAILURES", 5, minimum=1)
AXES_COOLOFF_TIME = env_int("ADMIN_LOCKOUT_HOURS", 1, minimum=1)
AXES_LOCKOUT_PARAMETERS = ["ip_address", "username"]
AXES_CLIENT_IP_CALLABLE = "arena.limits.login_address"
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False
# Optional sign-in (django-allauth): ARENA_ACCOUNTS=1 turns it on at /accounts/;
# ARENA_SOCIAL_PROVIDERS lists allauth provider ids (e.g. github,google), each configured by
# ARENA_<ID>_CLIENT_ID and ARENA_<ID>_SECRET. ARENA_REQUIRE_SIGN_IN=1 lets only signed-in
# people vote (and needs ARENA_ACCOUNTS).
ARENA_ACCOUNTS = env_bool("ARENA_ACCOUNTS", False)
ARENA_SOCIAL_PROVIDERS = [
    p.strip() for p in env_str("ARENA_SOCIAL_PROVIDERS", "").split(",") if p.strip()
]
ARENA_REQUIRE_SIGN_IN = env_bool("ARENA_REQUIRE_SIGN_IN", False)
if (ARENA_REQUIRE_SIGN_IN or ARENA_SOCIAL_PROVIDERS) and not ARENA_ACCOUNTS:
    raise ImproperlyConfigured(
        "ARENA_REQUIRE_SIGN_IN and ARENA_SOCIAL_PROVIDERS need ARENA_ACCOUNTS=1"
    )
if ARENA_ACCOUNTS:
    INSTALLED_APPS += [
        "allauth",
        "allauth.account",
        "allauth.socialaccount",
        *(f"allauth.socialaccount.providers.{p}" for p in ARENA_SOCIAL_PROVIDERS),
    ]
    MIDDLEWARE.insert(
        MIDDLEWARE.index("axes.middleware.AxesMiddleware"),
        "allauth.account.middleware.AccountMiddleware",
    )
    AUTHENTICATION_BACKENDS.append("allauth.account.auth_backends.AuthenticationBackend")
    SOCIALACCOUNT_PROVIDERS = {
        p: {
            "APP": {
                "client_id": env_str(f"ARENA_{p.upper()}_CLIENT_ID", ""),
                "secret": env_str(f"ARENA_{p.upper()}_SECRET", ""),
            }
        }
        for p in ARENA_SOCIAL_PROVIDERS
    }
    ACCOUNT_LOGIN_METHODS = {"email"}
    ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
    ACCOUNT_EMAIL_VERIFICATION = env_str("ARENA_ACCOUNT_EMAIL_VERIFICATION", "mandatory")
    LOGIN_REDIRECT_URL = "/"
    # Outgoing mail for account e-mails; the console backend prints them.
    EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
# Optional Cloudflare Turnstile or hCaptcha (arena.captcha) in place of the proof of work:
# "turnstile" or "hcaptcha", with the provider's site key and secret.
ARENA_CAPTCHA = env_str("ARENA_CAPTCHA", "")
if ARENA_CAPTCHA not in {"", "turnstile", "hcaptcha"}:
    raise ImproperlyConfigured("ARENA_CAPTCHA must be empty, turnstile or hcaptcha")
ARENA_CAPTCHA_SITE_KEY = env_str("ARENA_CAPTCHA_SITE_KEY", "")
ARENA_CAPTCHA_SECRET = env_str("ARENA_CAPTCHA_SECRET", "")
if ARENA_CAPTCHA and not (ARENA_CAPTCHA_SITE_KEY and ARENA_CAPTCHA_SECRET):
    raise ImproperlyConfigured(
        "ARENA_CAPTCHA needs ARENA_CAPTCHA_SITE_KEY and ARENA_CAPTCHA_SECRET"
    )
# Where tokens are checked; empty: the provider's own siteverify address.
ARENA_CAPTCHA_VERIFY_URL = env_str("ARENA_CAPTCHA_VERIFY_URL", "")
# Salt for the hashed voter identity kept with each vote.
ARENA_VOTER_SALT = env_str("ARENA_VOTER_SALT", SECRET_KEY)
# Retention (arena.retention, the prune_images command, and daily on beat when on): unvoted
# battles and direct-chat images older than these many days lose their image files; images
# behind a vote are always kept. 0 keeps everything (no scheduled pruning).
ARENA_RETENTION_UNVOTED_DAYS = env_int("ARENA_RETENTION_UNVOTED_DAYS", 0)
ARENA_RETENTION_CHAT_DAYS = env_int("ARENA_RETENTION_CHAT_DAYS", 0)
# Prometheus (arena.metrics): with DEBUG off, /metrics answers only a scraper that sends this
# token as "Authorization: Bearer ..." (it names models, so a visitor must never read it).
ARENA_METRICS_TOKEN = env_str("ARENA_METRICS_TOKEN", "")
PROMETHEUS_EXPORT_MIGRATIONS = False
# Exactly one beat: the scheduler holds a lock in Redis (REDIS_URL) and renews it; a second beat
# logs that it stands by and idles until the lock expires (arena.beat).
CELERY_BEAT_SCHEDULER = "arena.beat:LockedScheduler"
ARENA_BEAT_LOCK_TTL_S = env_int("ARENA_BEAT_LOCK_TTL_S", 30, minimum=3)
ARENA_BEAT_LOCK_KEY = env_str("ARENA_BEAT_LOCK_KEY", "arena:beat-lock")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.server": {"level": "WARNING"}},
}
CSRF_FAILURE_VIEW = "arena.views.csrf_failure"

# --- Leaderboard --------------------------------------------------------------------------
LEADERBOARD_REFRESH_S = env_int("LEADERBOARD_REFRESH_S", 60, minimum=1)
# "sandwich" (robust, LMArena's default) or "bootstrap" (multinomial over the counts).
LEADERBOARD_INTERVALS = env_str("LEADERBOARD_INTERVALS", "sandwich")
if LEADERBOARD_INTERVALS not in {"sandwich", "bootstrap"}:
    raise ImproperlyConfigured("LEADERBOARD_INTERVALS must be sandwich or bootstrap")
LEADERBOARD_BOOTSTRAP_ROUNDS = env_int("LEADERBOARD_BOOTSTRAP_ROUNDS", 1000, minimum=10)
# Threads that draw bootstrap rounds afresh (a board's first refresh in a process); the draws do
# not depend on the number.
LEADERBOARD_BOOTSTRAP_THREADS = env_int(
    "LEADERBOARD_BOOTSTRAP_THREADS", min(4, os.cpu_count() or 1), minimum=1
)
# "Both are bad" is kept apart in the data; by default the ratings count it as a tie.
LEADERBOARD_BOTH_BAD_AS_TIE = env_bool("LEADERBOARD_BOTH_BAD_AS_TIE", True)
# Overall: models with fewer votes are marked provisional. Categories: they are hidden.
LEADERBOARD_PROVISIONAL_VOTES = env_int("LEADERBOARD_PROVISIONAL_VOTES", 500)
# Overall: a model stays provisional until its interval's half-width is at most this many
# points too (evidence, not only a count).
try:
    LEADERBOARD_PROVISIONAL_HALF_WIDTH = float(env_str("LEADERBOARD_PROVISIONAL_HALF_WIDTH", "30"))
except ValueError:
    LEADERBOARD_PROVISIONAL_HALF_WIDTH = float("nan")
if not LEADERBOARD_PROVISIONAL_HALF_WIDTH > 0:
    raise ImproperlyConfigured("LEADERBOARD_PROVISIONAL_HALF_WIDTH must be a positive number")
# Family-wise intervals: all of a board's intervals hold together with 95% probability.
LEADERBOARD_SIMULTANEOUS = env_bool("LEADERBOARD_SIMULTANEOUS", False)
LEADERBOARD_CATEGORY_MIN_VOTES = env_int("LEADERBOARD_CATEGORY_MIN_VOTES", 300)
# A model key to pin at LEADERBOARD_ANCHOR_RATING; empty centres the board on the mean.
LEADERBOARD_ANCHOR = env_str("LEADERBOARD_ANCHOR", "")
LEADERBOARD_ANCHOR_RATING = float(env_str("LEADERBOARD_ANCHOR_RATING", "1000"))
LEADERBOARD_ELO_K = float(env_str("LEADERBOARD_ELO_K", "4"))
# Also publish an "all votes" board that counts named comparisons from direct chat (GenAI-Arena
# publishes both); off by default, so the anonymous board is the only one shown.
LEADERBOARD_ALL_VOTES = env_bool("LEADERBOARD_ALL_VOTES", False)

CELERY_BEAT_SCHEDULE = {
    "sweep-generations": {
        "task": "generation.tasks.sweep",
        "schedule": float(ARENA_SWEEP_S),
        "options": {"expires": float(ARENA_SWEEP_S)},
    },
    "refill-pool": {
        "task": "arena.tasks.refill_pool",
        "schedule": float(ARENA_POOL_REFILL_S),
        "options": {"expires": float(ARENA_POOL_REFILL_S)},
    },
    "scan-votes": {
        "task": "arena.tasks.scan_votes",
        "schedule": float(ARENA_INTEGRITY_SCAN_S),
        "options": {"expires": float(ARENA_INTEGRITY_SCAN_S)},
    },
    "refresh-leaderboard": {
        "task": "leaderboard.tasks.refresh",
        "schedule": float(LEADERBOARD_REFRESH_S),
        "options": {"expires": float(LEADERBOARD_REFRESH_S)},
    },
}
if ARENA_RETENTION_UNVOTED_DAYS and ARENA_RETENTION_CHAT_DAYS:
    CELERY_BEAT_SCHEDULE["prune-images"] = {
        "task": "arena.tasks.prune_images",
        "schedule": 86400.0,
        "options": {"expires": 3600.0},
    }
