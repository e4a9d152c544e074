"""Settings shared by every environment, read from the environment (12-factor).

The variable names are fixed by the wire contract (shared/API.md, "Running it").
With nothing set, the app runs on an embedded default: SQLite and the local-memory cache.
`test.py` and `production.py` start from this module and change only what they must.
"""

import warnings
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from paymentflow.settings.env import (
    env,
    env_bool,
    env_decimal,
    env_int,
    env_list,
    env_rate,
    env_seconds,
    env_seconds_list,
)
from paymentflow.settings.hosts import default_allowed_hosts
from paymentflow.timeouts import refund_lease_seconds

BASE_DIR = Path(__file__).resolve().parent.parent.parent

DEBUG = env_bool("DJANGO_DEBUG", False)

# A dev-only key exists solely so `make run` works with nothing configured; with debug off
# the key must come from the environment.
SECRET_KEY = env("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY is required when DJANGO_DEBUG is not 1.")
    SECRET_KEY = "dev-only-insecure-key-never-use-in-production-0123456789abcdef"

# Unset: loopback, and under `make run HOST=...` what runserver listens on (hosts.py).
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "") or default_allowed_hosts(env("DJANGO_RUNSERVER_HOST", ""))
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", "")
CORS_ALLOWED_ORIGINS = env_list("CORS_ALLOWED_ORIGINS", "")
# Browsers on an allowed origin may send and read the headers the contract uses.
CORS_ALLOW_HEADERS = ["accept", "authorization", "content-type", "idempotency-key", "x-request-id"]
CORS_EXPOSE_HEADERS = ["X-Total-Count", "Link", "X-Request-ID", "Retry-After", "Idempotent-Replayed"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "axes",
    "rest_framework",
    "rest_framework_simplejwt",
    "rest_framework_simplejwt.token_blacklist",
    "django_filters",
    "corsheaders",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_prometheus",
    "django_tasks",
    "django_tasks_db",
    "paymentflow.api.apps.ApiConfig",
    "paymentflow.jobs",
    "accounts",
    "payments",
    "wallets",
    "catalog",
    "orders",
    "webhooks",
    "demo",
]

