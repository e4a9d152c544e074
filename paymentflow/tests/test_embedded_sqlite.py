"""`make run`'s embedded SQLite, end to end: the wallet purchase (written once, for every
database: orders.services.order_purchase_with_wallet) and the rest of the API on the
engine `make run` uses.

Everything happens in subprocesses started as `make run` starts the app (default settings,
DJANGO_DEBUG=1, no Redis), on a SQLite file in tmp_path: this test needs neither
pytest-django's database nor PostgreSQL.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent

# Runs with django.setup() in the subprocess; prints one JSON line for the test to check.
SCENARIO = r"""
import json
import re

import django

django.setup()

from django.db import connection
from rest_framework.test import APIClient

PASSWORD = "correct-horse-battery-9"


def register(email, role):
    response = APIClient().post("/api/v1/auth/register", {"email": email, "password": PASSWORD, "role": role})
    assert response.status_code == 201, (response.status_code, response.content)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer " + response.json()["accessToken"])
    return client


def call(client, method, path, body=None):
    response = getattr(client, method)("/api/v1" + path, body)
    return response.status_code, response.json()


buyer = register("buyer@example.com", "USER")
merchant = register("merchant@example.com", "MERCHANT")
product_status, product = call(merchant, "post", "/products", {"name": "Lamp", "price": "25.00", "availableUnits": 10})
deposit_status, _ = call(buyer, "post", "/wallet/deposit", {"amount": "100.00"})
purchase = {"productId": product["id"], "paymentMethod": "WALLET"}
buy_status, order = call(buyer, "post", "/orders", {**purchase, "quantity": 2})
short_status, short = call(buyer, "post", "/orders", {**purchase, "quantity": 3})
print(json.dumps({
    "vendor": connection.vendor,
    "product_status": product_status,
    "deposit_status": deposit_status,
    "buy": [buy_status, order.get("status"), order.get("amount"), order.get("quantity")],
    "short": [short_status, short.get("code"), short.get("details")],
    "buyer_balance": call(buyer, "get", "/wallet")[1]["balance"],
    "merchant_balance": call(merchant, "get", "/wallet")[1]["balance"],
    "units_left": call(buyer, "get", "/products/" + product["id"])[1]["availableUnits"],
    "buyer_orders": [o["status"] for o in call(buyer, "get", "/orders")[1]["data"]],
}))
"""


def _run(args, env):
    result = subprocess.run(
        [sys.executable, *args], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, f"{args[:2]} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_wallet_purchase_end_to_end_on_embedded_sqlite(tmp_path):
    database = tmp_path / "db.sqlite3"
    env = _embedded_env(database)

    _run(["manage.py", "migrate", "--noinput"], env)
    summary = json.loads(_run(["-c", SCENARIO], env).strip().splitlines()[-1])

    assert database.stat().st_size > 0
    assert summary == {
        "vendor": "sqlite",
        "product_status": 201,
        "deposit_status": 200,
        "buy": [201, "COMPLETED", "50.00", 2],
        "short": [400, "INSUFFICIENT_FUNDS", {"required": "75.00", "available": "50.00"}],  # nothing kept
        "buyer_balance": "50.00",
        "merchant_balance": "50.00",
        "units_left": 8,  # the refused purchase's stock take was rolled back
        "buyer_orders": ["COMPLETED"],
    }
    reconciled = _run(["manage.py", "reconcile_ledger", "--no-progress"], env)
    assert "Ledger reconciles: no drift." in reconciled


# Amounts with cents, whose sums are not exact in binary floating point (SQLite keeps
# decimals as REAL): 0.10 + 0.20, 100.30 - 25.10.
CENTS_SCENARIO = (
    SCENARIO.split("buyer = register")[0]
    + r"""
buyer = register("buyer@example.com", "USER")
merchant = register("merchant@example.com", "MERCHANT")
_, product = call(merchant, "post", "/products", {"name": "Lamp", "price": "25.10", "availableUnits": 10})
statuses = [call(buyer, "post", "/wallet/deposit", {"amount": amount})[0] for amount in ["0.10", "0.20", "100.00"]]
buy_status, order = call(buyer, "post", "/orders", {"productId": product["id"], "paymentMethod": "WALLET"})
withdraw_status, _ = call(buyer, "post", "/wallet/withdraw", {"amount": "1.30"})
refund_status, refunded = call(merchant, "post", "/orders/" + order["id"] + "/refund")
print(json.dumps({
    "statuses": statuses + [buy_status, withdraw_status, refund_status],
    "refunded": refunded.get("status"),
    "buyer_balance": call(buyer, "get", "/wallet")[1]["balance"],
    "merchant_balance": call(merchant, "get", "/wallet")[1]["balance"],
}))
"""
)


def test_amounts_with_cents_keep_the_ledger_exact_on_embedded_sqlite(tmp_path):
    database = tmp_path / "db.sqlite3"
    env = _embedded_env(database)
    _run(["manage.py", "migrate", "--noinput"], env)

    summary = json.loads(_run(["-c", CENTS_SCENARIO], env).strip().splitlines()[-1])

    assert summary == {
        "statuses": [200, 200, 200, 201, 200, 200],
        "refunded": "REFUNDED",
        "buyer_balance": "99.00",  # 0.10 + 0.20 + 100.00 - 25.10 - 1.30 + 25.10
        "merchant_balance": "0.00",
    }
    reconciled = _run(["manage.py", "reconcile_ledger", "--no-progress"], env)
    assert "Ledger reconciles: no drift." in reconciled


# A merchant registers a webhook endpoint at the test's receiver, a buyer buys (the
# event is written by the SQLite form of the INSERT ... SELECT), and prints the secret.
WEBHOOK_SCENARIO = (
    SCENARIO.split("buyer = register")[0]
    + r"""
