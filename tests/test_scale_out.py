"""Two app instances on one database through a real PgBouncer, and one Redis: they behave
as one service (issue 14; shared/API.md, "Scale-out").

The module starts its own deployment (paymentflow/testing/cluster.py): a database
`test_paymentflow_<run>_scaleout`, a PgBouncer in transaction pooling mode on a free port
(strict: a client sending startup options is refused), two gunicorn instances (production
settings, `DATABASE_POOLER=transaction`, 2 workers x 2 threads each, their own metrics
directories) and a Redis key prefix of this run. Every request of a test is sent to one
instance or the other, and bursts are split over both. No PgBouncer on the machine is a
failure with the reason, never a skip: `.ci/run` installs it.

Client addresses: the instances trust one proxy (`NUM_PROXIES=1`, as behind the balancer),
so each test user registers from its own documentation address (X-Forwarded-For,
198.51.100.0/24) and the throttle test uses one address for every attempt.
"""

from __future__ import annotations

import itertools
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal

import psycopg
import pytest
import redis
import requests
from django.conf import settings
from django_ratelimit.core import _get_window
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families
from psycopg import sql

from paymentflow.testing.cluster import ROOT, Gunicorn, PgBouncer, PgBouncerUnavailable
from paymentflow.testing.concurrency import REQUEST_TIMEOUT, Post, post_at_once

pytestmark = pytest.mark.concurrency

INSTANCES = 2
POOL_SIZE = 4  # server connections PgBouncer may open: fewer than the instances' 8 threads
THROTTLE_LIMIT = 10
PASSWORD = "Scale-out-Pass-93!"
_addresses = (f"198.51.100.{n}" for n in itertools.count(1))


@dataclass
class Deployment:
    bouncer: PgBouncer
    instances: list[Gunicorn]
    database: str
    env: dict
    metrics_token: str

    @property
    def urls(self) -> list[str]:
        return [instance.url for instance in self.instances]

    def manage(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )


def _server() -> dict:
    """The PostgreSQL the suite runs on: PgBouncer's upstream."""
    db = settings.DATABASES["default"]
    return {"host": db["HOST"] or "127.0.0.1", "port": int(db["PORT"] or 5432), "user": db["USER"] or "postgres"}


def _postgres():
    return psycopg.connect(**_server(), dbname="postgres", autocommit=True)


@pytest.fixture(scope="module")
def deployment():
    run = settings.TEST_RUN_ID
    database = f"test_paymentflow_{run}_scaleout"  # dropped by the next run if this one is killed
    key_prefix = f"test:{run}:scaleout"
    with _postgres() as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    upstream = _server()
    bouncer = PgBouncer(
        databases=[database],
        pool_size=POOL_SIZE,
        upstream_host=upstream["host"],
        upstream_port=upstream["port"],
        user=upstream["user"],
    )
    instances: list[Gunicorn] = []
    try:
        try:
            bouncer.start()
        except PgBouncerUnavailable as exc:
            pytest.fail(f"The scale-out test needs PgBouncer, which could not start: {exc}", pytrace=False)
        env = {
            **_clean_environment(),
            "DJANGO_SETTINGS_MODULE": "paymentflow.settings.production",
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),  # one key: a token from one instance is good on all
            "DJANGO_SECURE_SSL_REDIRECT": "0",
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DATABASE_URL": bouncer.url(database),
            "DATABASE_POOLER": "transaction",
            "REDIS_URL": settings.CACHES["default"]["LOCATION"],
            "REDIS_KEY_PREFIX": key_prefix,
            "AUTH_THROTTLE_RATE": f"{THROTTLE_LIMIT}/minute",
            "NUM_PROXIES": "1",
            "METRICS_TOKEN": secrets.token_urlsafe(24),
            "LOG_LEVEL": "WARNING",
        }
        migrated = subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=env, capture_output=True, text=True
        )
        assert migrated.returncode == 0, f"migrate through PgBouncer failed:\n{migrated.stdout}{migrated.stderr}"
        for _ in range(INSTANCES):
            instances.append(Gunicorn(env=env, workers=2, threads=2).start())
        yield Deployment(bouncer, instances, database, env, env["METRICS_TOKEN"])
    finally:
        for instance in instances:
            instance.stop()
        bouncer.stop()
        with _postgres() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))
        raw = redis.Redis.from_url(settings.CACHES["default"]["LOCATION"])
        for key in raw.scan_iter(match=f"{key_prefix}:*", count=1000):
            raw.delete(key)


