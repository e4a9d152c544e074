"""A card refund racing everything else that touches its payment, in real threads against
PostgreSQL and the fake Stripe: the merchant's refund, a second refund, the paid webhook
delivered again (and its async twin) through the live server, and the refund sweep, all
released together. Whatever the interleaving: one refund at Stripe, the merchant debited
once, the order REFUNDED once, and both reconciliations clean."""

import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal

import pytest
import requests
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction
from django.test import override_settings
from django.utils import timezone

from catalog.services import product_lock
from orders import services
from orders.models import Order
from orders.tests.factories import funded_buyer
from orders.tests.utils import balance, card_order, merchant_product, order_legs, pay_by_card, stock
from paymentflow.api.exceptions import ApplicationError
from paymentflow.testing.concurrency import BARRIER_TIMEOUT, REQUEST_TIMEOUT, run_at_once
from payments import services as payments
from payments.models import CheckoutPayment
from payments.services import payment_refund_sync
from payments.sweeps import sweep_stripe_refunds
from wallets.models import Wallet
from wallets.selectors import system_wallet_balances
from wallets.services import wallet_withdraw
from webhooks.tests.utils import WEBHOOK_URL, deliver, post_raw

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.concurrency]
D = Decimal


@pytest.mark.parametrize("stripe", ["slow", "answer-lost"])
@override_settings(REFUND_RETRY_AFTER_SECONDS=0, STRIPE_MAX_NETWORK_RETRIES=0)
def test_a_refund_racing_a_paid_webhook_the_sweep_and_a_second_refund_refunds_once(
    live_server, fake_stripe, buyer_client, merchant, stripe, reconcile
):
    product = merchant_product(merchant, price="20.00")
    order = card_order(buyer_client, product, 2)
    pay_by_card(fake_stripe, order)
    assert balance(merchant) == D("40.00")
    if stripe == "slow":
        fake_stripe.stall_next(3, seconds=0.3)  # every refund call takes a while: the others arrive meanwhile
    else:
        fake_stripe.lose_responses("/v1/refunds", n=1, method="POST")  # the first refund is made, its answer lost
    redeliveries = [
        fake_stripe.signed(fake_stripe.session_event(kind, order["stripeSessionId"]))
        for kind in ("checkout.session.completed", "checkout.session.async_payment_succeeded")
    ]

    def refund():
        try:
            return services.order_refund(order_id=order["id"], merchant=merchant).status
        except ApplicationError as refused:  # in progress (409), already refunded (409), outcome unknown (502)
            return refused.code

    def webhook(delivery):
        body, signature = delivery
        return lambda: requests.post(
            f"{live_server.url}{WEBHOOK_URL}", data=body, timeout=REQUEST_TIMEOUT,
            headers={"Content-Type": "application/json", "Stripe-Signature": signature},
        ).status_code  # fmt: skip

    def sweeper():  # sweeps again and again while the others run, as overlapping schedules would
        return [sweep_stripe_refunds() for _ in range(8)]

    first, second, paid, paid_async, sweeps = run_at_once(
        [refund, refund, webhook(redeliveries[0]), webhook(redeliveries[1]), sweeper]
    )

    allowed = {"REFUNDED", "REFUND_IN_PROGRESS", "ORDER_NOT_REFUNDABLE", "GATEWAY_ERROR"}
    assert {first, second} <= allowed and (paid, paid_async) == (200, 200), (first, second, paid, paid_async)
    if Order.objects.get(pk=order["id"]).status != "REFUNDED":  # the lost answer: the next sweep finishes it
        assert stripe == "answer-lost"
        sweep_stripe_refunds()
    assert all(not swept.failed for swept in sweeps), sweeps
    found = Order.objects.select_related("payment").get(pk=order["id"])
    assert found.status == "REFUNDED" and found.payment.refund_status == "SUCCEEDED"
    assert len(fake_stripe.refunds) == 1 and found.payment.stripe_refund_id in fake_stripe.refunds
    assert balance(merchant) == D("0.00") and stock(product) == 10
    assert system_wallet_balances()["stripe:clearing"] == D("0.00")
    reconcile()
    call_command("reconcile_stripe", stdout=io.StringIO())


