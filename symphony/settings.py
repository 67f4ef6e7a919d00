"""Symphony settings: one module, driven by environment variables (see the README's settings table).

With nothing set, Symphony runs on SQLite under ``var/`` and a cache file every process shares (the embedded
default). ``DATABASE_URL`` and ``REDIS_URL`` switch to PostgreSQL and Redis. Unsafe production
configuration raises ``ImproperlyConfigured`` at import time, because gunicorn never runs checks.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import dj_database_url
from csp.constants import NONE, SELF, UNSAFE_INLINE
from django.core.exceptions import ImproperlyConfigured

from observability.multiprocess import settle_multiprocess_dir
from ratelimit.rates import parse_rate
from symphony.env import env_bool, env_float, env_int, env_list, env_map, env_secret, env_str

settle_multiprocess_dir()  # before any app imports prometheus_client

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("SYMPHONY_VAR_DIR", str(BASE_DIR / "var")))
VERSION = "0.1.0"

# --- Core -------------------------------------------------------------------------------------
DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_secret("SECRET_KEY")
# The install's own key, which `make run` generates: every process of the install (manage.py
# commands, a gunicorn started by hand) finds it the way make run does, without SECRET_KEY_FILE.
GENERATED_SECRET_KEY_FILE = VAR_DIR / "secret_key"
if not SECRET_KEY and GENERATED_SECRET_KEY_FILE.is_file():
    try:
        SECRET_KEY = GENERATED_SECRET_KEY_FILE.read_text().strip()
    except OSError as _exc:
        raise ImproperlyConfigured(f"cannot read {GENERATED_SECRET_KEY_FILE}: {_exc}") from None
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            f"SECRET_KEY (or SECRET_KEY_FILE) must be set when DEBUG is off, or {GENERATED_SECRET_KEY_FILE} "
            "must exist (`make run` generates it)."
        )
    SECRET_KEY = "insecure-development-only-key-do-not-use-in-production"  # noqa: S105 - DEBUG only
elif not DEBUG and (len(SECRET_KEY) < 32 or SECRET_KEY.startswith("insecure")):
    raise ImproperlyConfigured("SECRET_KEY must be at least 32 characters and not an insecure placeholder")

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"] + (["testserver"] if DEBUG else []))
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_prometheus",
    # Symphony, bottom layer first: each app imports only from the ones above it in this list.
    "observability",
    "audit",
    "ratelimit",
    "accounts",
    "agents",
    "workflows",
    "webhooks",
    "console",  # the operator console: reads all of the above
]

MIDDLEWARE = [
    "observability.middleware.ProbeMiddleware",  # first: probes skip everything below (observability docs)
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "symphony.middleware.CSPMiddleware",  # django-csp, its default headers built once
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "observability.middleware.RequestContextMiddleware",
    "symphony.middleware.ChunkedBodyMiddleware",  # before anything reads the body
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "ratelimit.middleware.RateLimitMiddleware",
    "symphony.middleware.ApiRequestGuardMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "symphony.urls"
WSGI_APPLICATION = "symphony.wsgi.application"
AUTH_USER_MODEL = "accounts.User"
# The SSO backend authenticates only the OIDC callback and answers no permission (RBAC does).
AUTHENTICATION_BACKENDS = ["accounts.backends.RBACBackend", "accounts.sso.backend.SsoBackend"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------------------------
# The longest a web request waits for one answer from PostgreSQL (connecting included) before it
# gives up with 503 database_unavailable; enforced client side, see symphony/db/__init__.py.
SYMPHONY_DB_TIMEOUT_SECONDS = env_float("SYMPHONY_DB_TIMEOUT_SECONDS", 5.0)
if not 0 < SYMPHONY_DB_TIMEOUT_SECONDS <= 600:
    raise ImproperlyConfigured(
        f"SYMPHONY_DB_TIMEOUT_SECONDS must be above 0 and at most 600, got {SYMPHONY_DB_TIMEOUT_SECONDS}"
    )
DATABASE_URL = env_str("DATABASE_URL")
if DATABASE_URL:
    _db = dj_database_url.parse(
        DATABASE_URL,
        conn_max_age=env_int("DB_CONN_MAX_AGE", 60, minimum=0),
        conn_health_checks=True,
    )
    if _db["ENGINE"] == "django.db.backends.postgresql":
        # django-prometheus's backend (query metrics) on connections whose waits are bounded.
        _db["ENGINE"] = "symphony.db.postgresql"
        # libpq counts whole seconds, at least 2; a connect_timeout in DATABASE_URL wins.
        _db.setdefault("OPTIONS", {}).setdefault("connect_timeout", max(2, math.ceil(SYMPHONY_DB_TIMEOUT_SECONDS)))
else:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    _db = {
        "ENGINE": "django_prometheus.db.backends.sqlite3",
        "NAME": VAR_DIR / "symphony.sqlite3",
        "OPTIONS": {
            # IMMEDIATE takes the write lock at BEGIN, so two writers queue on busy_timeout
            # instead of failing with "database is locked" half-way (as healthchecks does).
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        },
        # Explicit, because pytest-django only recognises the stock sqlite3 ENGINE: with the
        # django_prometheus wrapper it would derive "test_/abs/path_gw0" under xdist and fail.
        "TEST": {"NAME": ":memory:"},
    }
DATABASES = {"default": _db}

# --- Cache and sessions -------------------------------------------------------------------------
# One cache shared by every process of the install (permission generations, resolved keys, rate-limit
# counters decide freshness and security, so a per-process cache cannot hold them; DESIGN.md).
REDIS_URL = env_str("REDIS_URL")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "symphony.caches.RedisCache",  # django-redis, failing fast while Redis is down
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env_str("CACHE_KEY_PREFIX", "symphony"),
            "OPTIONS": {
                "CLIENT_CLASS": "django_redis.client.DefaultClient",
                "SOCKET_CONNECT_TIMEOUT": env_float("REDIS_CONNECT_TIMEOUT", 1.0),
                "SOCKET_TIMEOUT": env_float("REDIS_SOCKET_TIMEOUT", 1.0),
                "BREAKER_SECONDS": env_float("REDIS_RETRY_SECONDS", 1.0),
            },
        }
    }
else:
    CACHES = {
        "default": {
            # The embedded default: one SQLite file every gunicorn worker of this install shares.
            "BACKEND": "symphony.caches.SQLiteCache",
            "LOCATION": str(VAR_DIR / "cache.sqlite3"),
            "KEY_PREFIX": env_str("CACHE_KEY_PREFIX", "symphony"),
            "OPTIONS": {"MAX_ENTRIES": 200_000},
        }
    }
# Sessions in the database on every shape: they survive a Redis outage, and a logout can never be
# undone by a cached copy that could not be deleted while Redis was away. Session requests (the
# admin, the browsable API) load their user from the database anyway.
SESSION_ENGINE = "django.contrib.sessions.backends.db"

# --- Passwords, i18n, static --------------------------------------------------------------------
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

STATIC_URL = "/static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": env_str("STATICFILES_STORAGE", "whitenoise.storage.CompressedManifestStaticFilesStorage")
    },
}

# --- API ----------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    # One default permission class maps view.action to a catalog code; lower apps never import it.
    "DEFAULT_PERMISSION_CLASSES": ["accounts.permissions.HasRequiredPermission"],
    "DEFAULT_SCHEMA_CLASS": "symphony.schema.AutoSchema",  # names, security, error responses
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "symphony.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "symphony.exceptions.api_exception_handler",
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Symphony API",
    "DESCRIPTION": "Control plane for fleets of AI agents: identity, API keys, audit trail, agents and tasks.",
    "VERSION": VERSION,
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Group operations by resource (agents, tasks, roles, ...) rather than one "v1" tag.
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    # Delivery.status shares its field name with tasks' and agents' status choices.
    "ENUM_NAME_OVERRIDES": {
        "WebhookDeliveryStatusEnum": "webhooks.models.Delivery.Status",
        "AgentTypeEnum": "agents.models.Agent.Type",
        "TaskEventTypeEnum": "agents.models.TaskEvent.Type",
        "WorkflowRunStatusEnum": "workflows.models.WorkflowRun.Status",
    },
}

# --- Symphony -----------------------------------------------------------------------------------
# Trusted reverse proxies: only when the direct peer is one of these is X-Forwarded-For honoured.
SYMPHONY_TRUSTED_PROXIES = env_list("SYMPHONY_TRUSTED_PROXIES")
SYMPHONY_PERMISSION_CACHE_SECONDS = env_int("SYMPHONY_PERMISSION_CACHE_SECONDS", 300, minimum=0)
SYMPHONY_API_KEY_ROTATION_GRACE_HOURS = env_int("SYMPHONY_API_KEY_ROTATION_GRACE_HOURS", 24, minimum=0)

# --- Single sign-on: OpenID Connect (docs/identity.md) -------------------------------------------
from accounts.sso.rolemap import parse_role_map  # noqa: E402 - a plain parser, no Django models

SYMPHONY_OIDC_ISSUER = env_str("SYMPHONY_OIDC_ISSUER")
SYMPHONY_OIDC_CLIENT_ID = env_str("SYMPHONY_OIDC_CLIENT_ID")
SYMPHONY_OIDC_CLIENT_SECRET = env_secret("SYMPHONY_OIDC_CLIENT_SECRET")
SYMPHONY_OIDC_SCOPES = env_str("SYMPHONY_OIDC_SCOPES", "openid email profile")
SYMPHONY_OIDC_ROLES_CLAIM = env_str("SYMPHONY_OIDC_ROLES_CLAIM", "groups")
# group=role or group=role@project, comma-separated; parsed again at each login (override_settings works).
SYMPHONY_OIDC_ROLE_MAP = env_str("SYMPHONY_OIDC_ROLE_MAP")
parse_role_map(SYMPHONY_OIDC_ROLE_MAP)  # a syntax error stops the start, naming the item
SYMPHONY_OIDC_USERNAME_CLAIM = env_str("SYMPHONY_OIDC_USERNAME_CLAIM", "preferred_username")
SYMPHONY_OIDC_SIGN_ALGO = env_str("SYMPHONY_OIDC_SIGN_ALGO", "RS256")
SYMPHONY_OIDC_TIMEOUT = env_float("SYMPHONY_OIDC_TIMEOUT", 10.0)
SYMPHONY_OIDC_CLOCK_SKEW_SECONDS = env_int("SYMPHONY_OIDC_CLOCK_SKEW_SECONDS", 60, minimum=0)
SYMPHONY_OIDC_DISCOVERY_CACHE_SECONDS = env_int("SYMPHONY_OIDC_DISCOVERY_CACHE_SECONDS", 3600, minimum=0)
# Password login for superusers only (break-glass); everyone else signs in through the provider.
SYMPHONY_OIDC_ONLY = env_bool("SYMPHONY_OIDC_ONLY", False)
if SYMPHONY_OIDC_ISSUER and not SYMPHONY_OIDC_CLIENT_ID:
    raise ImproperlyConfigured("SYMPHONY_OIDC_ISSUER is set but SYMPHONY_OIDC_CLIENT_ID is not")
if SYMPHONY_OIDC_ONLY and not SYMPHONY_OIDC_ISSUER:
    raise ImproperlyConfigured("SYMPHONY_OIDC_ONLY=true needs SYMPHONY_OIDC_ISSUER (or nobody but superusers logs in)")
if SYMPHONY_OIDC_SIGN_ALGO not in {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"}:
    raise ImproperlyConfigured(
        f"SYMPHONY_OIDC_SIGN_ALGO must be an asymmetric JWS algorithm, got {SYMPHONY_OIDC_SIGN_ALGO!r}"
    )
if SYMPHONY_OIDC_ISSUER and not re.match(
    r"https://|http://(127\.0\.0\.1|localhost|\[::1\])(:\d+)?(/|$)", SYMPHONY_OIDC_ISSUER
):
    raise ImproperlyConfigured("SYMPHONY_OIDC_ISSUER must be an https:// URL (plain http only on loopback)")

# --- Hardening: rate limits, request limits, security headers (docs/security.md) -------------------
# Rate limits: a preset (strict, moderate, lenient) or a rate "N/<k><s|m|h|d>" such as 100/15m, in the
# one grammar of ratelimit/rates.py (API keys' own limits use it too).
RATELIMIT_ENABLE = env_bool("SYMPHONY_RATELIMIT_ENABLED", True)
RATELIMIT_USE_CACHE = env_str("SYMPHONY_RATELIMIT_CACHE", "default")
SYMPHONY_RATELIMIT_DEFAULT = env_str("SYMPHONY_RATELIMIT_DEFAULT", "moderate")
# URL name or router basename -> preset or rate, e.g. "audit-event=strict,agent-claim=lenient".
SYMPHONY_RATELIMIT_OVERRIDES = env_map("SYMPHONY_RATELIMIT_OVERRIDES")
SYMPHONY_RATELIMIT_LOGIN_PER_IP = env_str("SYMPHONY_RATELIMIT_LOGIN_PER_IP", "30/15m")
SYMPHONY_RATELIMIT_LOGIN_PER_USERNAME = env_str("SYMPHONY_RATELIMIT_LOGIN_PER_USERNAME", "10/15m")
SYMPHONY_RATELIMIT_LOGIN_VIEWS = env_list("SYMPHONY_RATELIMIT_LOGIN_VIEWS", ["admin:login", "rest_framework:login"])
# When the shared cache is unreachable: serve (rate limits off, identity checks from the database) and
# report degraded (true), or answer API requests 503 with Retry-After (false). docs/security.md.
SYMPHONY_RATELIMIT_FAIL_OPEN = env_bool("SYMPHONY_RATELIMIT_FAIL_OPEN", True)
for _name, _rate in [
    ("SYMPHONY_RATELIMIT_DEFAULT", SYMPHONY_RATELIMIT_DEFAULT),
    ("SYMPHONY_RATELIMIT_LOGIN_PER_IP", SYMPHONY_RATELIMIT_LOGIN_PER_IP),
    ("SYMPHONY_RATELIMIT_LOGIN_PER_USERNAME", SYMPHONY_RATELIMIT_LOGIN_PER_USERNAME),
    *(("SYMPHONY_RATELIMIT_OVERRIDES", _value) for _value in SYMPHONY_RATELIMIT_OVERRIDES.values()),
]:
    try:
        parse_rate(_rate)
    except ValueError as _exc:
        raise ImproperlyConfigured(f"{_name}: {_exc}") from None

# Request limits: body size (413), JSON nesting depth (400), JSON-only writes (415); see symphony/parsers.py.
# Django's default 2.5 MiB: room for a task result of SYMPHONY_TASK_MAX_RESULT_BYTES (1 MiB) and its escaping.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("SYMPHONY_MAX_REQUEST_BYTES", 2_621_440, minimum=1024)
SYMPHONY_MAX_JSON_DEPTH = env_int("SYMPHONY_MAX_JSON_DEPTH", 32, minimum=2)
REST_FRAMEWORK["DEFAULT_PARSER_CLASSES"] = ["symphony.parsers.BoundedJSONParser"]
REST_FRAMEWORK["DEFAULT_FILTER_BACKENDS"] = [
    # django-filter, refusing numbers past 64 bits and normalising datetimes to UTC (no 500s from the DB)
    "symphony.filters.FilterBackend",
    "symphony.filters.SearchFilter",  # ?search= over the view's search_fields (only where it has some)
    "symphony.filters.OrderingFilter",  # ?ordering= over the view's ordering_fields; unknown: 400
    "symphony.filters.StrictQueryParamsFilter",  # unknown query parameters on lists: 400 naming them
]
SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"] = [
    "drf_spectacular.hooks.postprocess_schema_enums",
    "symphony.schema.postprocess",
]

# HTTPS: SYMPHONY_HTTPS=true when clients reach Symphony over TLS (directly or through a proxy).
SYMPHONY_HTTPS = env_bool("SYMPHONY_HTTPS", False)
if env_bool("SYMPHONY_SECURE_PROXY_SSL_HEADER", False):
    # Only behind a proxy that sets X-Forwarded-Proto itself and strips any the client sent.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", SYMPHONY_HTTPS)
SECURE_REDIRECT_EXEMPT = [r"^health(/|$)", r"^metrics$"]  # probes and scrapers speak plain HTTP inside
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31_536_000 if SYMPHONY_HTTPS else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", SYMPHONY_HTTPS)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = SYMPHONY_HTTPS
SESSION_COOKIE_HTTPONLY = CSRF_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = CSRF_COOKIE_SAMESITE = "Lax"
# Scripts only from our own origin (Swagger UI's init script is served by SpectacularSwaggerSplitView);
# inline styles are allowed because Swagger UI's page and widgets use them.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF, UNSAFE_INLINE],
        "img-src": [SELF, "data:"],
        "font-src": [SELF, "data:"],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}
# --- Operator console (docs/console.md) -----------------------------------------------------------
# A task's trace link: "{trace_id}" is replaced by the trace id of its traceparent (empty: no link).
SYMPHONY_TRACE_URL_TEMPLATE = env_str("SYMPHONY_TRACE_URL_TEMPLATE", "")
# The dashboard's throughput charts (a scan of the day's finished tasks) are cached this long per scope.
SYMPHONY_CONSOLE_CHART_CACHE_SECONDS = env_int("SYMPHONY_CONSOLE_CHART_CACHE_SECONDS", 10, minimum=0)
# --- Agents and dispatch ------------------------------------------------------------------------
# An agent whose last heartbeat is older than this shows as offline.
SYMPHONY_AGENT_HEARTBEAT_TIMEOUT = env_int("SYMPHONY_AGENT_HEARTBEAT_TIMEOUT", 90, minimum=1)
SYMPHONY_TASK_MAX_INPUT_BYTES = env_int("SYMPHONY_TASK_MAX_INPUT_BYTES", 262144, minimum=2)
SYMPHONY_TASK_MAX_RESULT_BYTES = env_int("SYMPHONY_TASK_MAX_RESULT_BYTES", 1048576, minimum=2)
SYMPHONY_TASK_LEASE_SECONDS = env_int("SYMPHONY_TASK_LEASE_SECONDS", 60, minimum=1)
SYMPHONY_TASK_MAX_LEASE_SECONDS = env_int("SYMPHONY_TASK_MAX_LEASE_SECONDS", 3600, minimum=1)
SYMPHONY_TASK_MAX_CLAIM = env_int("SYMPHONY_TASK_MAX_CLAIM", 100, minimum=1)
# Most steps one workflow run may have (a run is created in one transaction).
SYMPHONY_WORKFLOW_MAX_STEPS = env_int("SYMPHONY_WORKFLOW_MAX_STEPS", 1000, minimum=1)
# Seconds between two ticks of manage.py run_scheduler (the finest time a schedule can keep).
SYMPHONY_SCHEDULER_TICK_SECONDS = env_int("SYMPHONY_SCHEDULER_TICK_SECONDS", 1, minimum=1)
# Round robin between fairness keys within a priority (off: strictly oldest first within a priority).
SYMPHONY_TASK_FAIRNESS = env_bool("SYMPHONY_TASK_FAIRNESS", True)
# LLM usage metrics: at most this many (project, model) series per process (then model="other"), and
# the currencies that get their own series.
SYMPHONY_USAGE_METRIC_SERIES = env_int("SYMPHONY_USAGE_METRIC_SERIES", 200, minimum=1)
SYMPHONY_USAGE_CURRENCIES = env_list("SYMPHONY_USAGE_CURRENCIES", ["USD", "EUR", "GBP"])
# The agent_orchestra health check turns degraded when the oldest pending task waits longer than this.
SYMPHONY_TASK_MAX_PENDING_AGE = env_int("SYMPHONY_TASK_MAX_PENDING_AGE", 300, minimum=1)
SYMPHONY_AGENT_METRICS_CACHE_SECONDS = env_int("SYMPHONY_AGENT_METRICS_CACHE_SECONDS", 5, minimum=0)
# Task events and live streams (docs/agents.md "Live output").
SYMPHONY_TASK_EVENT_MAX_BYTES = env_int("SYMPHONY_TASK_EVENT_MAX_BYTES", 65536, minimum=2)
SYMPHONY_TASK_EVENT_MAX_BATCH = env_int("SYMPHONY_TASK_EVENT_MAX_BATCH", 100, minimum=1)
SYMPHONY_TASK_EVENT_MAX_PER_TASK = env_int("SYMPHONY_TASK_EVENT_MAX_PER_TASK", 100000, minimum=1)
SYMPHONY_TASK_EVENT_RETENTION_DAYS = env_int("SYMPHONY_TASK_EVENT_RETENTION_DAYS", 30, minimum=1)
SYMPHONY_STREAM_HEARTBEAT_SECONDS = env_float("SYMPHONY_STREAM_HEARTBEAT_SECONDS", 15.0)
# SQLite has no LISTEN/NOTIFY: streams look at the database this often instead.
SYMPHONY_STREAM_POLL_SECONDS = env_float("SYMPHONY_STREAM_POLL_SECONDS", 0.5)
# PostgreSQL streams re-check the database this often even without a notification (a lost LISTEN
# connection, a change made outside the services).
SYMPHONY_STREAM_RECHECK_SECONDS = env_float("SYMPHONY_STREAM_RECHECK_SECONDS", 5.0)
# An open stream runs its viewer's checks again at once when the permission generation moves, and at
# least this often for what moves none (a key's expiry, a logout): docs/agents.md "Streams".
SYMPHONY_STREAM_ACCESS_RECHECK_SECONDS = env_float("SYMPHONY_STREAM_ACCESS_RECHECK_SECONDS", 60.0)
# Longest a claim may wait for work (``wait_seconds``, docs/agents.md "Waiting for work"); served by the
# ASGI process, answered at once by gunicorn.
SYMPHONY_CLAIM_MAX_WAIT_SECONDS = env_int("SYMPHONY_CLAIM_MAX_WAIT_SECONDS", 30, minimum=0)

# --- webhooks (docs/webhooks.md) ---
# Refuse URLs resolving to loopback, private, link-local or metadata addresses (creation and delivery).
SYMPHONY_WEBHOOK_ALLOW_PRIVATE = env_bool("SYMPHONY_WEBHOOK_ALLOW_PRIVATE", False)
# Key material for the signing secrets' encryption at rest; SECRET_KEY when empty.
SYMPHONY_WEBHOOK_ENCRYPTION_KEY = env_str("SYMPHONY_WEBHOOK_ENCRYPTION_KEY", "")
SYMPHONY_WEBHOOK_RETRY_FOR_SECONDS = env_int("SYMPHONY_WEBHOOK_RETRY_FOR_SECONDS", 86400, minimum=0)
SYMPHONY_WEBHOOK_BACKOFF_BASE_SECONDS = env_int("SYMPHONY_WEBHOOK_BACKOFF_BASE_SECONDS", 5, minimum=0)
SYMPHONY_WEBHOOK_BACKOFF_MAX_SECONDS = env_int("SYMPHONY_WEBHOOK_BACKOFF_MAX_SECONDS", 3600, minimum=0)
SYMPHONY_WEBHOOK_TIMEOUT_SECONDS = env_int("SYMPHONY_WEBHOOK_TIMEOUT_SECONDS", 10, minimum=1)
SYMPHONY_WEBHOOK_DISABLE_AFTER_FAILURES = env_int("SYMPHONY_WEBHOOK_DISABLE_AFTER_FAILURES", 20, minimum=1)
SYMPHONY_WEBHOOK_SECRET_OVERLAP_SECONDS = env_int("SYMPHONY_WEBHOOK_SECRET_OVERLAP_SECONDS", 86400, minimum=0)

# --- Audit trail (docs/audit.md) ---------------------------------------------------------------
# Signed checkpoints of the hash chain: an Ed25519 private key (PEM) and a folder outside the
# database. `make run` generates both under var/; the key also signs purge anchors.
SYMPHONY_AUDIT_SIGNING_KEY_FILE = env_str("SYMPHONY_AUDIT_SIGNING_KEY_FILE")
SYMPHONY_AUDIT_CHECKPOINT_DIR = env_str("SYMPHONY_AUDIT_CHECKPOINT_DIR")
# A checkpoint after every N sealed events (0: only `manage.py audit_checkpoint`, e.g. from cron).
SYMPHONY_AUDIT_CHECKPOINT_EVERY = env_int("SYMPHONY_AUDIT_CHECKPOINT_EVERY", 1000, minimum=0)
# The background sealer (PostgreSQL) seals at most every SEAL_INTERVAL seconds while events keep
# coming (a longer window: fewer, larger seals, each event sealed later), and, idle, looks every
# SEAL_IDLE_POLL seconds for events a killed process committed but never sealed.
SYMPHONY_AUDIT_SEAL_INTERVAL = env_float("SYMPHONY_AUDIT_SEAL_INTERVAL", 0.1, minimum=0.0)
SYMPHONY_AUDIT_SEAL_IDLE_POLL = env_float("SYMPHONY_AUDIT_SEAL_IDLE_POLL", 5.0, minimum=0.1)
if SYMPHONY_AUDIT_CHECKPOINT_DIR and not SYMPHONY_AUDIT_SIGNING_KEY_FILE:
    raise ImproperlyConfigured(
        "SYMPHONY_AUDIT_CHECKPOINT_DIR needs SYMPHONY_AUDIT_SIGNING_KEY_FILE (the key that signs)"
    )

# --- deploy -----------------------------------------------------------------------------------
# Serves /bench/constant, the bare-Django baseline of `make bench`. Never on in production.
SYMPHONY_BENCH_VIEWS = env_bool("SYMPHONY_BENCH_VIEWS", False)

# --- Logging ------------------------------------------------------------------------------------
LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
if LOG_LEVEL not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
    raise ImproperlyConfigured(f"LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL, got {LOG_LEVEL!r}")
LOG_FORMAT = env_str("LOG_FORMAT", "console" if DEBUG else "json")
if LOG_FORMAT not in {"json", "console"}:
    raise ImproperlyConfigured(f"LOG_FORMAT must be json or console, got {LOG_FORMAT!r}")
# --- Observability (docs/observability.md) -----------------------------------------------------------
from observability.logs import logging_config  # noqa: E402 - a plain dict builder, no Django imports

LOGGING = logging_config(LOG_LEVEL, LOG_FORMAT)
METRICS_TOKEN = env_secret("METRICS_TOKEN")
SYMPHONY_METRICS_ALLOW_PRIVATE = env_bool("SYMPHONY_METRICS_ALLOW_PRIVATE", True)
SYMPHONY_HEALTH_DETAILS_ALLOW_PRIVATE = env_bool("SYMPHONY_HEALTH_DETAILS_ALLOW_PRIVATE", True)
SYMPHONY_MEMORY_LIMIT_MB = env_int("SYMPHONY_MEMORY_LIMIT_MB", 512, minimum=0)
SYMPHONY_DISK_MIN_FREE_MB = env_int("SYMPHONY_DISK_MIN_FREE_MB", 256, minimum=0)
