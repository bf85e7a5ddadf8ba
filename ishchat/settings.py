"""The one settings module of the manager, driven by environment variables.

The embedded default (no DATABASE_URL, no Redis) runs on SQLite with a locmem
cache and Celery on kombu's filesystem transport. DATABASE_URL and REDIS_URL
(or REDIS_HOST/REDIS_PORT/REDIS_PASSWORD) switch to PostgreSQL and Redis.
"""

from __future__ import annotations

import sys
from pathlib import Path
from urllib.parse import quote

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from ishchat import edge
from ishchat.env import (
    env_bool,
    env_choice,
    env_int,
    env_list,
    env_str,
    load_dotenv,
)

BASE_DIR = Path(__file__).resolve().parent.parent
# `make test` sets INSTANCE_MANAGER_DOTENV=false so a developer's .env never reaches the tests.
if env_bool("INSTANCE_MANAGER_DOTENV", True):
    load_dotenv(BASE_DIR / ".env")

VAR_DIR = Path(env_str("INSTANCE_MANAGER_VAR_DIR", str(BASE_DIR / "var")))
LOG_DIR = Path(env_str("INSTANCE_MANAGER_LOG_DIR", str(BASE_DIR / "logs")))

DEBUG = env_bool("INSTANCE_MANAGER_DEBUG", False)
LOG_LEVEL = env_choice(
    "INSTANCE_MANAGER_LOG_LEVEL", "DEBUG" if DEBUG else "INFO", {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}
)

SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set it in the environment or in .env (`make run` writes one), "
            "or set INSTANCE_MANAGER_DEBUG=true for a throw-away development key."
        )
    SECRET_KEY = "insecure-development-key-" + "x" * 40

# Fernet keys for provider API keys at rest; the first encrypts, all decrypt (rotation).
FIELD_ENCRYPTION_KEYS = env_list("FIELD_ENCRYPTION_KEY")

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

BACKEND_HOST = env_str("BACKEND_HOST", "127.0.0.1")
BACKEND_PORT = env_int("BACKEND_PORT", 8000, minimum=1, maximum=65535)
BACKEND_API_KEY = env_str("BACKEND_API_KEY")

# Provider keys used when an instance is registered without its own api_key.
PROVIDER_API_KEYS = {
    "zai": env_str("ZAI_API_KEY"),
    "openai": env_str("OPENAI_API_KEY"),
    "anthropic": env_str("ANTHROPIC_API_KEY"),
    "perplexity": env_str("PERPLEXITY_API_KEY"),
    "openai_compatible": env_str("OPENAI_COMPATIBLE_API_KEY"),
}

# Hosts or CIDRs an instance endpoint may point at; empty means any public,
# private or loopback address (never link-local or cloud metadata).
ENDPOINT_ALLOWLIST = env_list("INSTANCE_MANAGER_ENDPOINT_ALLOWLIST")

CONFIG_FILE = Path(env_str("INSTANCE_MANAGER_CONFIG", str(BASE_DIR / "config" / "instance_manager_config.json")))
DEMO_FLEET = env_bool("INSTANCE_MANAGER_DEMO", True)
# A second port serving only /metrics (the seed's 9090); 0 = the main port only.
METRICS_PORT = env_int("INSTANCE_MANAGER_METRICS_PORT", 0, minimum=0, maximum=65535)

