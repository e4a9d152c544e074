"""paymentflow.db: retries of transient errors, with and without a transaction of their own.

Transactional tests (no test-wide transaction), so "outermost" means what it does in
production. The transient error is PostgreSQL's own: a statement that raises SQLSTATE
40P01 (deadlock_detected) the first time; the real deadlock is in
wallets/tests/test_concurrency.py.
"""

import psycopg
import pytest
from django.db import OperationalError, connection, transaction

from paymentflow.db import DatabaseBusy, atomic_with_retry, autocommit_with_retry
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


@pytest.mark.parametrize("retrying", [atomic_with_retry, autocommit_with_retry])
def test_a_transient_error_runs_the_function_again(retrying):
    wallet, seen = WalletFactory(), []
    assert retrying(attempts=3)(_flaky(2, seen))(wallet) == 3
    assert len(seen) == 3
    assert Wallet.objects.get(pk=wallet.pk).last_sequence == 3


@pytest.mark.parametrize("retrying", [atomic_with_retry, autocommit_with_retry])
def test_gives_up_with_a_503_after_the_attempts(retrying):
    wallet, seen = WalletFactory(), []
    with pytest.raises(DatabaseBusy) as raised:
        retrying(attempts=2)(_flaky(5, seen))(wallet)
    assert len(seen) == 2 and raised.value.status_code == 503


def test_atomic_with_retry_runs_in_a_transaction_autocommit_with_retry_does_not():
    wallet, in_transaction, autocommitted = WalletFactory(), [], []
    atomic_with_retry(_flaky(0, in_transaction))(wallet)
    autocommit_with_retry(_flaky(0, autocommitted))(wallet)

    assert in_transaction == [(True, psycopg.pq.TransactionStatus.INTRANS)]
    assert autocommitted == [(False, psycopg.pq.TransactionStatus.IDLE)]  # each statement commits itself
    assert _transaction_status() == psycopg.pq.TransactionStatus.IDLE


def test_inside_a_callers_transaction_a_failure_leaves_it_usable():
    """Nested, both run once in a savepoint: the failed statement is rolled back alone and
    the caller's transaction goes on (the retry belongs to the outermost block)."""
    wallet = WalletFactory()
    with transaction.atomic():
        Wallet.objects.filter(pk=wallet.pk).update(is_locked=True)
        for retrying in (atomic_with_retry, autocommit_with_retry):
            seen = []
            with pytest.raises(OperationalError):
                retrying(_flaky(1, seen))(wallet)
            assert len(seen) == 1
        assert Wallet.objects.get(pk=wallet.pk).last_sequence == 0  # both savepoints rolled back
    assert Wallet.objects.get(pk=wallet.pk).is_locked  # the caller's write committed
