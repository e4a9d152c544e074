"""paymentflow.db: retries of transient errors, and a transaction's lock timeout.

Transactional tests (no test-wide transaction), so "outermost" means what it does in
production. The transient error is PostgreSQL's own: a statement that raises SQLSTATE
40P01 (deadlock_detected) the first time; the real deadlock is in
wallets/tests/test_concurrency.py.
"""

import psycopg
import pytest
from django.db import OperationalError, connection, transaction
from django.db.transaction import TransactionManagementError

from paymentflow.db import DatabaseBusy, atomic_with_retry, set_lock_timeout
from wallets.models import Wallet
from wallets.tests.factories import WalletFactory

pytestmark = pytest.mark.django_db(transaction=True)

RAISE_DEADLOCK = "DO $$ BEGIN RAISE EXCEPTION 'test deadlock' USING ERRCODE = 'deadlock_detected'; END $$"


def _transaction_status():
    return connection.connection.info.transaction_status


def _flaky(failures: int, seen: list):
    """A function whose first `failures` runs meet a deadlock after a write of one row."""

    def work(wallet):
        Wallet.objects.filter(pk=wallet.pk).update(last_sequence=len(seen) + 1)
        seen.append((connection.in_atomic_block, _transaction_status()))  # after the write
        if len(seen) <= failures:
            with connection.cursor() as cursor:
                cursor.execute(RAISE_DEADLOCK)
        return len(seen)

    return work


def test_a_transient_error_runs_the_function_again():
    wallet, seen = WalletFactory(), []
    assert atomic_with_retry(attempts=3)(_flaky(2, seen))(wallet) == 3
    assert len(seen) == 3
    assert Wallet.objects.get(pk=wallet.pk).last_sequence == 3


def test_gives_up_with_a_503_after_the_attempts():
    wallet, seen = WalletFactory(), []
    with pytest.raises(DatabaseBusy) as raised:
        atomic_with_retry(attempts=2)(_flaky(5, seen))(wallet)
    assert len(seen) == 2 and raised.value.status_code == 503


def test_atomic_with_retry_runs_in_a_transaction():
    wallet, seen = WalletFactory(), []
    atomic_with_retry(_flaky(0, seen))(wallet)

    assert seen == [(True, psycopg.pq.TransactionStatus.INTRANS)]
    assert _transaction_status() == psycopg.pq.TransactionStatus.IDLE


def test_inside_a_callers_transaction_a_failure_leaves_it_usable():
    """Nested, it runs once in a savepoint: the failed statement is rolled back alone and
    the caller's transaction goes on (the retry belongs to the outermost block)."""
    wallet = WalletFactory()
    with transaction.atomic():
        Wallet.objects.filter(pk=wallet.pk).update(is_locked=True)
        seen = []
        with pytest.raises(OperationalError):
            atomic_with_retry(_flaky(1, seen))(wallet)
        assert len(seen) == 1
        assert Wallet.objects.get(pk=wallet.pk).last_sequence == 0  # the savepoint rolled back
    assert Wallet.objects.get(pk=wallet.pk).is_locked  # the caller's write committed


def _lock_timeout() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW lock_timeout")
        return cursor.fetchone()[0]


def test_set_lock_timeout_lasts_until_the_transaction_ends():
    """`SET LOCAL`: the next transaction on the same connection (behind PgBouncer, maybe
    another client's) finds PostgreSQL's default again."""
    with transaction.atomic():
        set_lock_timeout(250)
        assert _lock_timeout() == "250ms"
    assert _lock_timeout() == "0"


def test_set_lock_timeout_needs_a_transaction():
    with pytest.raises(TransactionManagementError):
        set_lock_timeout(250)
    assert _lock_timeout() == "0"
