"""What keeps one test run off another's data on a shared machine (settings/test.py names
the run's PostgreSQL database and Redis key prefix after `TEST_RUN_ID`).

- `clear_cache()`: empties this run's cache keys only. django-redis's `cache.clear()` is
  a FLUSHDB, which would also empty the database of any other run on the same Redis.
- `drop_abandoned_test_databases()`: a run that was killed never dropped its database;
  the next run from the same checkout drops those whose starting process is gone.
"""

from __future__ import annotations

import os

from django.conf import settings
from django.core.cache import cache


def clear_cache() -> None:
    if hasattr(cache, "delete_pattern"):  # django-redis: SCAN + DEL of this prefix's keys
        cache.delete_pattern("*")
    else:
        cache.clear()


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def drop_abandoned_test_databases() -> list[str]:
    """Drops `test_paymentflow_<this checkout>_<pid>*` databases whose pid is not running."""
    import psycopg
    from psycopg import sql

    prefix = settings.TEST_DATABASE_PREFIX
    params = settings.DATABASES["default"]
    dropped = []
    try:
        conn = psycopg.connect(
            host=params.get("HOST") or None,
            port=params.get("PORT") or None,
            user=params.get("USER") or None,
            dbname="postgres",
            autocommit=True,
            connect_timeout=5,
        )
    except psycopg.Error:
        return dropped  # the suite's own setup will report an unreachable PostgreSQL
    with conn:
        found = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", [prefix + "%"])
        names = [row[0] for row in found]
        for name in names:
            pid = name[len(prefix) :].split("_", 1)[0]
            if pid.isdigit() and int(pid) != os.getpid() and not _process_alive(int(pid)):
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
                dropped.append(name)
    return dropped