import sys

buyer = register("buyer@example.com", "USER")
merchant = register("merchant@example.com", "MERCHANT")
_, endpoint = call(merchant, "post", "/webhook-endpoints", {"url": sys.argv[1], "events": ["order.completed"]})
_, product = call(merchant, "post", "/products", {"name": "Lamp", "price": "25.00", "availableUnits": 10})
call(buyer, "post", "/wallet/deposit", {"amount": "100.00"})
_, order = call(buyer, "post", "/orders", {"productId": product["id"], "paymentMethod": "WALLET"})
print(json.dumps({"secret": endpoint["secret"], "order": order["id"], "endpoint": endpoint["id"]}))
"""
)


def test_make_run_worker_delivers_and_schedules_on_embedded_sqlite(tmp_path):
    """What `make run` starts beside the server (`manage.py run_worker`), on SQLite."""
    from paymentflow.testing.worker import Worker, wait_until
    from webhooks.tests.receiver import Receiver

    database = tmp_path / "db.sqlite3"
    env = _embedded_env(database, WEBHOOK_ALLOW_PRIVATE_URLS="1", WORKER_POLL_SECONDS="0.1")
    _run(["manage.py", "migrate", "--noinput"], env)
    receiver = Receiver()
    try:
        created = json.loads(_run(["-c", WEBHOOK_SCENARIO, receiver.url], env).strip().splitlines()[-1])
        log = tmp_path / "worker.log"
        with log.open("ab") as out:
            process = subprocess.Popen(  # noqa: S603
                [sys.executable, "manage.py", "run_worker"], cwd=PROJECT_ROOT, env=env, stdout=out, stderr=out
            )
        worker = Worker(process, log)
        try:
            wait_until(lambda: receiver.requests, workers=[worker], what="the sale's webhook")
            wait_until(
                lambda: "Scheduled job reconcile_ledger succeeded" in worker.output(),
                workers=[worker],
                what="the schedule",
            )
        finally:
            worker.stop()
        (request,) = receiver.requests
        event = request.verified(created["secret"])
        assert (event["type"], event["data"]["order"]["id"]) == ("order.completed", created["order"])
    finally:
        receiver.stop()


def _embedded_env(database: Path, **extra) -> dict:
    env = {
        name: value
        for name, value in os.environ.items()
        # settings/test.py puts DATABASE_URL, REDIS_URL and a secret key into this process's
        # environment; `make run` has none of them.
        if not name.startswith(("DATABASE_", "REDIS_", "DJANGO_", "STRIPE_", "PYTEST_", "WEBHOOK_", "SCHEDULE"))
    }
    env.update(
        DJANGO_SETTINGS_MODULE="paymentflow.settings.base",  # manage.py's default, what `make run` uses
        DJANGO_DEBUG="1",
        # The project's db.sqlite3 with the embedded defaults, moved into tmp_path.
        DATABASE_URL=f"sqlite:///{database}",
        DJANGO_ALLOWED_HOSTS="localhost,127.0.0.1,testserver",  # the test client's host
        **extra,
    )
    return env


# The back office's wallet list after deposits with cents: a system account's balance is a
# sum of its legs, which SQLite returns as a float's digits ("-120.400000000000"), and the
# annotated user balance comes back likewise.
ADMIN_BALANCE_SCENARIO = (
    SCENARIO.split("buyer = register")[0]
    + r"""
from django.contrib.admin.sites import site
from django.test import Client
from django.urls import reverse

from accounts.models import User
from wallets.models import Wallet

buyer = register("buyer@example.com", "USER")
merchant = register("merchant@example.com", "MERCHANT")
call(buyer, "post", "/wallet/deposit", {"amount": "100.30"})
call(merchant, "post", "/wallet/deposit", {"amount": "20.10"})
admin = site._registry[Wallet]
shown = {str(w.code or w.user): str(admin.ledger_balance(w)) for w in admin.get_queryset(None)}
staff = User.objects.create_superuser(email="staff@example.com", password=PASSWORD)
client = Client()
client.force_login(staff)
page = client.get(reverse("admin:wallets_wallet_changelist"))
print(json.dumps({"shown": shown, "page": page.content.decode()}))
"""
)


def test_the_back_office_shows_balances_with_two_decimals_on_embedded_sqlite(tmp_path):
    database = tmp_path / "db.sqlite3"
    env = _embedded_env(database)
    _run(["manage.py", "migrate", "--noinput"], env)
    result = json.loads(_run(["-c", ADMIN_BALANCE_SCENARIO], env).strip().splitlines()[-1])

    shown = result["shown"]
    assert shown["buyer@example.com"] == "100.30" and shown["merchant@example.com"] == "20.10", shown
    assert shown["external:deposits"] == "-120.40", shown
    for name, value in shown.items():
        assert re.fullmatch(r"-?\d+\.\d\d", value), (name, value)
    assert ">-120.40<" in result["page"] and ">100.30<" in result["page"] and ".300000" not in result["page"]