@override_settings(REFUND_RETRY_AFTER_SECONDS=0)
def test_while_a_refund_is_at_stripe_the_others_wait_for_it(fake_stripe, buyer_client, merchant, reconcile):
    """The same race with its worst moment pinned: while the first refund's request is at
    Stripe (run from inside the fake's handler), a second refund is 409 REFUND_IN_PROGRESS,
    the sweep leaves the payment to the lease holder, and the paid event again is a no-op."""
    product = merchant_product(merchant, price="20.00")
    order = card_order(buyer_client, product, 2)
    pay_by_card(fake_stripe, order)
    again = fake_stripe.signed(fake_stripe.session_event("checkout.session.completed", order["stripeSessionId"]))

    def meanwhile():
        try:
            try:
                services.order_refund(order_id=order["id"], merchant=merchant)
                second = "REFUNDED"
            except ApplicationError as refused:
                second = refused.code
            swept = sweep_stripe_refunds()
            paid = post_raw(*again).status_code
            return second, str(swept), paid, Order.objects.get(pk=order["id"]).status
        finally:
            connection.close()  # this runs in the fake Stripe's thread

    fake_stripe.on_next_request("/v1/refunds", meanwhile)

    assert services.order_refund(order_id=order["id"], merchant=merchant).status == "REFUNDED"

    ((second, swept, paid, status_meanwhile),) = fake_stripe.hook_results
    assert (second, paid, status_meanwhile) == ("REFUND_IN_PROGRESS", 200, "COMPLETED")
    assert swept == "0 found; nothing to do; 0 not settled"  # the lease is held: left to its holder
    assert len(fake_stripe.calls("POST", "/v1/refunds")) == 1 and len(fake_stripe.refunds) == 1
    assert balance(merchant) == D("0.00") and stock(product) == 10
    reconcile()
    call_command("reconcile_stripe", stdout=io.StringIO())


# --- A refund made at Stripe without us takes its locks in the purchase's order ---------------


def _waiting_for_a_lock() -> bool:
    """Is some backend of this test database waiting for a lock (not granted)?"""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE NOT l.granted AND a.datname = current_database()"
        )
        return cursor.fetchone()[0] > 0


def _deadlocks() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
        return cursor.fetchone()[0]


def test_a_dashboard_refund_locks_the_product_before_the_merchant_wallet(
    fake_stripe, buyer_client, merchant, reconcile
):
    """The wallet purchase locks the product, then the wallets. A refund made in Stripe's
    Dashboard (applied by its event, or by the sweep, through `payment_refund_sync`) puts
    the units back and debits the merchant: it must lock in the same order. Shown
    deterministically: while this connection holds the product's row (as a purchase does
    before it locks the wallets), the refund waits for the product holding no wallet, so
    the merchant's wallet can still be locked NOWAIT (in the wrong order the refund held
    it, and the purchase waiting for it would deadlock)."""
    product = merchant_product(merchant, price="20.00")
    order = card_order(buyer_client, product, 2)
    session = pay_by_card(fake_stripe, order)
    fake_stripe.refund_in_dashboard(session["payment_intent"])
    payment_id = Order.objects.get(pk=order["id"]).payment_id

    def sync():
        try:
            return payment_refund_sync(payment_id=payment_id).refund_status
        finally:
            connection.close()

    with ThreadPoolExecutor(1) as pool:
        with transaction.atomic():
            product_lock(product_id=product.pk)  # a purchase's first lock
            refund = pool.submit(sync)
            for _ in range(600):  # bounded: the refund reaches the product's lock and waits
                if _waiting_for_a_lock() or refund.done():
                    break
                time.sleep(0.05)
            assert not refund.done(), refund.result()
            try:
                with transaction.atomic():
                    list(Wallet.objects.filter(user=merchant).select_for_update(nowait=True))
                merchant_wallet_free = True
            except DatabaseError:
                merchant_wallet_free = False
        assert refund.result(timeout=REQUEST_TIMEOUT) == "SUCCEEDED"

    assert merchant_wallet_free, "the refund locked the merchant's wallet before the product"
    assert Order.objects.get(pk=order["id"]).status == "REFUNDED"
    assert balance(merchant) == D("0.00") and stock(product) == 10
    reconcile()


