"""Settings, read from the environment (12-factor).

DATABASE_URL, REDIS_URL, SECRET_KEY, DEBUG and ALLOWED_HOSTS are the knobs an
operator turns; everything else defaults to a closed production posture
(docs/security.md). Development machines — `make demo`, the test settings —
set RECSITE_DEV=1.
"""

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use 1/0, true/false)")


def env_list(name: str, default: str) -> list[str]:
    return [part.strip() for part in os.environ.get(name, default).split(",") if part.strip()]


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a number") from exc


DEBUG = env_bool("DEBUG", False)
# Production unless told otherwise: `make demo`, the test settings and CI set RECSITE_DEV=1 themselves.
RECSITE_DEV = env_bool("RECSITE_DEV", False)
# Deliberately short of Django's 50 characters, so that `check --deploy` flags it (security.W009) if it ever leaks
# into a deployment; recsite.checks flags it by name as well.
DEV_SECRET_KEY = "django-insecure-recsite-dev-key"
SECRET_KEY = os.environ.get("SECRET_KEY") or (DEV_SECRET_KEY if DEBUG or RECSITE_DEV else "")
if not SECRET_KEY:
    raise ImproperlyConfigured(
        "SECRET_KEY is not set. In production (DEBUG=0, RECSITE_DEV=0, the defaults) set SECRET_KEY to at least "
        "50 random characters, e.g. python -c 'import secrets; print(secrets.token_urlsafe(50))'; "
        "for a development machine set RECSITE_DEV=1 instead."
    )
SECRET_KEY_FALLBACKS = env_list("SECRET_KEY_FALLBACKS", "")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "axes",
    "channels",
    "experiments",
]

MIDDLEWARE = [
    "recsite.middleware.CloseConnectionsUnderASGI",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: turns a locked-out login into the 429 page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "recsite.urls"
WSGI_APPLICATION = None
ASGI_APPLICATION = "recsite.asgi.application"

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

DATABASE_URL = os.environ.get("DATABASE_URL", "postgres://127.0.0.1:5432/recsite")
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60, conn_health_checks=True)}
DATABASES["default"].setdefault("OPTIONS", {})
# A dead database must turn into a quick 503, not a hung request.
DATABASES["default"]["OPTIONS"].setdefault("connect_timeout", 3)
# Postgres' JIT compiles every query the planner estimates above jit_above_cost, and its estimates run high
# wherever statistics are stale (a table just bulk-loaded, or full of dead rows). recsite's queries are index
# probes and small aggregates that run in milliseconds; measured, compiling them cost 0.2-1.8 s (the stats
# fold, bench/bench_stats_db.py) and 0.6 s per click (after a 20,000-row import was rolled back). So it is off
# on recsite's connections unless RECSITE_PG_JIT=on.
if os.environ.get("RECSITE_PG_JIT", "off").lower() != "on":
    _pg_options = DATABASES["default"]["OPTIONS"].get("options", "")
    DATABASES["default"]["OPTIONS"]["options"] = f"{_pg_options} -c jit=off".strip()
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [REDIS_URL], "prefix": os.environ.get("CHANNELS_PREFIX", "recsite")},
    }
}

CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", REDIS_URL)
CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND", REDIS_URL)
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {"recsite.training.*": {"queue": "training"}}
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_EXPIRES = 3600
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Beat checks itself in from its loop, so /healthz and the dashboard name a beat that stopped (experiments/heartbeats.py).
CELERY_BEAT_SCHEDULER = "experiments.heartbeats:CheckinScheduler"
# Beat: the training dispatcher queues one train_arm per active arm (queue "training"); stats ticks and
# checkpoint retention are light and run on "default". See docs/training.md.
CELERY_BEAT_SCHEDULE: dict = {
    "training-dispatch": {
        "task": "recsite.training.dispatch",
        "schedule": env_float("RECSITE_TRAIN_INTERVAL_S", 2.0),
        "options": {"queue": "default", "expires": 10},
    },
    "stats-tick": {
        "task": "recsite.stats.tick",
        "schedule": env_float("RECSITE_STATS_INTERVAL_S", 1.0),
        "options": {"queue": "default", "expires": 5},
    },
    "checkpoint-retention": {
        "task": "recsite.training.retention",
        "schedule": env_float("RECSITE_CHECKPOINT_RETENTION_INTERVAL_S", 60.0),
        "options": {"queue": "default", "expires": 60},
    },
    # The impression log's day partitions: created a week ahead, dropped past the retention (docs/serving.md).
    "impression-partitions": {
        "task": "recsite.impressions.partitions",
        "schedule": env_float("RECSITE_PARTITION_INTERVAL_S", 3600.0),
        "options": {"queue": "default", "expires": 3600},
    },
    # Allocation policies re-evaluate when each experiment's interval is due; guardrails check every arm (issue 12).
    "policy-tick": {
        "task": "recsite.policy.tick",
        "schedule": env_float("RECSITE_POLICY_TICK_S", 30.0),
        "options": {"queue": "default", "expires": 30},
    },
    # Schedules: scheduled starts and stops, and auto-stops on a decided test or the planned size (issue 19).
    "schedules-apply": {
        "task": "recsite.schedules.apply",
        "schedule": env_float("RECSITE_SCHEDULE_TICK_S", 30.0),
        "options": {"queue": "default", "expires": 30},
    },
    "guardrails-check": {
        "task": "recsite.guardrails.check",
        "schedule": env_float("RECSITE_GUARDRAIL_INTERVAL_S", 15.0),
        "options": {"queue": "default", "expires": 15},
    },
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Login throttling (django-axes, failures stored in Postgres, so it holds across processes and Redis outages):
# after RECSITE_LOGIN_FAILURE_LIMIT wrong passwords for one username (from anywhere) or from one client address
# (for any username), logins from there answer 429 until RECSITE_LOGIN_LOCKOUT_MINUTES pass without a new failure.
# A success resets the counters. Behind a proxy, run Daphne with --proxy-headers so the address is the client's.
AUTHENTICATION_BACKENDS = ["recsite.auth.LoginThrottleBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = int(os.environ.get("RECSITE_LOGIN_FAILURE_LIMIT", 10))
AXES_COOLOFF_TIME = timedelta(minutes=env_float("RECSITE_LOGIN_LOCKOUT_MINUTES", 15.0))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "recsite.auth.lockout_response"
AXES_VERBOSE = False  # our own log line (recsite.auth) instead of axes' per-attempt chatter

LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/dashboard/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "var" / "staticfiles"
RECSITE_SERVE_STATIC = env_bool("RECSITE_SERVE_STATIC", True)
RECSITE_API_FAST_PATH = env_bool("RECSITE_API_FAST_PATH", True)

# JSON bodies above this are refused with a 413 before they are parsed.
DATA_UPLOAD_MAX_MEMORY_SIZE = int(os.environ.get("RECSITE_MAX_BODY_BYTES", 5 * 1024 * 1024))

# Production hardening: on by default outside development (TLS terminated by the proxy in front, which sets
# X-Forwarded-Proto); RECSITE_TLS=0 is the one way to turn it off in production.
RECSITE_TLS = env_bool("RECSITE_TLS", not (RECSITE_DEV or DEBUG))
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_SECURE = RECSITE_TLS
SESSION_COOKIE_SECURE = RECSITE_TLS
SECURE_SSL_REDIRECT = RECSITE_TLS
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if RECSITE_TLS else None
SECURE_HSTS_SECONDS = 31536000 if RECSITE_TLS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = RECSITE_TLS
SECURE_HSTS_PRELOAD = RECSITE_TLS
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

# RECSITE_LOG_FORMAT=json: one JSON object per line (python-json-logger), for log shippers; "plain" (the default)
# for people reading a terminal. The key=value pairs of a message stay in "message" either way.
LOG_FORMAT = os.environ.get("RECSITE_LOG_FORMAT", "plain").strip().lower()
if LOG_FORMAT not in {"plain", "json"}:
    raise ImproperlyConfigured(f"RECSITE_LOG_FORMAT={LOG_FORMAT!r}: use plain or json")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # Only the chosen formatter is configured (dictConfig builds every one it is given).
    "formatters": {
        "console": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"} if LOG_FORMAT == "plain" else {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger", "process": "pid"},
        },
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "console"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"django.channels.server": {"level": "WARNING"}},
}

