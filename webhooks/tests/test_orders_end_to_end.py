"""Gateway orders end to end through the webhook: POST /orders {paymentMethod: GATEWAY} ->
Checkout Session at the fake Stripe -> signed event -> order, ledger and stock."""

from decimal import Decimal

import pytest
from django.db import connection, transaction

from catalog.models import Product
from orders.models import Order
from orders.tests.utils import merchant_product
from payments.models import CheckoutPayment
from payments.services import payment_release
from wallets.models import LedgerEntry, Wallet
from wallets.selectors import system_wallet_balances
from wallets.services import wallet_set_locked
from webhooks.models import StripeEvent
from webhooks.tests.utils import deliver, deliver_all_at_once, deliver_session_event

D = Decimal
ORDERS = "/api/v1/orders"


@pytest.fixture
def product(merchant):
    return merchant_product(merchant, price="25.00", units=10)


def order_by_card(client, product, quantity=2):
    response = client.post(ORDERS, {"productId": str(product.pk), "paymentMethod": "GATEWAY", "quantity": quantity})
    assert response.status_code == 201, response.content
    return response.json()


def stock(product) -> int:
    return Product.objects.get(pk=product.pk).available_units


def merchant_balance(product) -> Decimal:
    return Wallet.objects.get(user=product.merchant).balance


def clearing() -> Decimal:
    return system_wallet_balances()["stripe:clearing"]


@pytest.mark.django_db
def test_paid_session_completes_the_order_and_credits_the_merchant(fake_stripe, buyer_client, product, reconcile):
    body = order_by_card(buyer_client, product, quantity=2)
    sent = fake_stripe.last("POST", "/v1/checkout/sessions")
    assert sent.params["line_items"][0]["price_data"]["unit_amount"] == "2500"
    assert sent.params["metadata"] == {"kind": "order", "reference_id": body["id"]}
    session = fake_stripe.mark_paid(body["stripeSessionId"])

    event, response = deliver_session_event(fake_stripe, "checkout.session.completed", session["id"])

    assert response.status_code == 200
    order = Order.objects.select_related("payment").get(pk=body["id"])
    assert (
        order.status == Order.Status.COMPLETED and order.payment.stripe_payment_intent_id == session["payment_intent"]
    )
    assert merchant_balance(product) == D("50.00") and clearing() == D("-50.00")
    (leg,) = LedgerEntry.objects.filter(wallet__user=product.merchant)
    assert leg.type == LedgerEntry.Type.REVENUE and leg.journal.reference_id == body["id"]
    assert stock(product) == 8
    assert StripeEvent.objects.get(event_id=event["id"]).status == StripeEvent.Status.PROCESSED
    assert buyer_client.get(f"{ORDERS}/{body['id']}").json()["status"] == "COMPLETED"

    assert deliver(fake_stripe, event).status_code == 200  # Stripe's retry: nothing more
    assert merchant_balance(product) == D("50.00") and stock(product) == 8
    reconcile()


@pytest.mark.django_db
def test_unpaid_completion_waits_and_async_failure_fails_the_order(fake_stripe, buyer_client, product, reconcile):
    body = order_by_card(buyer_client, product, quantity=3)
    fake_stripe.mark_completed_unpaid(body["stripeSessionId"])

    _, waiting = deliver_session_event(fake_stripe, "checkout.session.completed", body["stripeSessionId"])
    assert waiting.status_code == 200
    assert Order.objects.get(pk=body["id"]).status == Order.Status.PENDING and stock(product) == 7

    fake_stripe.mark_async_failed(body["stripeSessionId"])
    _, response = deliver_session_event(fake_stripe, "checkout.session.async_payment_failed", body["stripeSessionId"])

    assert response.status_code == 200
    order = Order.objects.get(pk=body["id"])
    assert order.status == Order.Status.FAILED and order.failure_reason
    assert stock(product) == 10 and merchant_balance(product) == D("0.00")
    reconcile()


@pytest.mark.django_db
def test_async_success_completes_the_order(fake_stripe, buyer_client, product, reconcile):
    body = order_by_card(buyer_client, product, quantity=1)
    fake_stripe.mark_completed_unpaid(body["stripeSessionId"])
    deliver_session_event(fake_stripe, "checkout.session.completed", body["stripeSessionId"])
    fake_stripe.mark_async_succeeded(body["stripeSessionId"])

    _, response = deliver_session_event(
        fake_stripe, "checkout.session.async_payment_succeeded", body["stripeSessionId"]
    )

    assert response.status_code == 200
    assert Order.objects.get(pk=body["id"]).status == Order.Status.COMPLETED
    assert merchant_balance(product) == D("25.00") and stock(product) == 9
    reconcile()


