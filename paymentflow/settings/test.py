"""Test settings: the real PostgreSQL and Redis at their local defaults.

Two test runs on one machine (two checkouts, or a developer's run beside CI's) never touch
each other: each run has its own id (`TEST_RUN_ID`: the checkout's path hashed, and the
pid of the process that started the run; pytest-xdist workers inherit it), which names its
PostgreSQL test database and prefixes its Redis keys. Within a run each xdist worker has
its own database (pytest-django adds `_gw<n>`) and its own key prefix.
"""

import hashlib
import os
from pathlib import Path

os.environ.setdefault("DJANGO_SECRET_KEY", "test-only-secret-key-not-for-production-use-0123456789")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/paymentflow")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/1")

_checkout = hashlib.sha256(str(Path(__file__).resolve().parent.parent.parent).encode()).hexdigest()[:8]
#: Set once by the process that starts the run, inherited by xdist workers and subprocesses.
TEST_RUN_ID = os.environ.setdefault("PAYMENTFLOW_TEST_RUN", f"{_checkout}_{os.getpid()}")
TEST_DATABASE_PREFIX = f"test_paymentflow_{_checkout}_"
_worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")

from paymentflow.settings.base import *  # noqa: E402,F403
from paymentflow.settings.base import CACHES, DATABASES  # noqa: E402

DEBUG = False
# Argon2 is the production hasher (base.py); hashing with it thousands of times would make
# the suite slow without testing anything of ours, so tests hash with MD5.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Threads in concurrency tests hold their own connections; do not keep them around.
DATABASES["default"]["CONN_MAX_AGE"] = 0
DATABASES["default"]["CONN_HEALTH_CHECKS"] = False
DATABASES["default"]["TEST"] = {"NAME": f"test_paymentflow_{TEST_RUN_ID}"}
CACHES["default"]["KEY_PREFIX"] = f"test:{TEST_RUN_ID}:{_worker}"
AUTH_THROTTLE_RATE = "10000/minute"
ALLOWED_HOSTS = ["*"]