# Prometheus samples of every process (web, trainer, light worker) go to files in one directory; a web process's
# /metrics reads them all (experiments/observability.py). Set before prometheus_client is first imported.
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(BASE_DIR / "var" / "metrics"))
os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)
# GET /metrics: with RECSITE_METRICS_TOKEN set, only for "Authorization: Bearer <token>"; without one, open in
# development and closed (403) in production unless RECSITE_METRICS_PUBLIC=1 (a scraper on a private network).
METRICS_TOKEN = os.environ.get("RECSITE_METRICS_TOKEN", "")
METRICS_PUBLIC = env_bool("RECSITE_METRICS_PUBLIC", RECSITE_DEV)

# Product knobs.
RECSITE = {
    # A click later than this after its impression is stored as late and not counted.
    "ATTRIBUTION_WINDOW_S": env_float("RECSITE_ATTRIBUTION_WINDOW_S", 30 * 60),
    # Business events (POST /api/v1/events): a ``ts`` more than this ahead of the server's clock is refused, and an
    # event up to this long before its impression still counts (client clocks drift). Older than MAX_AGE: refused
    # (history goes through ``import_events``).
    "EVENT_CLOCK_SKEW_S": env_float("RECSITE_EVENT_CLOCK_SKEW_S", 300.0),
    "EVENT_MAX_AGE_S": env_float("RECSITE_EVENT_MAX_AGE_S", 7 * 24 * 3600.0),
    "MAX_K": int(os.environ.get("RECSITE_MAX_K", 100)),
    # Serving guardrail metrics (experiments/serving/health.py): each web process adds its per-arm counts to Redis
    # this often; the guardrails and the dashboard judge the last GUARDRAIL_WINDOW_MINUTES (1-120) of them.
    "HEALTH_FLUSH_S": env_float("RECSITE_HEALTH_FLUSH_S", 5.0),
    "GUARDRAIL_WINDOW_MINUTES": int(os.environ.get("RECSITE_GUARDRAIL_WINDOW_MINUTES", 15)),
    "MAX_BULK_ROWS": int(os.environ.get("RECSITE_MAX_BULK_ROWS", 10_000)),
    # API key for ingestion (items, users). Without one, ingestion is closed (403) unless PUBLIC_INGEST.
    "API_KEY": os.environ.get("RECSITE_API_KEY", ""),
    # The explicit way to open ingestion without a key; on by default only in development.
    "PUBLIC_INGEST": env_bool("RECSITE_PUBLIC_INGEST", RECSITE_DEV),
    # With an API key set, also require it on recommendations and clicks (a shop that calls us from its servers).
    "API_KEY_EVENTS": env_bool("RECSITE_API_KEY_EVENTS", False),
    # Per-serving-process cache of returning users (id, attributes): a byte budget and an age limit.
    "USER_CACHE_MAX_BYTES": int(env_float("RECSITE_USER_CACHE_MB", 32.0) * 1024 * 1024),
    "USER_CACHE_TTL_S": env_float("RECSITE_USER_CACHE_TTL_S", 5.0),
    # A shopper's session history (for arms that rank on it) starts over after this long without an impression.
    "SESSION_IDLE_S": env_float("RECSITE_SESSION_IDLE_S", 1800.0),
    # An open dashboard WebSocket re-checks its login this often (capped at 60 s) and closes with 4401 after logout.
    "WS_SESSION_RECHECK_S": env_float("RECSITE_WS_SESSION_RECHECK_S", 30.0),
    # Serving processes hear of new model versions on Redis pub/sub and poll the database as a fallback:
    # this often while subscribed, and at the fast interval while the subscription is down.
    "SERVING_POLL_SUBSCRIBED_S": env_float("RECSITE_SERVING_POLL_SUBSCRIBED_S", 5.0),
    "SERVING_POLL_S": env_float("RECSITE_SERVING_POLL_S", 0.25),
    # Trainer, light worker and beat check in this often; one silent for CHECKIN_STALE_S is named as missing.
    "CHECKIN_INTERVAL_S": env_float("RECSITE_CHECKIN_INTERVAL_S", 5.0),
    "CHECKIN_STALE_S": env_float("RECSITE_CHECKIN_STALE_S", 20.0),
    # Impressions older than this many days are dropped, a day partition at a time (0, the default, keeps everything:
    # an upgrade never deletes history on its own).
    "IMPRESSION_RETENTION_DAYS": int(os.environ.get("RECSITE_IMPRESSION_RETENTION_DAYS", 0)),
}