@pytest.mark.django_db
def test_expired_session_releases_the_stock(fake_stripe, buyer_client, product, reconcile):
    body = order_by_card(buyer_client, product, quantity=4)
    assert stock(product) == 6
    fake_stripe.mark_expired(body["stripeSessionId"])

    _, response = deliver_session_event(fake_stripe, "checkout.session.expired", body["stripeSessionId"])

    assert response.status_code == 200
    assert Order.objects.get(pk=body["id"]).status == Order.Status.CANCELLED
    assert stock(product) == 10 and merchant_balance(product) == D("0.00")
    reconcile()


@pytest.mark.django_db
def test_a_late_payment_for_a_cancelled_order_is_refunded(fake_stripe, buyer_client, product, reconcile):
    """The order was cancelled here (an expiry event released it) and a payment for its
    session still arrives: nothing is credited, the payment is refunded at Stripe, once."""
    body = order_by_card(buyer_client, product, quantity=2)
    # An expiry event releases the order (the fake's session stays payable, like a race)...
    expired_session = dict(fake_stripe.sessions[body["stripeSessionId"]], status="expired")
    expired = fake_stripe.session_event("checkout.session.expired", body["stripeSessionId"])
    expired["data"]["object"] = expired_session
    assert deliver(fake_stripe, expired).status_code == 200
    assert Order.objects.get(pk=body["id"]).status == Order.Status.CANCELLED and stock(product) == 10
    # ...and then a payment for that session arrives anyway.
    session = fake_stripe.mark_paid(body["stripeSessionId"])

    event, response = deliver_session_event(fake_stripe, "checkout.session.completed", session["id"])

    assert response.status_code == 200
    order = Order.objects.select_related("payment").get(pk=body["id"])
    assert order.status == Order.Status.CANCELLED and order.payment.stripe_refund_id in fake_stripe.refunds
    refund = fake_stripe.last("POST", "/v1/refunds")
    assert refund.params["payment_intent"] == session["payment_intent"]
    assert merchant_balance(product) == D("0.00") and stock(product) == 10 and clearing() == D("0.00")

    assert deliver(fake_stripe, event).status_code == 200
    assert len(fake_stripe.calls("POST", "/v1/refunds")) == 1
    reconcile()


@pytest.mark.django_db
def test_a_paid_session_for_a_locked_merchant_wallet_fails_the_order_and_refunds(
    fake_stripe, buyer_client, product, reconcile
):
    """A locked wallet refuses every credit: instead of answering 500 until staff unlock it
    (Stripe would retry for days), the order fails, its stock comes back and the card is
    refunded; the event is PROCESSED once the refund is made."""
    body = order_by_card(buyer_client, product, quantity=2)
    wallet_set_locked(wallet_ids=[Wallet.objects.get(user=product.merchant).pk], locked=True)
    session = fake_stripe.mark_paid(body["stripeSessionId"])

    event, response = deliver_session_event(fake_stripe, "checkout.session.completed", session["id"])

    assert response.status_code == 200, response.content
    order = Order.objects.select_related("payment").get(pk=body["id"])
    assert order.status == Order.Status.FAILED and "locked" in order.failure_reason
    assert order.payment.stripe_refund_id in fake_stripe.refunds and order.payment.refund_status == "SUCCEEDED"
    refund = fake_stripe.last("POST", "/v1/refunds")
    assert refund.params["payment_intent"] == session["payment_intent"]
    assert refund.idempotency_key == f"refund-{order.payment_id}"
    assert stock(product) == 10 and merchant_balance(product) == D("0.00") and clearing() == D("0.00")
    stored = StripeEvent.objects.get(event_id=event["id"])
    assert stored.status == StripeEvent.Status.PROCESSED and "refunding" in stored.outcome, stored.outcome
    assert buyer_client.get(f"{ORDERS}/{body['id']}").json()["status"] == "FAILED"

    assert deliver(fake_stripe, event).status_code == 200  # Stripe's retry: nothing more
    assert len(fake_stripe.calls("POST", "/v1/refunds")) == 1 and stock(product) == 10
    reconcile()


@pytest.mark.django_db
def test_a_failed_refund_keeps_the_event_open_and_the_retry_refunds(fake_stripe, buyer_client, product, reconcile):
    body = order_by_card(buyer_client, product, quantity=1)
    wallet_set_locked(wallet_ids=[Wallet.objects.get(user=product.merchant).pk], locked=True)
    session = fake_stripe.mark_paid(body["stripeSessionId"])
    event = fake_stripe.session_event("checkout.session.completed", session["id"])
    fake_stripe.fail_next(1, status=500, path="/v1/refunds")

    assert deliver(fake_stripe, event).status_code == 500  # Stripe will deliver it again

    stored = StripeEvent.objects.get(event_id=event["id"])
    assert stored.status == StripeEvent.Status.FAILED and "GatewayError" in stored.last_error
    order = Order.objects.select_related("payment").get(pk=body["id"])  # the database step committed
    assert order.status == Order.Status.FAILED and order.payment.refund_status == "PENDING"  # only the refund is owed
    assert stock(product) == 10 and not fake_stripe.refunds

    assert deliver(fake_stripe, event).status_code == 200

    stored.refresh_from_db()
    assert stored.status == StripeEvent.Status.PROCESSED and stored.last_error == ""
    order.payment.refresh_from_db()
    assert order.payment.refund_status == "SUCCEEDED" and order.payment.stripe_refund_id in fake_stripe.refunds
    assert len(fake_stripe.refunds) == 1 and stock(product) == 10 and merchant_balance(product) == D("0.00")
    reconcile()