INSTALLED_APPS = [
    "django_prometheus",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_api_key",
    "drf_spectacular",
    "django_celery_beat",
    "django_htmx",
    "ishchat",
    "accounts",
    "configuration",
    "instances",
    "scaling",
    "alerts",
    "gateway",
    "monitoring",
    "dashboard",
    "simulator",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "ishchat.middleware.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "ishchat.urls"
WSGI_APPLICATION = "ishchat.wsgi.application"
ASGI_APPLICATION = "ishchat.asgi.application"
APPEND_SLASH = False

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

# --- Database -------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL")
# The web server, the worker and beat share an SQLite file: WAL lets readers run
# beside the writer, IMMEDIATE avoids lock-upgrade deadlocks.
SQLITE_OPTIONS = {
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    "transaction_mode": "IMMEDIATE",
    "timeout": 20,
}
# Under ASGI every concurrently served request runs in a thread of its own, so persistent
# connections (CONN_MAX_AGE) grow with concurrency until PostgreSQL refuses clients. On
# PostgreSQL each process borrows from one bounded psycopg pool instead: a request holds a
# connection from its first query to its end and gives it back. Defaults fit a 2-core box
# running two web processes, a worker and beat: 4 x 8 = 32 connections at most, a third of
# PostgreSQL's default max_connections, and more than two cores can keep busy. A request that
# waits DB_POOL_TIMEOUT for a connection fails (a 503), and an unreachable server fails a
# connection attempt after DB_CONNECT_TIMEOUT, so an outage costs seconds, not a hang.
DB_POOL_MIN_SIZE = env_int("INSTANCE_MANAGER_DB_POOL_MIN_SIZE", 2, minimum=0, maximum=1000)
DB_POOL_MAX_SIZE = env_int("INSTANCE_MANAGER_DB_POOL_MAX_SIZE", 8, minimum=1, maximum=1000)
DB_POOL_TIMEOUT = env_int("INSTANCE_MANAGER_DB_POOL_TIMEOUT", 5, minimum=1, maximum=300)
DB_CONNECT_TIMEOUT = env_int("INSTANCE_MANAGER_DB_CONNECT_TIMEOUT", 2, minimum=1, maximum=300)
if DATABASE_URL:
    # conn_health_checks: with the pool, each connection is checked (one empty round trip) as it is
    # lent, so after an outage or a server restart dead ones are dropped, not lent to requests.
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=0, conn_health_checks=True)}
    if DATABASES["default"]["ENGINE"].endswith("postgresql"):
        DATABASES["default"]["OPTIONS"] = {
            "connect_timeout": DB_CONNECT_TIMEOUT,
            **DATABASES["default"].get("OPTIONS", {}),
            "pool": {
                "min_size": DB_POOL_MIN_SIZE,
                "max_size": DB_POOL_MAX_SIZE,
                "timeout": DB_POOL_TIMEOUT,
            },
        }
else:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(VAR_DIR / "db.sqlite3")}}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    DATABASES["default"]["OPTIONS"] = {**SQLITE_OPTIONS, **DATABASES["default"].get("OPTIONS", {})}
DATABASES["default"]["ENGINE"] = DATABASES["default"]["ENGINE"].replace(
    "django.db.backends.", "django_prometheus.db.backends."
)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"


# --- Redis: cache, Celery broker and shared state --------------------------
def _redis_url() -> str:
    url = env_str("REDIS_URL")
    if url:
        return url
    host = env_str("REDIS_HOST")
    if not host:
        return ""
    port = env_int("REDIS_PORT", 6379, minimum=1, maximum=65535)
    password = env_str("REDIS_PASSWORD")
    db = env_int("REDIS_DB", 0, minimum=0)
    auth = f":{quote(password, safe='')}@" if password else ""
    return f"redis://{auth}{host}:{port}/{db}"


REDIS_URL = _redis_url()
# Connect and socket timeout of every Redis client (cache, broker): a hung Redis fails
# a call in this long instead of stalling the request, and the caller degrades.
REDIS_TIMEOUT_SECONDS = env_int("INSTANCE_MANAGER_REDIS_TIMEOUT_MS", 500, minimum=50, maximum=30_000) / 1000
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env_str("INSTANCE_MANAGER_CACHE_PREFIX", "ishchat"),
            # Passed to redis-py's ConnectionPool.from_url (django/core/cache/backends/redis.py).
            "OPTIONS": {
                "socket_connect_timeout": REDIS_TIMEOUT_SECONDS,
                "socket_timeout": REDIS_TIMEOUT_SECONDS,
            },
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# Key prefix of the balancer's shared state (round-robin positions, breakers, leases).
BALANCER_KEY_PREFIX = env_str("INSTANCE_MANAGER_BALANCER_PREFIX", "ishchat:lb:")

# --- Celery ----------------------------------------------------------------
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = "UTC"
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {
        "visibility_timeout": 3600,
        "socket_connect_timeout": REDIS_TIMEOUT_SECONDS,
        "socket_timeout": REDIS_TIMEOUT_SECONDS,
    }
    CELERY_BROKER_CONNECTION_TIMEOUT = REDIS_TIMEOUT_SECONDS
    # A publish (delay_on_commit in a request) through a hung broker gives up after
    # two attempts, about 2 * REDIS_TIMEOUT_SECONDS, instead of four.
    CELERY_TASK_PUBLISH_RETRY_POLICY = {
        "max_retries": 1,
        "interval_start": 0,
        "interval_step": 0.2,
        "interval_max": 0.2,
    }