def _clean_environment() -> dict:
    """This process's environment less what configures the app (the instances get their own)."""
    import os

    prefixes = ("DJANGO_", "DATABASE_", "REDIS_", "STRIPE_", "PROMETHEUS_", "METRICS_", "PYTEST_")
    return {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}


# --- A client of the deployment -------------------------------------------------------------------------


@dataclass
class Account:
    email: str
    address: str  # the client address it comes from (X-Forwarded-For)
    id: str = ""
    access: str = ""
    refresh: str = ""

    def headers(self, **extra) -> dict:
        return {"Authorization": f"Bearer {self.access}", "X-Forwarded-For": self.address, **extra}


def call(server: str, method: str, path: str, *, account: Account | None = None, json=None, headers=None):
    all_headers = account.headers() if account else {}
    all_headers.update(headers or {})
    return requests.request(method, f"{server}/api/v1{path}", json=json, headers=all_headers, timeout=REQUEST_TIMEOUT)


def register(server: str, *, role: str = "USER") -> Account:
    account = Account(email=f"{secrets.token_hex(6)}@scale-out.example.com", address=next(_addresses))
    response = call(
        server,
        "POST",
        "/auth/register",
        json={"email": account.email, "password": PASSWORD, "role": role},
        headers={"X-Forwarded-For": account.address},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    account.id, account.access, account.refresh = body["user"]["id"], body["accessToken"], body["refreshToken"]
    return account


def balance(server: str, account: Account) -> Decimal:
    response = call(server, "GET", "/wallet", account=account)
    assert response.status_code == 200, response.text
    return Decimal(response.json()["balance"])


def deposit(server: str, account: Account, amount: str) -> None:
    response = call(server, "POST", "/wallet/deposit", account=account, json={"amount": amount})
    assert response.status_code == 200, response.text


def create_product(server: str, merchant: Account, *, price: str, units: int) -> dict:
    response = call(
        server,
        "POST",
        "/products",
        account=merchant,
        json={"name": f"scale-out {secrets.token_hex(3)}", "price": price, "availableUnits": units},
    )
    assert response.status_code == 201, response.text
    return response.json()


def outcomes(responses) -> Counter:
    """Counter of (status, code or None)."""
    return Counter((r.status_code, r.json().get("code") if r.status_code >= 400 else None) for r in responses)


# --- The tests ------------------------------------------------------------------------------------------


class TestAuthAcrossInstances:
    def test_register_on_one_log_in_on_the_other(self, deployment):
        a, b = deployment.urls
        account = register(a)
        response = call(
            b,
            "POST",
            "/auth/login",
            json={"email": account.email, "password": PASSWORD},
            headers={"X-Forwarded-For": account.address},
        )
        assert response.status_code == 200, response.text
        assert response.json()["user"]["id"] == account.id
        me = call(b, "GET", "/auth/me", account=account)  # a token issued by A is good on B
        assert me.status_code == 200 and me.json()["email"] == account.email

    def test_logout_on_one_blocks_the_refresh_token_on_the_other(self, deployment):
        a, b = deployment.urls
        account = register(a)
        assert (
            call(a, "POST", "/auth/logout", account=account, json={"refreshToken": account.refresh}).status_code == 204
        )
        response = call(b, "POST", "/auth/refresh", json={"refreshToken": account.refresh})
        assert response.status_code == 401, response.text
        assert response.json()["code"] == "TOKEN_NOT_VALID"

    def test_a_refresh_token_rotated_on_one_is_spent_on_the_other(self, deployment):
        a, b = deployment.urls
        account = register(a)
        assert call(a, "POST", "/auth/refresh", json={"refreshToken": account.refresh}).status_code == 200
        assert call(b, "POST", "/auth/refresh", json={"refreshToken": account.refresh}).status_code == 401

    def test_the_auth_throttle_counts_the_requests_to_every_instance_together(self, deployment):
        # Sequential, alternating instances, one client address: each instance alone would
        # allow THROTTLE_LIMIT per worker process; together they allow THROTTLE_LIMIT.
        address = _address_with_a_window_of_at_least(seconds=40)
        statuses = [
            call(
                server,
                "POST",
                "/auth/login",
                json={"email": "nobody@scale-out.example.com", "password": "wrong-password"},
                headers={"X-Forwarded-For": address},
            ).status_code
            for server in itertools.islice(itertools.cycle(deployment.urls), THROTTLE_LIMIT + 6)
        ]
        assert statuses == [401] * THROTTLE_LIMIT + [429] * 6


def _address_with_a_window_of_at_least(*, seconds: int) -> str:
    """A client address whose throttle window (fixed, its end staggered per address by
    django-ratelimit) has `seconds` left, so that the sequence above never straddles two
    windows (it did once, on a loaded machine, when the address was fixed)."""
    for last in range(1, 255):
        address = f"203.0.113.{last}"
        if _get_window(address, 60) - time.time() >= seconds:
            return address
    raise AssertionError("no test address has a throttle window with enough time left")


class TestMoneyAcrossInstances:
    def test_one_idempotency_key_sent_to_both_at_once_deposits_once(self, deployment):
        a, b = deployment.urls
        buyer = register(a)
        key = {"Idempotency-Key": f"scale-out-{secrets.token_hex(8)}"}
        posts = [
            Post("/api/v1/wallet/deposit", json={"amount": "25.00"}, headers=buyer.headers(**key), server=server)
            for server in [a, b] * 4
        ]
        responses = post_at_once(None, posts)

        assert set(outcomes(responses)) <= {(200, None), (409, "IDEMPOTENCY_REQUEST_IN_PROGRESS")}
        bodies = {r.text for r in responses if r.status_code == 200}
        assert len(bodies) == 1  # the first answer, replayed byte for byte
        assert balance(b, buyer) == Decimal("25.00")
        ledger = call(a, "GET", "/wallet/transactions", account=buyer).json()
        assert ledger["meta"]["total"] == 1
        replay = call(b, "POST", "/wallet/deposit", account=buyer, json={"amount": "25.00"}, headers=key)
        assert replay.status_code == 200 and replay.text in bodies
        assert replay.headers["Idempotent-Replayed"] == "true"

    def test_one_idempotency_key_sent_to_both_at_once_buys_once(self, deployment):
        a, b = deployment.urls
        buyer, merchant = register(a), register(b, role="MERCHANT")
        deposit(a, buyer, "50.00")
        product = create_product(b, merchant, price="4.00", units=10)
        key = {"Idempotency-Key": f"scale-out-{secrets.token_hex(8)}"}
        body = {"productId": product["id"], "paymentMethod": "WALLET", "quantity": 2}
        posts = [Post("/api/v1/orders", json=body, headers=buyer.headers(**key), server=s) for s in [a, b] * 4]
        responses = post_at_once(None, posts)

        assert set(outcomes(responses)) <= {(201, None), (409, "IDEMPOTENCY_REQUEST_IN_PROGRESS")}
        assert len({r.json()["id"] for r in responses if r.status_code == 201}) == 1
        assert balance(a, buyer) == Decimal("42.00")
        assert balance(b, merchant) == Decimal("8.00")
        assert call(a, "GET", f"/products/{product['id']}").json()["availableUnits"] == 8
        assert call(b, "GET", "/orders", account=buyer).json()["meta"]["total"] == 1

    def test_a_purchase_storm_split_over_both_sells_exactly_the_stock(self, deployment):
        a, b = deployment.urls
        merchant = register(a, role="MERCHANT")
        buyers = [register(url) for url in (a, b) * 3]
        for buyer in buyers:
            deposit(a, buyer, "100.00")
        stock = 12
        product = create_product(b, merchant, price="3.00", units=stock)
        body = {"productId": product["id"], "paymentMethod": "WALLET", "quantity": 1}
        posts = [
            Post("/api/v1/orders", json=body, headers=buyer.headers(), server=server)
            for buyer in buyers
            for server in (a, b, a, b, a, b)
        ]
        responses = post_at_once(None, posts)

        assert outcomes(responses) == {(201, None): stock, (400, "PRODUCT_OUT_OF_STOCK"): len(posts) - stock}
        assert call(a, "GET", f"/products/{product['id']}").json()["availableUnits"] == 0
        bought = Counter(r.json()["userId"] for r in responses if r.status_code == 201)
        for buyer in buyers:
            assert balance(b, buyer) == Decimal("100.00") - 3 * bought[buyer.id]
        assert balance(a, merchant) == Decimal("3.00") * stock
        sales = call(b, "GET", "/orders/merchant/sales?limit=1", account=merchant).json()
        assert sales["meta"]["total"] == stock

    def test_a_deposit_and_withdrawal_storm_over_both_leaves_the_balance_exact(self, deployment):
        a, b = deployment.urls
        user = register(a)
        deposit(b, user, "30.00")
        moves = [("deposit", "7.00"), ("withdraw", "11.00")] * 12
        posts = [
            Post(f"/api/v1/wallet/{kind}", json={"amount": amount}, headers=user.headers(), server=server)
            for (kind, amount), server in zip(moves, itertools.cycle((a, a, b, b)), strict=False)
        ]
        responses = post_at_once(None, posts)

        expected, applied = Decimal("30.00"), 1
        for (kind, amount), response in zip(moves, responses, strict=True):
            if response.status_code == 200:
                expected += Decimal(amount) if kind == "deposit" else -Decimal(amount)
                applied += 1
            else:
                assert (kind, response.status_code, response.json()["code"]) == ("withdraw", 400, "INSUFFICIENT_FUNDS")
        assert all(r.status_code == 200 for (kind, _), r in zip(moves, responses, strict=True) if kind == "deposit")
        assert balance(a, user) == balance(b, user) == expected
        history = call(b, "GET", "/wallet/transactions?limit=100", account=user).json()
        assert history["meta"]["total"] == applied
        assert Decimal(history["data"][0]["balanceAfter"]) == expected


class TestCacheAcrossInstances:
    def test_a_product_change_on_one_is_seen_by_the_public_list_on_the_other_at_once(self, deployment):
        a, b = deployment.urls
        merchant = register(a, role="MERCHANT")
        product = create_product(a, merchant, price="5.00", units=3)
        listing = f"/products?merchantId={merchant.id}"
        for _ in range(2):  # B caches the page
            assert [p["price"] for p in call(b, "GET", listing).json()] == ["5.00"]

        assert call(a, "PATCH", f"/products/{product['id']}", account=merchant, json={"price": "6.50"}).ok
        assert [p["price"] for p in call(b, "GET", listing).json()] == ["6.50"]
        assert call(b, "DELETE", f"/products/{product['id']}", account=merchant).status_code == 204
        assert call(a, "GET", listing).json() == []


class TestPgBouncer:
    def test_the_instances_run_through_pgbouncer_in_transaction_mode(self, deployment):
        call(deployment.urls[0], "GET", "/products")  # at least one statement through it
        pools = [p for p in deployment.bouncer.admin_query("SHOW POOLS") if p["database"] == deployment.database]
        assert pools and all(p["pool_mode"] == "transaction" for p in pools)
        stats = next(s for s in deployment.bouncer.admin_query("SHOW STATS") if s["database"] == deployment.database)
        assert stats["total_xact_count"] > 0
        servers = [s for s in deployment.bouncer.admin_query("SHOW SERVERS") if s["database"] == deployment.database]
        assert len(servers) <= POOL_SIZE  # the app's many connections share these few

    def test_a_statement_whose_client_died_is_cancelled_through_pgbouncer(self, deployment):
        """What the README's advice rests on (client_connection_check_interval set on the
        server, since the app may not send it): PgBouncer closes the server connection of a
        client that vanished mid-query, and PostgreSQL then cancels the statement. The
        setting is SET LOCAL here so as not to change the shared server."""
        marker = f"scale-out-dead-client-{secrets.token_hex(4)}"
        client = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import psycopg, sys; c = psycopg.connect(sys.argv[1]); "
                "c.execute('SET LOCAL client_connection_check_interval = 1000'); "
                f"c.execute('SELECT pg_sleep(60) /* {marker} */')",
                deployment.bouncer.url(deployment.database).replace("postgres://", "postgresql://", 1),
            ]
        )
        running = "SELECT count(*) FROM pg_stat_activity WHERE query LIKE %s AND pid <> pg_backend_pid()"
        with _postgres() as conn:
            deadline = time.monotonic() + 30
            while not conn.execute(running, [f"%{marker}%"]).fetchone()[0]:
                assert time.monotonic() < deadline and client.poll() is None, "the statement never started"
                time.sleep(0.1)
            client.kill()
            client.wait()
            deadline = time.monotonic() + 30  # a bound, not a timing assertion: 1 s is expected
            while conn.execute(running, [f"%{marker}%"]).fetchone()[0]:
                assert time.monotonic() < deadline, "PostgreSQL kept running the dead client's statement"
                time.sleep(0.1)


