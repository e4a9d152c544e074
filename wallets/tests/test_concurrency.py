"""Real concurrency against real PostgreSQL: many threads hitting the live HTTP server (each
server thread has its own database connection), and threads calling the services directly.
No mocks, no sleeps: a `threading.Barrier` releases the requests together
(`paymentflow.testing.concurrency`)."""

import threading
from collections import Counter
from decimal import Decimal
from functools import partial

import pytest

from accounts.services import user_issue_tokens
from paymentflow.db import atomic_with_retry
from paymentflow.testing.concurrency import BARRIER_TIMEOUT, Post, post_at_once, run_at_once
from paymentflow.testing.fixtures import LIVE_SERVER_BACKLOG
from wallets import services
from wallets.models import LedgerEntry, Wallet
from wallets.tests.factories import WalletFactory, funded_wallet

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.concurrency]
D = Decimal


def fire(live_server, user, requests_spec, *, workers=None):
    """POST every (path, body, headers) in `requests_spec` as `user`, `workers` at a time
    (default: all at once); return the responses in order."""
    auth = {"Authorization": f"Bearer {user_issue_tokens(user=user)['access_token']}"}
    posts = [Post(path, json=body, headers={**auth, **headers}) for path, body, headers in requests_spec]
    return post_at_once(live_server, posts, workers=workers)


def test_the_live_server_queues_bursts_of_connections(live_server):
    """The shared live_server listens with a deep backlog (Django's default is 10), so a
    burst of connections is queued, never reset, however loaded the machine."""
    assert live_server.thread.httpd.request_queue_size == LIVE_SERVER_BACKLOG >= 128


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

    def transfer(i):
        source, destination = (a, b) if i % 2 else (b, a)
        services.wallet_transfer(source=source, destination=destination, amount=D("3.00"))

    run_at_once([partial(transfer, i) for i in range(20)])

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
        @atomic_with_retry(attempts=3)
        def work():
            attempts[name] += 1
            list(Wallet.objects.select_for_update().filter(pk=first.pk))
            if attempts[name] == 1:
                both_hold_one.wait()  # only the first time: guarantees the deadlock
            list(Wallet.objects.select_for_update().filter(pk=second.pk))
            Wallet.objects.filter(pk=first.pk).update(is_locked=False)

        return work

    run_at_once([lock_in_order("ab", a, b), lock_in_order("ba", b, a)])  # neither raised

    assert sorted(attempts.values()) == [1, 2]  # exactly one deadlock victim, retried once
