"""What the database engine of the wallet purchase promises beyond the ORM path's results
(those are compared in test_wallet_purchase_engines.py): one autocommitted statement that
holds no lock once it returns, refusals that are answers rather than database errors,
rows stamped in sequence order under concurrency, no purchase left behind by a client
that died while waiting, a bounded lock wait, and a function that writes every column of
the tables it inserts into. Transactional tests on the real PostgreSQL: nothing here is
inside a test-wide transaction, as in production.
"""

import os
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from django.db import DatabaseError, connection, transaction

from accounts.tests.factories import MerchantFactory
from catalog.models import Product
from catalog.tests.factories import ProductFactory
from orders import services
from orders.models import Order
from orders.tests.utils import balance, books, stock
from paymentflow.db import DatabaseBusy
from paymentflow.testing.concurrency import run_at_once
from wallets.exceptions import InsufficientFunds, WalletLocked
from wallets.models import JournalEntry, LedgerEntry, Wallet
from wallets.services import wallet_set_locked
from wallets.tests.factories import WalletFactory, funded_wallet

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.concurrency]
D = Decimal
PROJECT_ROOT = Path(__file__).resolve().parents[2]
FUNCTION = "orders_wallet_purchase(uuid, uuid, uuid, integer, varchar)"
IDLE = psycopg.pq.TransactionStatus.IDLE


@pytest.fixture
def shop(db):
    merchant = MerchantFactory()
    WalletFactory(user=merchant)
    product = ProductFactory(merchant=merchant, price="5.00", available_units=50)
    return merchant, product, funded_wallet(amount="200.00")


def _raw_connection() -> psycopg.Connection:
    """A connection of its own to the test database (not Django's), e.g. to hold a lock."""
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    return psycopg.connect(**params)


def _other_connection_can_lock(product, *wallets) -> bool:
    """From another connection (another thread), lock the product and wallet rows NOWAIT."""

    def lock():
        try:
            with transaction.atomic():
                Product.objects.select_for_update(nowait=True).get(pk=product.pk)
                list(Wallet.objects.select_for_update(nowait=True).filter(pk__in=[w.pk for w in wallets]))
            return True
        except DatabaseError:
            return False

    (result,) = run_at_once([lock])
    return result


def test_committed_and_holding_no_lock_when_it_returns(shop, reconcile):
    merchant, product, buyer_wallet = shop
    merchant_wallet = Wallet.objects.get(user=merchant)
    order = services.order_purchase_with_wallet(buyer=buyer_wallet.user, product_id=product.pk)

    assert connection.connection.info.transaction_status == IDLE  # no transaction left open
    assert _other_connection_can_lock(product, buyer_wallet, merchant_wallet)
    (seen,) = run_at_once([lambda: Order.objects.filter(pk=order.pk, status="COMPLETED").exists()])
    assert seen and stock(product) == 49 and balance(merchant) == D("5.00")
    assert order.created_at == Order.objects.get(pk=order.pk).created_at  # the stamp the rows carry
    reconcile()


@pytest.mark.parametrize("refusal", ["wallet_locked", "insufficient_funds"])
def test_a_refusal_is_an_answer_not_a_database_error(shop, refusal, reconcile):
    """Refused after the stock was taken: the function undoes it and answers; the statement
    does not fail (no ERROR in PostgreSQL's log, no broken connection state)."""
    merchant, product, buyer_wallet = shop
    if refusal == "wallet_locked":
        wallet_set_locked(wallet_ids=[Wallet.objects.get(user=merchant).pk], locked=True)
        expected, quantity = WalletLocked, 1
    else:
        expected, quantity = InsufficientFunds, 41  # 205.00 > 200.00
    before = books()
    connection.errors_occurred = False

    with pytest.raises(expected):
        services.order_purchase_with_wallet(buyer=buyer_wallet.user, product_id=product.pk, quantity=quantity)

    assert connection.errors_occurred is False  # set by Django whenever the database raised
    assert connection.connection.info.transaction_status == IDLE
    assert books() == before and _other_connection_can_lock(product, buyer_wallet)
    reconcile()


def test_legs_are_stamped_in_sequence_order_under_concurrency(shop, reconcile):
    """Stamped after the wallet locks: a wallet's legs are in time order as in sequence order."""
    merchant, product, buyer_wallet = shop

    def buy_six():
        for _ in range(6):
            services.order_purchase_with_wallet(buyer=buyer_wallet.user, product_id=product.pk)

    run_at_once([buy_six] * 6)

    for wallet in (buyer_wallet, Wallet.objects.get(user=merchant)):
        stamps = list(
            LedgerEntry.objects.filter(wallet=wallet).order_by("sequence").values_list("created_at", flat=True)
        )
        assert stamps == sorted(stamps)
    assert stock(product) == 50 - 36 and balance(merchant) == D("180.00")
    reconcile()