def test_a_dashboard_refund_event_amid_wallet_purchases_of_the_product_never_deadlocks(
    fake_stripe, buyer_client, merchant, reconcile
):
    """Real threads: wallet purchases of one product (product, then buyer's and merchant's
    wallets) while the Dashboard refund's `charge.refunded` event of a card order of the
    same product is processed (payment, order, product, then the merchant's wallet). No
    PostgreSQL deadlock, every purchase and the refund go through, the books reconcile."""
    product = merchant_product(merchant, price="20.00", units=50)
    order = card_order(buyer_client, product, 2)
    session = pay_by_card(fake_stripe, order)
    fake_stripe.refund_in_dashboard(session["payment_intent"])
    buyers = [funded_buyer("100.00") for _ in range(6)]
    event = fake_stripe.charge_event("charge.refunded", session["payment_intent"])
    deadlocks_before = _deadlocks()

    def purchase(buyer):
        def run():
            return services.order_purchase_with_wallet(buyer=buyer, product_id=product.pk, quantity=1).status

        return run

    def refund_event():
        return deliver(fake_stripe, event).status_code

    results = run_at_once([refund_event] + [purchase(b) for b in buyers])

    assert results == [200] + ["COMPLETED"] * len(buyers)
    assert Order.objects.get(pk=order["id"]).status == "REFUNDED"
    assert balance(merchant) == D("20.00") * len(buyers)  # the card sale's 40.00 taken back
    assert stock(product) == 50 - len(buyers)
    assert _deadlocks() == deadlocks_before
    reconcile()


# --- The refund lease is a fence ------------------------------------------------------------------
# A holder whose lease ran out while it waited for Stripe (a slow answer and the SDK's retries,
# a paused process) and was taken over writes nothing when it comes back: only the holder of
# the current attempt writes an outcome (payments.services, `_settle_refunds` / `_end_attempt`).


def _payment_of(order: dict) -> CheckoutPayment:
    return CheckoutPayment.objects.get(pk=Order.objects.get(pk=order["id"]).payment_id)


def _lease_runs_out(payment_id) -> None:
    """As if the holder had been at Stripe for longer than its lease."""
    CheckoutPayment.objects.filter(pk=payment_id).update(refund_attempt_started_at=timezone.now() - timedelta(days=1))


@override_settings(REFUND_RETRY_AFTER_SECONDS=0)
def test_a_refund_holder_taken_over_after_the_other_settled_writes_nothing(
    fake_stripe, buyer_client, merchant, reconcile
):
    """The first holder's refund request is held at the fake until its lease has run out, the
    sweep has taken the lease over, made the refund and settled it. The first holder then gets
    Stripe's (replayed) answer: it writes nothing, and the money moved once."""
    product = merchant_product(merchant, price="20.00")
    order = card_order(buyer_client, product, 2)
    pay_by_card(fake_stripe, order)
    payment_id = _payment_of(order).pk

    def take_over():
        try:
            _lease_runs_out(payment_id)
            swept = sweep_stripe_refunds()
            return str(swept), _row(payment_id)
        finally:
            connection.close()  # this runs in the fake Stripe's thread

    fake_stripe.on_next_request("/v1/refunds", take_over)

    assert services.order_refund(order_id=order["id"], merchant=merchant).status == "REFUNDED"

    ((swept, settled_by_the_sweep),) = fake_stripe.hook_results
    assert swept == "1 found; refund SUCCEEDED: 1; 0 not settled"
    assert _row(payment_id) == settled_by_the_sweep  # the first holder wrote nothing, not even its lease
    assert len(fake_stripe.refunds) == 1 and len(fake_stripe.calls("POST", "/v1/refunds")) == 2
    found = Order.objects.get(pk=order["id"])
    assert order_legs(found) == {(merchant.email, "REVENUE"): D("40.00"), (merchant.email, "REFUND"): D("-40.00")} | {
        ("stripe:clearing", "REVENUE"): D("-40.00"),
        ("stripe:clearing", "REFUND"): D("40.00"),
    }
    assert balance(merchant) == D("0.00") and stock(product) == 10
    reconcile()
    call_command("reconcile_stripe", stdout=io.StringIO())