MIDDLEWARE = [
    # First and last: django-prometheus times everything in between (paymentflow/metrics.py).
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "paymentflow.middleware.RequestIDMiddleware",
    # From the request's start: all of its Stripe calls end within STRIPE_REQUEST_DEADLINE_SECONDS.
    "payments.middleware.StripeDeadlineMiddleware",
    # As high as possible (corsheaders' advice), so that refusals carry CORS headers too.
    "corsheaders.middleware.CorsMiddleware",
    # Before anything that reads the Host header or the query string (see its docstring).
    "paymentflow.middleware.ApiExceptionMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "djangorestframework_camel_case.middleware.CamelCaseMiddleWare",
    # Last but django-prometheus's timer, as django-axes requires: turns a locked-out admin login into its lockout page.
    "axes.middleware.AxesMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "paymentflow.urls"
# A CSRF refusal on an API path answers with the error envelope, never Django's HTML page.
CSRF_FAILURE_VIEW = "paymentflow.api.views.csrf_failure"
WSGI_APPLICATION = "paymentflow.wsgi.application"

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
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------
# SQLite uses IMMEDIATE transactions so that concurrent writers queue on the database lock
# instead of failing half-way with "database is locked" on lock upgrade.
SQLITE_PATH = BASE_DIR / "db.sqlite3"
DATABASES = {
    "default": dj_database_url.config(
        env="DATABASE_URL",
        default=f"sqlite:///{SQLITE_PATH}",
        conn_max_age=env_int("DB_CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
# `transaction`: DATABASE_URL points at PgBouncer in transaction pooling mode, where each
# transaction (or autocommitted statement) may run on a different server connection
# (README "Scale-out", docs/ARCHITECTURE.md "PgBouncer").
DATABASE_POOLER = env("DATABASE_POOLER", "").lower()
if DATABASE_POOLER not in ("", "transaction"):
    raise ImproperlyConfigured(f"DATABASE_POOLER must be unset or 'transaction', got {DATABASE_POOLER!r}.")
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    if DATABASE_POOLER:
        raise ImproperlyConfigured("DATABASE_POOLER needs a PostgreSQL DATABASE_URL (PgBouncer).")
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
else:
    # No session settings (startup `options`, ...): behind PgBouncer in transaction pooling
    # they would not follow the connection; a transaction sets what it needs (SET LOCAL).
    # Parameters are bound by the server (unnamed statements, which PgBouncer passes).
    DATABASES["default"].setdefault("OPTIONS", {})
    DATABASES["default"]["OPTIONS"].setdefault("connect_timeout", 5)
    DATABASES["default"]["OPTIONS"]["server_side_binding"] = True
    if DATABASE_POOLER == "transaction":
        if "options" in DATABASES["default"]["OPTIONS"]:
            raise ImproperlyConfigured("PgBouncer refuses startup options: drop `options` from DATABASE_URL.")
        # Nothing may outlive a transaction: no named (server-side) cursors, no prepared
        # statements, and no startup `options` (PgBouncer refuses the connection). Session
        # settings belong on the server: `ALTER DATABASE ... SET` (README "Scale-out").
        DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = True
        DATABASES["default"]["OPTIONS"]["prepare_threshold"] = None
    else:
        # A statement a connection runs a 5th time is prepared (parsed and planned once): a
        # third less PostgreSQL CPU per wallet purchase (docs/PERFORMANCE.md). Not behind
        # PgBouncer: 1.18 (Debian 12) cannot carry them across its server connections.
        DATABASES["default"]["OPTIONS"]["prepare_threshold"] = 5
# Query counts and timings for /metrics (paymentflow/metrics.py): django-prometheus's
# wrappers of the same backends.
DATABASES["default"]["ENGINE"] = DATABASES["default"]["ENGINE"].replace(
    "django.db.backends.", "django_prometheus.db.backends.", 1
)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache (product list, throttle counters) --------------------------------------------
REDIS_URL = env("REDIS_URL", "")
if REDIS_URL:
    CACHES = {
        "default": {
            # django-redis, with get/hit/miss counters for /metrics (django-prometheus).
            "BACKEND": "django_prometheus.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            # Every instance of one deployment shares the prefix, and so the throttle counters
            # and the product cache; another deployment on the same Redis takes its own.
            "KEY_PREFIX": env("REDIS_KEY_PREFIX", "pf"),
            "OPTIONS": {
                "CLIENT_CLASS": "django_redis.client.DefaultClient",
                # Short timeouts: a Redis outage must cost milliseconds, not a hung request.
                "SOCKET_CONNECT_TIMEOUT": 0.25,
                "SOCKET_TIMEOUT": 0.25,
                "IGNORE_EXCEPTIONS": True,
            },
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
# A cache failure is logged and treated as a miss, never raised to the client.
DJANGO_REDIS_IGNORE_EXCEPTIONS = True
DJANGO_REDIS_LOG_IGNORED_EXCEPTIONS = True
DJANGO_REDIS_LOGGER = "paymentflow.cache"

# --- Auth ---------------------------------------------------------------------------------
AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "accounts.lockout.BackOfficeLoginBackend",  # first: refuses a locked-out admin login
    "django.contrib.auth.backends.ModelBackend",
]
# The back office's login locks out after 5 failures for one account (from anywhere) or from
# one address (for any account), for 15 minutes; accounts/lockout.py, README "Back office".
AXES_FAILURE_LIMIT = 5
AXES_COOLOFF_TIME = timedelta(minutes=15)
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_ONLY_ADMIN_SITE = True
AXES_HANDLER = "accounts.lockout.BackOfficeAxesHandler"
AXES_USERNAME_CALLABLE = "accounts.lockout.attempted_email"
AXES_CLIENT_IP_CALLABLE = "accounts.lockout.client_address"
AXES_RESET_ON_SUCCESS = True
AXES_ENABLE_ACCESS_FAILURE_LOG = True  # each failure, for staff (admin: Axes, "Access failures")
AXES_LOCKOUT_TEMPLATE = "admin/locked_out.html"
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher",
    "django.contrib.auth.hashers.ScryptPasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 8},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# Without collectstatic (make run, tests) WhiteNoise serves straight from the finders, and
# the missing STATIC_ROOT is expected rather than worth a warning.
WHITENOISE_USE_FINDERS = True
warnings.filterwarnings("ignore", message="No directory at")

# Bodies above this are refused (413 from the API layer) before any parsing.
DATA_UPLOAD_MAX_MEMORY_SIZE = 256 * 1024

# --- Django REST framework ----------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.JWTAuthentication",
    ],
    # Every endpoint needs a token unless it is explicitly marked public (see
    # paymentflow.api.permissions.Public).
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["paymentflow.api.renderers.CamelCaseJSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["paymentflow.api.parsers.JSONParser"],
    "DEFAULT_PAGINATION_CLASS": "paymentflow.api.pagination.PagePagination",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "paymentflow.api.schema.AutoSchema",
    "EXCEPTION_HANDLER": "paymentflow.api.exceptions.api_exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    # Count the client address from REMOTE_ADDR unless a known number of proxies is in front.
    "NUM_PROXIES": env_int("NUM_PROXIES", 0),
    "COERCE_DECIMAL_TO_STRING": True,
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
JSON_CAMEL_CASE = {
    "RENDERER_CLASS": "rest_framework.renderers.JSONRenderer",
    "PARSER_CLASS": "rest_framework.parsers.JSONParser",
}

# Checked here (paymentflow/settings/env.py), so a malformed rate stops the start.
AUTH_THROTTLE_RATE = env_rate("AUTH_THROTTLE_RATE", "10/minute")
# paymentflow.api.throttling counts through django-ratelimit (not an installed app: its
# system check refuses the local-memory cache, which is what `make run` uses, rightly for
# several processes and harmlessly for one). A cache outage lets attempts through.
RATELIMIT_FAIL_OPEN = True
RATELIMIT_CACHE_PREFIX = "throttle:"

SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=env_int("JWT_ACCESS_MINUTES", 15)),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=env_int("JWT_REFRESH_DAYS", 7)),
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    "UPDATE_LAST_LOGIN": False,
    "ALGORITHM": "HS256",
    "AUTH_HEADER_TYPES": ("Bearer",),
    "USER_ID_FIELD": "id",
    "USER_ID_CLAIM": "sub",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Payment Flow API",
    "DESCRIPTION": (
        "Wallets, products, orders and Stripe payments. JSON is camelCase; money is a "
        "two-decimal string; every error has the envelope described by `Error`."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.contrib.djangorestframework_camel_case.camelize_serializer_fields",
        "drf_spectacular.hooks.postprocess_schema_enums",
        "paymentflow.api.schema.document_money_outputs",
    ],
    # ReDoc's sections, in this order; every operation carries one of these tags.
    "TAGS": [
        {"name": "service", "description": "Where the API's documents and health probes are."},
        {
            "name": "auth",
            "description": "Register, log in, refresh and revoke tokens. Send the access token as "
            "`Authorization: Bearer <accessToken>` (the scheme name in any case).",
        },
        {
            "name": "wallet",
            "description": "The caller's wallet: balance, deposits, withdrawals, card top-ups and the ledger of "
            "every movement. Money-moving requests accept an `Idempotency-Key` header.",
        },
        {"name": "products", "description": "The public catalogue, and merchants' own products and stock."},
        {
            "name": "orders",
            "description": "Buying from the wallet or by card (Stripe Checkout), refunds by the merchant, "
            "cancels by the buyer, and both sides' order lists.",
        },
        {"name": "webhooks", "description": "Endpoints called by Stripe, not by API clients."},
        {
            "name": "webhook endpoints",
            "description": "Merchants' HTTPS endpoints that receive their order events (`order.completed`, "
            "`order.refunded`, `order.cancelled`, `order.failed`), signed per the Standard Webhooks "
            "specification and retried, and the deliveries made to them.",
        },
    ],
    "ENUM_NAME_OVERRIDES": {},
}

# --- Business rules -------------------------------------------------------------------------
CURRENCY = env("CURRENCY", "USD").upper()
MAXIMUM_DEPOSIT = env_decimal("MAXIMUM_DEPOSIT", Decimal("10000.00"))
MINIMUM_WITHDRAWAL = env_decimal("MINIMUM_WITHDRAWAL", Decimal("1.00"))
WALLET_DIRECT_DEPOSITS = env_bool("WALLET_DIRECT_DEPOSITS", True)
# A wallet purchase waits at most this long for a row lock (the product, a wallet), then
# answers 503 DATABASE_BUSY, so requests never pile up behind a stuck lock holder.
PURCHASE_LOCK_TIMEOUT_MS = 5000

# --- Stripe -------------------------------------------------------------------------------
STRIPE_SECRET_KEY = env("STRIPE_SECRET_KEY", "")
STRIPE_WEBHOOK_SECRET = env("STRIPE_WEBHOOK_SECRET", "")
STRIPE_API_BASE = env("STRIPE_API_BASE", "")
# Each try of a Stripe call waits at most this long; a call makes up to 1 + retries tries.
STRIPE_TIMEOUT_SECONDS = env_seconds("STRIPE_TIMEOUT_SECONDS", 10)
STRIPE_MAX_NETWORK_RETRIES = env_int("STRIPE_MAX_NETWORK_RETRIES", 2)
if STRIPE_MAX_NETWORK_RETRIES < 0:
    raise ImproperlyConfigured(f"STRIPE_MAX_NETWORK_RETRIES must be 0 or more, got {STRIPE_MAX_NETWORK_RETRIES}.")
# All the Stripe calls of one API request end within this (payments.middleware): below
# gunicorn's worker timeout (gunicorn.conf.py) and HAProxy's server timeout (docs/ARCHITECTURE.md,
# "Operations: timeouts"; paymentflow/tests/test_timeouts.py checks the order).
STRIPE_REQUEST_DEADLINE_SECONDS = env_seconds("STRIPE_REQUEST_DEADLINE_SECONDS", 12)
# How long one card refund attempt holds its payment (the refund lease): derived from the two
# above (paymentflow/timeouts.py); a longer one may be set, a shorter one is refused.
_configured_lease = env_seconds("REFUND_LEASE_SECONDS", 1) if env("REFUND_LEASE_SECONDS") else None
REFUND_LEASE_SECONDS = refund_lease_seconds(STRIPE_TIMEOUT_SECONDS, STRIPE_MAX_NETWORK_RETRIES, _configured_lease)
CHECKOUT_EXPIRES_MINUTES = max(30, env_int("CHECKOUT_EXPIRES_MINUTES", 30))
# Open Checkout Sessions one buyer may hold at once (card orders and top-ups together).
MAX_PENDING_CHECKOUTS = max(1, env_int("MAX_PENDING_CHECKOUTS", 3))
# A card refund whose outcome at Stripe is unknown is made again by `manage.py
# sweep_stripe_refunds` once it is this old (seconds).
REFUND_RETRY_AFTER_SECONDS = env_int("REFUND_RETRY_AFTER_SECONDS", 300)
CHECKOUT_SUCCESS_URL = env("CHECKOUT_SUCCESS_URL", "http://127.0.0.1:8000/checkout/success")
CHECKOUT_CANCEL_URL = env("CHECKOUT_CANCEL_URL", "http://127.0.0.1:8000/checkout/cancel")

# --- Metrics (GET /metrics, paymentflow/metrics.py) -------------------------------------------
# The bearer token Prometheus scrapes with; unset, /metrics answers 404.
METRICS_TOKEN = env("METRICS_TOKEN", "")
# django-prometheus would otherwise query the migration state at start-up.
PROMETHEUS_EXPORT_MIGRATIONS = False

# --- Background work: the task queue, the schedule, merchant webhooks ----------------------
# docs/ARCHITECTURE.md, "Background work". Tasks are rows of our own database
# (django-tasks-db), run by `manage.py run_worker` (`make worker`).
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
#: How long an idle worker sleeps between looks at the queue, and how often each worker's
#: scheduler looks for jobs that are due.
WORKER_POLL_SECONDS = env_seconds("WORKER_POLL_SECONDS", 1)
SCHEDULER_TICK_SECONDS = env_seconds("SCHEDULER_TICK_SECONDS", 5)
#: The worker's own Prometheus endpoint (its webhook, job and drift counters): a port, and
#: the address to listen on (no token there: keep it on an internal network). 0: none.
WORKER_METRICS_PORT = env_int("WORKER_METRICS_PORT", 0)
WORKER_METRICS_ADDRESS = env("WORKER_METRICS_ADDRESS", "127.0.0.1")
#: The schedule: job name -> what it runs (`command`: a management command, with `args`;
#: or `callable`: a dotted path) and how often (`every`, seconds; 0 turns the job off).
#: Each interval can be changed from the environment: SCHEDULE_<JOB NAME>_SECONDS.
SCHEDULED_JOBS = {
    # Card orders and top-ups whose Checkout Session should be over (payments.sweeps).
    "expire_pending_checkouts": {"command": "expire_pending_checkouts", "every": 300},
    # Card refunds whose outcome at Stripe is unknown, and refunds made at Stripe without us.
    "sweep_stripe_refunds": {"command": "sweep_stripe_refunds", "every": 300},
    "purge_idempotency_keys": {"command": "purge_idempotency_keys", "every": 3600},
    "reconcile_ledger": {"command": "reconcile_ledger", "args": ["--no-progress"], "every": 86400},
    "reconcile_stripe": {"command": "reconcile_stripe", "every": 86400},
    # Deliveries whose kick was lost, or whose worker died mid-attempt (lease expired).
    "kick_due_webhook_deliveries": {"callable": "webhooks.delivery.webhook_deliveries_kick_due", "every": 30},
    # Finished task results older than 14 days (django-tasks-db's own command).
    "prune_task_results": {"command": "prune_db_task_results", "args": ["--queue-name", "*"], "every": 86400},
}
for _name, _job in SCHEDULED_JOBS.items():
    _job["every"] = env_int(f"SCHEDULE_{_name.upper()}_SECONDS", _job["every"])

#: Seconds between delivery attempts of a merchant webhook; after the last, FAILED.
WEBHOOK_RETRY_SCHEDULE = env_seconds_list("WEBHOOK_RETRY_SCHEDULE", "5,30,120,600,3600,14400,43200")
#: 1 lets endpoints be plain http:// and point at internal addresses (tests, local work).
WEBHOOK_ALLOW_PRIVATE_URLS = env_bool("WEBHOOK_ALLOW_PRIVATE_URLS", False)
#: One attempt's whole wall-clock budget: connect, TLS, send and read the answer's excerpt.
WEBHOOK_TIMEOUT_SECONDS = env_seconds("WEBHOOK_TIMEOUT_SECONDS", 10)
#: Resolving an endpoint's host (at registration and before each attempt) waits this long.
WEBHOOK_DNS_TIMEOUT_SECONDS = env_seconds("WEBHOOK_DNS_TIMEOUT_SECONDS", 5)
#: An attempt still unfinished after this is taken to be dead (its worker killed) and is
#: made again by any worker: above the timeout, and with the kick job's interval well
#: under the contract's 2 minutes.
WEBHOOK_LEASE_SECONDS = env_seconds("WEBHOOK_LEASE_SECONDS", 60)
#: An endpoint whose every attempt failed for this long is disabled (its merchant sees why).
WEBHOOK_DISABLE_AFTER_HOURS = 24

# --- Logging: every line carries the request id --------------------------------------------
LOG_LEVEL = env("LOG_LEVEL", "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "paymentflow.middleware.RequestIDLogFilter"}},
    "formatters": {
        "plain": {
            "format": "%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s",
        }
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "filters": ["request_id"],
            "formatter": "plain",
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # Our handler already logs unhandled errors once, with the request id.
        "django.request": {"level": "ERROR", "handlers": ["console"], "propagate": False},
        "django.db.backends": {"level": "WARNING"},
        # The worker's scheduler logs two INFO lines per job run ("Running job", "executed
        # successfully"); our own outcome line (paymentflow.jobs) says what the run did.
        "apscheduler": {"level": "WARNING"},
    },
}
