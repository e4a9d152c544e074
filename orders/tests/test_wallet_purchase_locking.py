"""What only a real transaction shows about the wallet purchase: it commits and lets go of
every lock when it returns, locks the product and both wallets before it writes anything,
rolls a refusal back whole, stamps a wallet's legs in sequence order under concurrency,
leaves nothing behind when its client is killed mid-purchase, waits a bounded time for a
lock, and needs no function in the database. Transactional tests on the real PostgreSQL:
nothing here is inside a test-wide transaction, as in production.
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


def _lockable_by_another_connection(product, *wallets) -> dict:
    """From another connection (another thread), try to lock each row NOWAIT: {row: could}."""

    def try_lock(queryset) -> bool:
        try:
            with transaction.atomic():
                list(queryset.select_for_update(nowait=True))
            return True
        except DatabaseError:
            return False

    def lock():
        rows = {"product": Product.objects.filter(pk=product.pk)}
        rows.update({f"wallet {n}": Wallet.objects.filter(pk=w.pk) for n, w in enumerate(wallets, start=1)})
        return {name: try_lock(queryset) for name, queryset in rows.items()}

    (result,) = run_at_once([lock])
    return result


def _other_connection_can_lock(product, *wallets) -> bool:
    return all(_lockable_by_another_connection(product, *wallets).values())


def test_committed_and_holding_no_lock_when_it_returns(shop, reconcile):
    merchant, product, buyer_wallet = shop
    merchant_wallet = Wallet.objects.get(user=merchant)
    order = services.order_purchase_with_wallet(buyer=buyer_wallet.user, product_id=product.pk)

    assert connection.connection.info.transaction_status == IDLE  # no transaction left open
    assert _other_connection_can_lock(product, buyer_wallet, merchant_wallet)
    (seen,) = run_at_once([lambda: Order.objects.filter(pk=order.pk, status="COMPLETED").exists()])
    assert seen and stock(product) == 49 and balance(merchant) == D("5.00")
    assert order.created_at == Order.objects.get(pk=order.pk).created_at  # the stamp the row carries
    reconcile()


def test_the_product_and_both_wallets_are_locked_before_anything_is_written(shop, reconcile):
    """Lock, then check, then write: when the ledger and the order are written, the product
    row and both wallet rows are already locked by the purchase's transaction (another
    connection cannot lock them), and they stay locked until it commits."""
    merchant, product, buyer_wallet = shop
    merchant_wallet = Wallet.objects.get(user=merchant)
    seen = {}

    def look_at_the_locks(execute, sql, params, many, context):
        for table in ("wallets_journalentry", "orders_order"):
            if f"INSERT INTO {table}" in sql.replace('"', "") and table not in seen:
                seen[table] = _lockable_by_another_connection(product, buyer_wallet, merchant_wallet)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(look_at_the_locks):
        services.order_purchase_with_wallet(buyer=buyer_wallet.user, product_id=product.pk)

    nothing_lockable = {"product": False, "wallet 1": False, "wallet 2": False}
    assert seen == {"wallets_journalentry": nothing_lockable, "orders_order": nothing_lockable}
    assert _other_connection_can_lock(product, buyer_wallet, merchant_wallet)
    reconcile()


@pytest.mark.parametrize("refusal", ["wallet_locked", "insufficient_funds"])
def test_a_refusal_rolls_back_whole_and_lets_go_of_every_lock(shop, refusal, reconcile):
    """Refused after the stock was taken, on the locked wallets: the transaction is rolled
    back (the units come back), no statement failed (the checks are made on the rows read,
    not left to a constraint), and the connection is ready for the next request."""
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


def _backend_waiting_on_a_lock(text: str, timeout: float = 60.0) -> int:
    deadline = time.monotonic() + timeout
    with _raw_connection() as watcher:
        watcher.autocommit = True
        while time.monotonic() < deadline:
            row = watcher.execute(
                "SELECT pid FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE %s",
                [f"%{text}%"],
            ).fetchone()
            if row:
                return row[0]
            time.sleep(0.05)
    raise AssertionError(f"no backend waiting on a lock for {text!r}")


def _backend_gone(pid: int, timeout: float = 60.0) -> bool:
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
    """A web worker blocked on a busy product row is killed (a timeout, a deploy). Its
    purchase is a transaction that nobody will commit: when the row is free again, its
    backend takes the row, finds the client gone and rolls everything back. No
    `client_connection_check_interval` is needed for that (nor wanted: it is a session
    setting, which PgBouncer's transaction pooling cannot carry)."""
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
            pid = _backend_waiting_on_a_lock("UPDATE catalog_product")
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=10)
        finally:
            if worker.poll() is None:
                worker.kill()
        holder.rollback()  # the row is free again: the dead client's backend takes it

    assert _backend_gone(pid), "the dead client's transaction is still open"
    assert books() == before
    assert not JournalEntry.objects.filter(reference_type="order").exists()
    reconcile()