else:
    BROKER_DIR = VAR_DIR / "broker"
    for sub in ("queue", "processed", "control"):
        (BROKER_DIR / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
    }

# --- Auth, API -------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "admin:login"

API_RATE_LIMIT = env_str("INSTANCE_MANAGER_API_RATE_LIMIT", "1200/min")
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["accounts.authentication.APIKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["accounts.permissions.HasAPIKeyAccess"],
    "DEFAULT_THROTTLE_CLASSES": ["accounts.throttling.APIKeyRateThrottle"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["ishchat.jsonsafe.JSONParser"],  # depth-bounded, refuses NUL and lone surrogates
    "DEFAULT_SCHEMA_CLASS": "ishchat.schema.AutoSchema",
    "EXCEPTION_HANDLER": "ishchat.api.exception_handler",
    "UNAUTHENTICATED_USER": None,
}
# Request size bounds (README "Request limits"). The head is bounded by the web server's protocol
# (ishchat/server.py); bodies per path by ishchat/edge.py in front of Django, whose own form bound matches.
MAX_REQUEST_HEADER_BYTES = env_int(
    "INSTANCE_MANAGER_MAX_HEADER_BYTES", 64 * 1024, minimum=8 * 1024, maximum=1024 * 1024
)
DATA_UPLOAD_MAX_MEMORY_SIZE = edge.MAX_BODY_BYTES
SPECTACULAR_SETTINGS = {
    "TITLE": "ISH Chat Instance Manager API",
    "DESCRIPTION": "Registry, health, load balancing and auto-scaling of AI model instances.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "InstanceStatusEnum": "instances.choices.InstanceStatus",
        "OperatorStatusEnum": "instances.choices.OPERATOR_STATUS_CHOICES",
        "CheckStatusEnum": "instances.choices.CheckStatus",
        "RequestStatusEnum": "instances.choices.RequestStatus",
        "AlertStatusEnum": "alerts.choices.AlertStatus",
        "ScalingEventStatusEnum": "scaling.choices.ScalingEventStatus",
    },
    # /docs fetches the schema from the browser: staff sessions may read it too.
    "SERVE_AUTHENTICATION": [
        "accounts.authentication.APIKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "SERVE_PERMISSIONS": ["accounts.permissions.StaffOrAPIKey"],
}

# --- HTTPS / security headers ----------------------------------------------
HTTPS = env_bool("INSTANCE_MANAGER_HTTPS", False)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
if HTTPS:
    SECURE_SSL_REDIRECT = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = env_int("INSTANCE_MANAGER_HSTS_SECONDS", 31536000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    # /health is probed by load balancers over plain HTTP inside the cluster.
    SECURE_REDIRECT_EXEMPT = [r"^health$", r"^metrics$"]

# --- E-mail (alert notifications) -----------------------------------------
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend")
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25, minimum=1, maximum=65535)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "ishchat@localhost")

# --- i18n, static ----------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
# whitenoise serves the collected files from the app server itself (`make run`
# runs collectstatic). No manifest: a template rendered before collectstatic
# (tests, a fresh checkout) must not fail on a missing manifest entry.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# --- Logging ---------------------------------------------------------------
LOG_DIR.mkdir(parents=True, exist_ok=True)
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact": {"()": "ishchat.logging.RedactSecretsFilter"}},
    "formatters": {"json": {"()": "ishchat.logging.JsonFormatter"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            # Commands whose stdout is data move this to stderr (ishchat.logging.StdoutIsDataMixin).
            "stream": sys.stdout,
            "formatter": "json",
            "filters": ["redact"],
        },
        "file": {
            "class": "logging.handlers.RotatingFileHandler",
            "filename": str(LOG_DIR / "instance_manager.log"),
            "maxBytes": 10 * 1024 * 1024,
            "backupCount": 5,
            "formatter": "json",
            "filters": ["redact"],
            "delay": True,
        },
    },
    "root": {"handlers": ["console", "file"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
    },
}
