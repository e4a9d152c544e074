"""Real concurrency against real PostgreSQL: many threads hitting the live HTTP server (each
server thread has its own database connection), and threads calling the services directly.
No mocks, no sleeps: a `threading.Barrier` releases the requests together."""

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
import requests
from django.db import connection

from accounts.services import user_issue_tokens
from paymentflow.db import atomic_with_retry
from wallets import services
from wallets.models import LedgerEntry, Wallet
from wallets.tests.factories import WalletFactory, funded_wallet

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.concurrency]
D = Decimal
BARRIER_TIMEOUT = 30


def fire(live_server, user, requests_spec, *, workers=None):
    """POST every (path, body, headers) in `requests_spec` at once; return the responses."""
    token = user_issue_tokens(user=user)["access_token"]
    barrier = threading.Barrier(workers or len(requests_spec), timeout=BARRIER_TIMEOUT)

    def call(spec):
        path, body, headers = spec
        session = requests.Session()
        try:
            barrier.wait()
            return session.post(
                f"{live_server.url}{path}",
                json=body,
                headers={"Authorization": f"Bearer {token}", **headers},
                timeout=60,
            )
        finally:
            session.close()

    with ThreadPoolExecutor(max_workers=workers or len(requests_spec)) as pool:
        return list(pool.map(call, requests_spec))


def in_thread(func):
    """Run `func` in a worker thread that closes its own database connection afterwards."""

    def run(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        finally:
            connection.close()

    return run


def test_50_concurrent_deposits_and_withdrawals_are_exact(live_server, buyer, reconcile):
    wallet = funded_wallet(user=buyer, amount="100.00")
    spec = [("/api/v1/wallet/deposit", {"amount": "7.25"}, {})] * 25
    spec += [("/api/v1/wallet/withdraw", {"amount": "13.10"}, {})] * 25

    responses = fire(live_server, buyer, spec, workers=25)

    statuses = Counter(r.status_code for r in responses)
    assert statuses[500] == 0 and set(statuses) <= {200, 400}, statuses
    refused = [r.json() for r in responses if r.status_code == 400]
    assert {body["code"] for body in refused} <= {"INSUFFICIENT_FUNDS"}
    ok_withdrawals = sum(1 for r in responses[25:] if r.status_code == 200)
    expected = D("100.00") + 25 * D("7.25") - ok_withdrawals * D("13.10")
    assert Wallet.objects.get(pk=wallet.pk).balance == expected
    # 100 + 181.25 covers 21 withdrawals of 13.10 whatever the order; only the rest can fail.
    assert ok_withdrawals >= 21
    assert all(r.status_code == 200 for r in responses[:25])
    assert not LedgerEntry.objects.filter(wallet=wallet, balance_after__lt=0).exists()
    assert LedgerEntry.objects.filter(wallet=wallet).count() == 1 + 25 + ok_withdrawals
    reconcile()


def test_concurrent_withdrawals_beyond_the_balance_exactly_the_ones_that_fit_succeed(live_server, buyer, reconcile):
    wallet = funded_wallet(user=buyer, amount="100.00")
    responses = fire(live_server, buyer, [("/api/v1/wallet/withdraw", {"amount": "15.00"}, {})] * 20)

    assert Counter(r.status_code for r in responses) == {200: 6, 400: 14}
    assert {r.json()["code"] for r in responses if r.status_code == 400} == {"INSUFFICIENT_FUNDS"}
    assert Wallet.objects.get(pk=wallet.pk).balance == D("10.00")
    reconcile()


def test_one_idempotency_key_sent_20_times_concurrently_moves_money_once(live_server, buyer, reconcile):
    wallet = WalletFactory(user=buyer)
    spec = [("/api/v1/wallet/deposit", {"amount": "42.00"}, {"Idempotency-Key": "same-key"})] * 20

    responses = fire(live_server, buyer, spec)

    statuses = Counter(r.status_code for r in responses)
    assert set(statuses) <= {200, 409} and statuses[200] >= 1, statuses
    assert {r.json()["code"] for r in responses if r.status_code == 409} <= {"IDEMPOTENCY_REQUEST_IN_PROGRESS"}
    assert len({r.content for r in responses if r.status_code == 200}) == 1  # original and replays identical
    assert Wallet.objects.get(pk=wallet.pk).balance == D("42.00")
    assert LedgerEntry.objects.filter(wallet=wallet).count() == 1
    reconcile()


def test_opposite_transfers_between_two_wallets_do_not_deadlock(buyer, merchant, reconcile):
    """A->B and B->A at once: locking in primary-key order means no deadlock, nothing lost."""
    a = funded_wallet(user=buyer, amount="100.00")
    b = funded_wallet(user=merchant, amount="100.00")
    barrier = threading.Barrier(20, timeout=BARRIER_TIMEOUT)

    @in_thread
    def transfer(i):
        source, destination = (a, b) if i % 2 else (b, a)
        barrier.wait()
        services.wallet_transfer(source=source, destination=destination, amount=D("3.00"))

    with ThreadPoolExecutor(max_workers=20) as pool:
        list(pool.map(transfer, range(20)))

    assert Wallet.objects.get(pk=a.pk).balance == D("100.00")
    assert Wallet.objects.get(pk=b.pk).balance == D("100.00")
    assert LedgerEntry.objects.filter(type="PAYMENT").count() == 20
    reconcile()


def test_atomic_with_retry_survives_a_real_deadlock(buyer, merchant):
    """Two transactions lock two rows in opposite orders: PostgreSQL kills one; it is retried."""
    a, b = WalletFactory(user=buyer), WalletFactory(user=merchant)
    both_hold_one = threading.Barrier(2, timeout=BARRIER_TIMEOUT)
    attempts = Counter()

    def lock_in_order(name, first, second):
        @in_thread
        @atomic_with_retry(attempts=3)
        def work():
            attempts[name] += 1
            list(Wallet.objects.select_for_update().filter(pk=first.pk))
            if attempts[name] == 1:
                both_hold_one.wait()  # only the first time: guarantees the deadlock
            list(Wallet.objects.select_for_update().filter(pk=second.pk))
            Wallet.objects.filter(pk=first.pk).update(is_locked=False)

        return work

    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(lock_in_order("ab", a, b)), pool.submit(lock_in_order("ba", b, a))]
        for future in futures:
            future.result()  # neither raised

    assert sorted(attempts.values()) == [1, 2]  # exactly one deadlock victim, retried once