def _holding_a_wallet_lock(wallet):
    holder = _raw_connection()
    holder.execute("SELECT 1 FROM wallets_wallet WHERE id = %s FOR UPDATE", [wallet.pk])
    return holder


def test_a_lock_wait_is_bounded_and_answered_503(shop, settings, reconcile):
    """A purchase waits at most PURCHASE_LOCK_TIMEOUT_MS (5 s; shortened here) for a row,
    then it is refused 503 DATABASE_BUSY with nothing written, the stock it had taken
    before the wallet wait included."""
    merchant, product, buyer_wallet = shop
    settings.PURCHASE_LOCK_TIMEOUT_MS = 300
    before = books()
    with _holding_a_wallet_lock(buyer_wallet) as holder:  # held until the purchase gave up
        with pytest.raises(DatabaseBusy) as refused:
            services.order_purchase_with_wallet(buyer=buyer_wallet.user, product_id=product.pk)
        holder.rollback()
    assert refused.value.status_code == 503 and refused.value.code == "DATABASE_BUSY"
    assert isinstance(refused.value.__cause__.__cause__, psycopg.errors.LockNotAvailable)
    assert books() == before
    reconcile()


def test_every_lock_is_taken_under_the_lock_timeout(shop, settings):
    """Read inside the purchase's own transaction, just before each statement that may wait
    on a row lock: `lock_timeout` is the setting, for this transaction only (`SET LOCAL`,
    which PgBouncer's transaction pooling carries; the connection keeps its default)."""
    merchant, product, buyer_wallet = shop
    settings.PURCHASE_LOCK_TIMEOUT_MS = 1234
    seen = []

    def read_the_lock_timeout(execute, sql, params, many, context):
        if sql.lstrip().startswith("UPDATE catalog_product") or "FOR UPDATE" in sql:
            with context["connection"].cursor() as cursor:
                cursor.execute("SHOW lock_timeout")
                seen.append(cursor.fetchone()[0])
        return execute(sql, params, many, context)

    with connection.execute_wrapper(read_the_lock_timeout):
        services.order_purchase_with_wallet(buyer=buyer_wallet.user, product_id=product.pk)
    assert seen == ["1234ms", "1234ms"]  # the product's UPDATE, the wallets' SELECT ... FOR UPDATE
    with connection.cursor() as cursor:
        cursor.execute("SHOW lock_timeout")
        assert cursor.fetchone()[0] == "0"  # outside the purchase: PostgreSQL's default


def test_no_function_in_the_database_but_triggers():
    """The purchase is Python; the only functions are those of triggers that guard an
    invariant (the append-only ledger)."""
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT p.proname, p.prorettype::regtype::text
                 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                WHERE n.nspname = current_schema()"""
        )
        functions = cursor.fetchall()
    assert functions and all(returns == "trigger" for _, returns in functions), functions
