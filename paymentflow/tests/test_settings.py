"""DATABASE_POOLER (paymentflow/settings/base.py): what the settings send PostgreSQL with
and without PgBouncer in front. Each case imports the production settings in a fresh
interpreter with its own environment. (The real PgBouncer: tests/test_scale_out.py.)"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
REDIS = "redis://127.0.0.1:6379/0"  # never connected to: loading the settings is all
SHOW_DATABASE = (
    "import json; from paymentflow.settings import production as s; "
    "print(json.dumps({'engine': s.DATABASES['default']['ENGINE'], "
    "'options': s.DATABASES['default']['OPTIONS'], "
    "'server_side_cursors_off': s.DATABASES['default'].get('DISABLE_SERVER_SIDE_CURSORS', False)}))"
)


def load(**env) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "DJANGO_", "REDIS_"))}
    environment.update({"DJANGO_SECRET_KEY": "settings-test-key", "REDIS_URL": REDIS, **env})
    return subprocess.run(
        [sys.executable, "-c", SHOW_DATABASE], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60
    )


def database(**env) -> dict:
    result = load(**env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


POSTGRES = "postgres://app@127.0.0.1:6432/paymentflow"


def test_behind_pgbouncer_nothing_outlives_a_transaction():
    db = database(DATABASE_URL=POSTGRES, DATABASE_POOLER="transaction")
    assert "options" not in db["options"]  # PgBouncer refuses any startup option
    assert db["options"]["prepare_threshold"] is None  # PgBouncer 1.18 cannot carry them
    assert db["options"]["server_side_binding"] is True  # unnamed statements: PgBouncer passes them
    assert db["server_side_cursors_off"] is True
    assert db["engine"] == "django_prometheus.db.backends.postgresql"


def test_connected_directly_statements_are_prepared_and_no_session_setting_is_sent():
    """No startup `options` either way (the killed client's purchase is a transaction that
    PostgreSQL rolls back, orders/tests/test_wallet_purchase_locking.py); directly, what a
    connection runs a 5th time is prepared (docs/PERFORMANCE.md)."""
    db = database(DATABASE_URL=POSTGRES)
    assert "options" not in db["options"]
    assert db["options"]["prepare_threshold"] == 5 and db["options"]["server_side_binding"] is True
    assert db["server_side_cursors_off"] is False


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DATABASE_URL": POSTGRES, "DATABASE_POOLER": "session"}, "DATABASE_POOLER must be unset or 'transaction'"),
        ({"DATABASE_POOLER": "transaction"}, "DATABASE_POOLER needs a PostgreSQL DATABASE_URL"),
        (
            {"DATABASE_URL": POSTGRES + "?options=-c%20statement_timeout%3D5s", "DATABASE_POOLER": "transaction"},
            "PgBouncer refuses startup options",
        ),
    ],
    ids=["unknown-mode", "sqlite", "options-in-the-url"],
)
def test_a_pooler_setting_that_cannot_work_stops_the_start(env, message):
    result = load(**env)
    assert result.returncode != 0 and message in result.stderr


def setting(name: str, **env):
    """The value of one production setting, loaded in a fresh interpreter with `env`."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "DJANGO_", "REDIS_"))}
    environment.update({"DJANGO_SECRET_KEY": "settings-test-key", "REDIS_URL": REDIS, **env})
    code = f"import json; from paymentflow.settings import production as s; print(json.dumps(s.{name}))"
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    "rate", ["5/fortnight", "abc", "0/minute", "-1/minute", "5/", "/minute", "5/minute/x", "1.5/s"]
)
def test_a_malformed_auth_throttle_rate_stops_the_start(rate):
    """Refused when the settings load, naming the variable, not on the first login."""
    result = setting("AUTH_THROTTLE_RATE", AUTH_THROTTLE_RATE=rate)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and "AUTH_THROTTLE_RATE must be" in result.stderr


@pytest.mark.parametrize(
    ("rate", "loaded"),
    [("", "10/minute"), ("5/hour", "5/hour"), ("100/s", "100/s"), (" 3/Day ", "3/day"), ("20/min", "20/min")],
)
def test_a_well_formed_auth_throttle_rate_is_kept(rate, loaded):
    result = setting("AUTH_THROTTLE_RATE", AUTH_THROTTLE_RATE=rate)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == loaded


@pytest.mark.parametrize("redis_url", ["", "  "])
def test_production_refuses_to_start_without_redis(redis_url):
    """Throttle counters, idempotency and caches must be shared by every instance: the
    local-memory fallback of `make run` would give each process its own."""
    result = setting("CACHES", REDIS_URL=redis_url)
    assert result.returncode != 0
    assert "ImproperlyConfigured: REDIS_URL must be set in production" in result.stderr


def test_production_caches_in_redis():
    result = setting("CACHES", REDIS_URL=REDIS)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["default"]["LOCATION"] == REDIS


# --- `make run HOST=0.0.0.0`: the hosts the embedded default serves -------------------------


def make_run_settings(host: str, **env) -> list[str]:
    """ALLOWED_HOSTS as `make run HOST=<host>` loads it: the runserver command that
    `make -n` prints, with its environment, but printing the setting instead of serving."""
    outer_make = ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")  # under `make test`: no "Entering directory" lines
    printed = subprocess.run(
        ["make", "--no-print-directory", "-n", "run", f"HOST={host}", "PORT=8123"],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k not in outer_make},
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    runserver = next(part for part in printed.split(";") if "manage.py runserver" in part).strip(" \\\n")
    assert runserver.endswith(f"manage.py runserver {host}:8123"), runserver
    show = (
        f"{sys.executable} -c 'import json, django; django.setup(); "
        "from django.conf import settings; print(json.dumps(settings.ALLOWED_HOSTS))'"
    )
    command = runserver.replace(runserver[runserver.index(".venv/bin/python") :], show)
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "DJANGO_", "REDIS_"))}
    environment.update({"DJANGO_SETTINGS_MODULE": "paymentflow.settings.base", **env})
    result = subprocess.run(["sh", "-c", command], cwd=ROOT, env=environment, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def machine_addresses() -> list[str]:
    """This machine's addresses as `hostname -I` lists them (Linux)."""
    try:
        listed = subprocess.run(["hostname", "-I"], capture_output=True, text=True, timeout=10).stdout.split()
    except FileNotFoundError:
        pytest.skip("no `hostname -I` here")
    if not listed:
        pytest.skip("this machine has no address but loopback")
    return [f"[{address}]" if ":" in address else address for address in listed]


def serves(allowed: list[str], host: str) -> bool:
    from django.http.request import validate_host

    return validate_host(host, allowed)


def test_make_run_on_every_address_serves_the_machines_addresses():
    allowed = make_run_settings("0.0.0.0")
    for address in [*machine_addresses(), "localhost", "127.0.0.1", socket.gethostname().lower()]:
        assert serves(allowed, address), (address, allowed)
    assert not serves(allowed, "evil.example") and not serves(allowed, "203.0.113.9")


def test_make_run_on_one_address_serves_that_address():
    allowed = make_run_settings("192.0.2.77")
    assert serves(allowed, "192.0.2.77") and serves(allowed, "localhost")
    assert not serves(allowed, "192.0.2.78")


def test_make_run_by_default_serves_loopback_only():
    assert make_run_settings("127.0.0.1") == ["localhost", "127.0.0.1"]


def test_django_allowed_hosts_wins_whatever_make_run_listens_on():
    allowed = make_run_settings("0.0.0.0", DJANGO_ALLOWED_HOSTS="api.example.com,10.1.2.3")
    assert allowed == ["api.example.com", "10.1.2.3"]