def _backend_waiting_on_a_lock(text: str, timeout: float = 15.0) -> int:
    deadline = time.monotonic() + timeout
    with _raw_connection() as watcher:
        watcher.autocommit = True
        while time.monotonic() < deadline:
            row = watcher.execute(
                "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE %s",
                [f"%{text}%"],
            ).fetchone()
            if row:
                return row[0]
            time.sleep(0.05)
    raise AssertionError(f"no backend waiting on a lock for {text!r}")


def _backend_gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    with _raw_connection() as watcher:
        watcher.autocommit = True
        while time.monotonic() < deadline:
            if not watcher.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone():
                return True
            time.sleep(0.05)
    return False


PURCHASE_IN_A_WORKER = """
import sys
import django

django.setup()
from accounts.models import User
from orders import services

services.order_purchase_with_wallet(buyer=User.objects.get(pk=sys.argv[1]), product_id=sys.argv[2])
"""


def test_a_worker_killed_while_waiting_leaves_no_purchase(shop, reconcile):
    """A web worker blocked on a busy product row is killed (a timeout, a deploy): PostgreSQL
    notices the client is gone (`client_connection_check_interval`) and cancels the
    statement, so when the row is free again no purchase commits that nobody was told of."""
    merchant, product, buyer_wallet = shop
    settings = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "paymentflow.settings.test",
        "DATABASE_URL": f"postgres://{settings['USER']}@{settings['HOST']}:{settings['PORT']}/{settings['NAME']}",
    }
    before = books()
    with _raw_connection() as holder:  # a long transaction holds the product row
        holder.execute("SELECT 1 FROM catalog_product WHERE id = %s FOR UPDATE", [product.pk])
        worker = subprocess.Popen(
            [sys.executable, "-c", PURCHASE_IN_A_WORKER, str(buyer_wallet.user.pk), str(product.pk)],
            cwd=PROJECT_ROOT,
            env=env,
        )
        try:
            pid = _backend_waiting_on_a_lock("orders_wallet_purchase")
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=10)
            # Well within the function's 5 s lock_timeout, which would end the wait too.
            assert _backend_gone(pid, timeout=3.0), "the purchase's statement outlived its client"
        finally:
            if worker.poll() is None:
                worker.kill()
        holder.rollback()  # the row is free again

    time.sleep(0.2)
    assert books() == before
    assert not JournalEntry.objects.filter(reference_type="order").exists()
    reconcile()


def test_a_lock_wait_is_bounded_and_answered_503(shop, reconcile):
    """The function waits at most its `lock_timeout` (5 s; shortened here) for a row, then
    the purchase is refused 503 DATABASE_BUSY with nothing written."""
    merchant, product, buyer_wallet = shop
    before = books()
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER FUNCTION {FUNCTION} SET lock_timeout = '300ms'")
    try:
        with _raw_connection() as holder:
            holder.execute("SELECT 1 FROM wallets_wallet WHERE id = %s FOR UPDATE", [buyer_wallet.pk])
            started = time.monotonic()
            with pytest.raises(DatabaseBusy) as refused:
                services.order_purchase_with_wallet(buyer=buyer_wallet.user, product_id=product.pk)
            waited = time.monotonic() - started
            holder.rollback()
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"ALTER FUNCTION {FUNCTION} SET lock_timeout = '5s'")
    assert refused.value.status_code == 503 and refused.value.code == "DATABASE_BUSY"
    assert 0.25 < waited < 3
    assert books() == before  # the stock taken before the wallet wait was undone too
    reconcile()


def test_the_function_writes_every_column_of_the_tables_it_inserts_into():
    """A field added to one of these models (a NOT NULL column whose default lives in
    Python) would make every purchase fail: this says which function to update."""
    import re

    from wallets.models import JournalEntry as Journal

    with connection.cursor() as cursor:
        cursor.execute("SELECT prosrc FROM pg_proc WHERE proname = 'orders_wallet_purchase'")
        (source,) = cursor.fetchone()
    written = {
        table: {column.strip() for column in columns.split(",")}
        for table, columns in re.findall(r"INSERT INTO (\w+)\s*\(([^)]*)\)", source)
    }
    for model in (Order, LedgerEntry, Journal, Wallet):
        table = model._meta.db_table
        assert written[table] == {f.column for f in model._meta.concrete_fields}, table
