"""Two test runs on one machine never share a database or a cache key (settings/test.py)."""

import os
import subprocess
import sys

import pytest
import redis
from django.conf import settings
from django.core.cache import cache
from django.db import connection

from paymentflow.testing.isolation import clear_cache, drop_abandoned_test_databases


def test_the_test_database_is_named_after_this_run(db):
    assert os.environ["PAYMENTFLOW_TEST_RUN"] == settings.TEST_RUN_ID
    assert connection.settings_dict["NAME"].startswith(f"test_paymentflow_{settings.TEST_RUN_ID}")


def test_cache_keys_carry_this_runs_prefix():
    cache.set("probe", 1)
    raw = redis.Redis.from_url(settings.CACHES["default"]["LOCATION"])
    key = cache.make_key("probe")
    assert key.startswith(f"test:{settings.TEST_RUN_ID}:")
    assert raw.exists(key)


def test_clearing_the_cache_leaves_another_runs_keys_alone():
    raw = redis.Redis.from_url(settings.CACHES["default"]["LOCATION"])
    other_run_key = "test:another-run:gw0:1:catalog:products:list-version"
    raw.set(other_run_key, 42, ex=60)
    cache.set("mine", 1)
    try:
        clear_cache()
        assert cache.get("mine") is None
        assert raw.get(other_run_key) == b"42"
    finally:
        raw.delete(other_run_key)


def test_another_process_gets_its_own_run_id():
    code = "import paymentflow.settings.test as t; print(t.TEST_RUN_ID, t.DATABASES['default']['TEST']['NAME'])"
    env = {k: v for k, v in os.environ.items() if k != "PAYMENTFLOW_TEST_RUN"}
    run_id, db_name = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env, cwd=settings.BASE_DIR
    ).stdout.split()
    assert run_id != settings.TEST_RUN_ID
    assert db_name == f"test_paymentflow_{run_id}"


@pytest.mark.django_db
def test_a_killed_runs_database_is_dropped_by_the_next_run():
    import psycopg
    from psycopg import sql

    dead_pid = 2**22 + 12345  # above pid_max's default; no such process
    name = f"{settings.TEST_DATABASE_PREFIX}{dead_pid}"
    live_name = f"{settings.TEST_DATABASE_PREFIX}1"  # pid 1 is always running
    with psycopg.connect(dbname="postgres", host="127.0.0.1", user="postgres", autocommit=True) as conn:
        for db_name in (name, live_name):
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(db_name)))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db_name)))
        try:
            dropped = drop_abandoned_test_databases()
            remaining = {row[0] for row in conn.execute("SELECT datname FROM pg_database")}
        finally:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(live_name)))
    assert name in dropped and name not in remaining
    assert live_name in remaining