class TestMetricsAcrossWorkers:
    def _scrape(self, deployment, server: str) -> dict:
        response = requests.get(
            f"{server}/metrics", headers={"Authorization": f"Bearer {deployment.metrics_token}"}, timeout=10
        )
        assert response.status_code == 200, response.text
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.text)
            for sample in family.samples
        }

    def _deposits_by_worker(self, instance: Gunicorn) -> dict[int, float]:
        """{worker pid: its own DEPOSIT count}, each worker's metrics files read alone."""
        counts = {}
        for pid in {int(path.stem.rsplit("_", 1)[1]) for path in instance.metrics_directory.glob("counter_*.db")}:
            with tempfile.TemporaryDirectory() as alone:
                shutil.copy(instance.metrics_directory / f"counter_{pid}.db", alone)
                registry = CollectorRegistry()
                MultiProcessCollector(registry, path=alone)
                counts[pid] = registry.get_sample_value("paymentflow_ledger_movements_total", {"type": "DEPOSIT"}) or 0
        return counts

    def test_every_scrape_counts_what_every_worker_did(self, deployment):
        instance = deployment.instances[0]
        server = instance.url
        user = register(server)
        deposits_key = ("paymentflow_ledger_movements_total", (("type", "DEPOSIT"),))
        requests_key = ("django_http_requests_total_by_method_total", (("method", "POST"),))
        before = self._scrape(deployment, server)

        sent = 0
        for _wave in range(10):  # until at least two workers have served deposits
            responses = post_at_once(
                None,
                [Post("/api/v1/wallet/deposit", json={"amount": "1.00"}, headers=user.headers(), server=server)] * 8,
            )
            assert all(r.status_code == 200 for r in responses)
            sent += len(responses)
            by_worker = self._deposits_by_worker(instance)
            if sum(1 for count in by_worker.values() if count > 0) >= 2:
                break
        assert sum(1 for count in by_worker.values() if count > 0) >= 2, by_worker

        for _ in range(6):  # any worker may answer the scrape; each answers for all of them
            after = self._scrape(deployment, server)
            assert after[deposits_key] - before.get(deposits_key, 0) == sent
            assert after[requests_key] - before.get(requests_key, 0) >= sent

    def test_metrics_need_the_token(self, deployment):
        server = deployment.urls[1]
        assert requests.get(f"{server}/metrics", timeout=10).status_code == 401
        wrong = requests.get(f"{server}/metrics", headers={"Authorization": "Bearer nope"}, timeout=10)
        assert wrong.status_code == 401


def test_the_ledger_reconciles_and_no_instance_logged_an_error(deployment):
    # Last in the module: every test above moved money and stock through both instances.
    result = deployment.manage("reconcile_ledger", "--no-progress")
    assert result.returncode == 0, result.stdout + result.stderr
    for instance in deployment.instances:  # no 5xx, no traceback
        log = instance.log_tail(lines=10_000)
        assert "Traceback" not in log and " ERROR " not in log and "[ERROR]" not in log, log[-3000:]
