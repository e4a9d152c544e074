"""Test settings: the real PostgreSQL and Redis at their local defaults.

Each pytest-xdist worker gets its own Redis database so that flushing the cache between
tests never touches another worker's counters (pytest-django already gives each worker
its own PostgreSQL database).
"""

import os

os.environ.setdefault("DJANGO_SECRET_KEY", "test-only-secret-key-not-for-production-use-0123456789")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/paymentflow")

_worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
_redis_db = 1 + int("".join(ch for ch in _worker if ch.isdigit()) or 0) % 15
os.environ.setdefault("REDIS_URL", f"redis://127.0.0.1:6379/{_redis_db}")

from paymentflow.settings.base import *  # noqa: E402,F403
from paymentflow.settings.base import DATABASES  # noqa: E402

DEBUG = False
# Argon2 is the production hasher (base.py); hashing with it thousands of times would make
# the suite slow without testing anything of ours, so tests hash with MD5.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Threads in concurrency tests hold their own connections; do not keep them around.
DATABASES["default"]["CONN_MAX_AGE"] = 0
DATABASES["default"]["CONN_HEALTH_CHECKS"] = False
AUTH_THROTTLE_RATE = "10000/minute"
ALLOWED_HOSTS = ["*"]