@pytest.mark.django_db
def test_a_cancel_whose_refund_fails_is_finished_by_the_webhook(fake_stripe, buyer_client, product, reconcile):
    """The buyer's cancel finds the session paid and the merchant's wallet locked: the order
    fails; Stripe fails the refund at that moment, so the refund stays PENDING, and the
    paid session's webhook refunds it."""
    body = order_by_card(buyer_client, product, quantity=1)
    wallet_set_locked(wallet_ids=[Wallet.objects.get(user=product.merchant).pk], locked=True)
    session = fake_stripe.mark_paid(body["stripeSessionId"])
    fake_stripe.fail_next(1, status=500, path="/v1/refunds")

    assert buyer_client.post(f"{ORDERS}/{body['id']}/cancel").status_code == 409
    order = Order.objects.select_related("payment").get(pk=body["id"])
    assert order.status == Order.Status.FAILED and order.payment.refund_status == "PENDING" and not fake_stripe.refunds

    _, response = deliver_session_event(fake_stripe, "checkout.session.completed", session["id"])

    assert response.status_code == 200
    order.payment.refresh_from_db()
    assert order.payment.refund_status == "SUCCEEDED" and order.payment.stripe_refund_id in fake_stripe.refunds
    assert stock(product) == 10
    reconcile()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("locked_wallet", [False, True], ids=["late-payment", "locked-wallet"])
def test_no_row_lock_is_held_while_stripe_refunds(fake_stripe, buyer_client, product, locked_wallet, reconcile):
    """While Stripe is asked for the refund, another connection can lock the order, the
    event and the merchant's wallet at once (NOWAIT): the event transaction has committed."""
    body = order_by_card(buyer_client, product, quantity=1)
    if locked_wallet:
        wallet_set_locked(wallet_ids=[Wallet.objects.get(user=product.merchant).pk], locked=True)
    else:
        payment_id = Order.objects.get(pk=body["id"]).payment_id
        payment_release(payment_id=payment_id, status=CheckoutPayment.Status.EXPIRED, reason="expired")
    session = fake_stripe.mark_paid(body["stripeSessionId"])
    event = fake_stripe.session_event("checkout.session.completed", session["id"])

    def rows_lockable_now():
        try:
            with transaction.atomic():
                order = Order.objects.select_for_update(nowait=True).get(pk=body["id"])
                CheckoutPayment.objects.select_for_update(nowait=True).get(pk=order.payment_id)
                StripeEvent.objects.select_for_update(nowait=True).get(event_id=event["id"])
                Wallet.objects.select_for_update(nowait=True).get(user=product.merchant)
                return CheckoutPayment.objects.get(pk=order.payment_id).refund_status  # the decision is committed
        finally:
            connection.close()  # this runs in the fake Stripe's thread

    fake_stripe.on_next_request("/v1/refunds", rows_lockable_now)

    assert deliver(fake_stripe, event).status_code == 200

    assert fake_stripe.hook_results == ["PENDING"]
    assert Order.objects.select_related("payment").get(pk=body["id"]).payment.stripe_refund_id in fake_stripe.refunds
    reconcile()


@pytest.mark.django_db(transaction=True)
@pytest.mark.concurrency
def test_duplicate_concurrent_deliveries_credit_the_merchant_once(
    live_server, fake_stripe, buyer_client, product, reconcile
):
    body = order_by_card(buyer_client, product, quantity=2)
    fake_stripe.mark_paid(body["stripeSessionId"])
    delivery = fake_stripe.signed(fake_stripe.session_event("checkout.session.completed", body["stripeSessionId"]))
    other = fake_stripe.signed(
        fake_stripe.session_event("checkout.session.async_payment_succeeded", body["stripeSessionId"])
    )

    responses = deliver_all_at_once(live_server, [delivery] * 5 + [other] * 3)

    assert [r.status_code for r in responses] == [200] * 8
    assert Order.objects.get(pk=body["id"]).status == Order.Status.COMPLETED
    assert merchant_balance(product) == D("50.00") and stock(product) == 8
    assert LedgerEntry.objects.filter(wallet__user=product.merchant).count() == 1
    reconcile()