@pytest.mark.parametrize("answer", ["refused", "unknown"])
@override_settings(REFUND_RETRY_AFTER_SECONDS=0)
def test_a_refund_holder_taken_over_while_the_other_is_at_stripe_writes_nothing(
    fake_stripe, buyer_client, merchant, answer, reconcile
):
    """The first holder's request is held at the fake until its lease has run out and a second
    holder (the sweep's retry) has taken the lease and is itself waiting for Stripe. Then Stripe
    refuses the first (and shows no refund yet: the second one is not made), or its outcome is
    unknown. Either way the first holder concludes nothing: the merchant's money stays held
    while the second holder's refund may be made (the merchant cannot spend it meanwhile), the
    lease stays the second holder's, and the money moves once."""
    product = merchant_product(merchant, price="20.00")
    order = card_order(buyer_client, product, 2)
    pay_by_card(fake_stripe, order)
    payment_id = _payment_of(order).pk
    second_at_stripe, first_done = threading.Event(), threading.Event()
    second_result = []

    def second_holder():
        try:
            second_result.append(payments.payment_refund_resume(payment_id=payment_id, busy_ok=True).refund_status)
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            second_result.append(exc)
        finally:
            connection.close()

    def hold_the_second_at_stripe():
        second_at_stripe.set()
        assert first_done.wait(BARRIER_TIMEOUT)

    def take_over():
        try:
            _lease_runs_out(payment_id)
            fake_stripe.on_next_request("/v1/refunds", hold_the_second_at_stripe)
            threading.Thread(target=second_holder, name="second-holder").start()
            assert second_at_stripe.wait(BARRIER_TIMEOUT)
            # What Stripe answers the first holder (its request goes on after this hook).
            if answer == "refused":
                fake_stripe.fail_next(1, status=400, message="This charge is disputed.", path="/v1/refunds")
            else:
                fake_stripe.fail_next(1, status=500, path="/v1/refunds")
        finally:
            connection.close()

    fake_stripe.on_next_request("/v1/refunds", take_over)
    try:
        with pytest.raises(ApplicationError) as first:
            services.order_refund(order_id=order["id"], merchant=merchant)

        # The second holder is still at Stripe.
        assert first.value.code == ("REFUND_IN_PROGRESS" if answer == "refused" else "GATEWAY_ERROR")
        meanwhile = _payment_of(order)
        assert meanwhile.refund_status == "PENDING" and meanwhile.refund_attempt_started_at is not None
        assert balance(merchant) == D("0.00")  # held: Stripe may be refunding the buyer right now
        with pytest.raises(ApplicationError) as spend:
            wallet_withdraw(wallet=Wallet.objects.get(user=merchant), amount=D("40.00"))
        assert spend.value.code == "INSUFFICIENT_FUNDS"
        with pytest.raises(ApplicationError) as again:  # the lease is still the second holder's
            services.order_refund(order_id=order["id"], merchant=merchant)
        assert again.value.code == "REFUND_IN_PROGRESS"
    finally:
        first_done.set()
    _wait_for(lambda: second_result)

    assert second_result == ["SUCCEEDED"]
    found = Order.objects.select_related("payment").get(pk=order["id"])
    assert found.status == "REFUNDED" and not found.payment.needs_attention
    assert len(fake_stripe.refunds) == 1 and found.payment.stripe_refund_id in fake_stripe.refunds
    assert order_legs(found) == {(merchant.email, "REVENUE"): D("40.00"), (merchant.email, "REFUND"): D("-40.00")} | {
        ("stripe:clearing", "REVENUE"): D("-40.00"),
        ("stripe:clearing", "REFUND"): D("40.00"),
    }
    assert balance(merchant) == D("0.00") and system_wallet_balances()["stripe:clearing"] == D("0.00")
    reconcile()
    call_command("reconcile_stripe", stdout=io.StringIO())


def _row(payment_id) -> dict:
    return CheckoutPayment.objects.filter(pk=payment_id).values().get()


def _wait_for(condition, seconds: float = BARRIER_TIMEOUT) -> None:
    ends = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < ends, "timed out"
        time.sleep(0.01)
