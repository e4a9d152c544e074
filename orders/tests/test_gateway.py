"""Card orders end to end against the fake Stripe (the real SDK over HTTP): creation, what
their payment's hooks do (paid, failed, expired, late payments), cancel, refunds and the
expiry sweep. Webhook delivery itself is in webhooks/tests; the refund defects of issue 11
in test_card_refunds.py."""

import io
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command
from django.db import IntegrityError, connection, transaction
from django.test import override_settings
from django.utils import timezone

from orders import services
from orders.models import Order
from orders.tests.utils import ORDERS, balance, books, card_order, error, order_legs, stock
from paymentflow.testing.concurrency import run_at_once
from payments.exceptions import RefundInProgress
from payments.gateway import CheckoutSession, GatewayError, GatewayNotConfigured
from payments.models import CheckoutPayment
from payments.services import payment_paid, payment_refund_resume, payment_release
from wallets.models import JournalEntry, Wallet
from wallets.selectors import system_wallet_balances
from wallets.services import wallet_set_locked, wallet_withdraw

D = Decimal
FAILED, EXPIRED = CheckoutPayment.Status.FAILED, CheckoutPayment.Status.EXPIRED


def clearing() -> Decimal:
    return system_wallet_balances()["stripe:clearing"]


def create(client, product, quantity=2) -> dict:
    return card_order(client, product, quantity)


def reload(order_id) -> Order:
    return Order.objects.select_related("payment").get(pk=order_id)


def pay(fake_stripe, order_id) -> Order:
    """The buyer pays at Stripe and the paid session is applied (as its webhook would)."""
    order = reload(order_id)
    session = CheckoutSession.from_stripe(fake_stripe.mark_paid(order.payment.stripe_session_id))
    payment_paid(payment_id=order.payment_id, session=session)
    return reload(order_id)


@pytest.mark.django_db
class TestCreate:
    def test_pending_order_with_a_checkout_session(self, fake_stripe, buyer, buyer_client, product, reconcile):
        body = create(buyer_client, product, quantity=2)

        assert body["status"] == "PENDING" and body["paymentMethod"] == "GATEWAY" and body["refundStatus"] is None
        assert body["stripeSessionId"].startswith("cs_test_") and body["checkoutUrl"].startswith("https://checkout")
        assert body["amount"] == "50.00" and body["completedAt"] is None
        assert stock(product) == 8
        call = fake_stripe.last("POST", "/v1/checkout/sessions")
        item = call.params["line_items"][0]
        assert item["price_data"]["unit_amount"] == "2500" and item["quantity"] == "2"
        assert item["price_data"]["currency"] == "usd" and item["price_data"]["product_data"]["name"] == product.name
        assert call.params["client_reference_id"] == body["id"]
        assert call.params["metadata"] == {"kind": "order", "reference_id": body["id"]}
        assert call.params["payment_intent_data"]["metadata"] == {"kind": "order", "reference_id": body["id"]}
        assert call.params["customer_email"] == buyer.email
        payment = reload(body["id"]).payment
        assert call.idempotency_key == f"checkout-{payment.pk}"
        assert (payment.kind, payment.payer, payment.amount, payment.status) == ("order", buyer, D("50.00"), "PENDING")
        assert payment.stripe_session_id == body["stripeSessionId"] and payment.checkout_url == body["checkoutUrl"]
        assert int(call.params["expires_at"]) == int(payment.expires_at.timestamp())
        assert payment.expires_at > timezone.now() + timedelta(minutes=30)
        assert not JournalEntry.objects.exists()  # no money moves until Stripe says paid
        reconcile()

    def test_not_configured_is_503_and_reserves_nothing(self, buyer_client, product):
        before = books()
        response = buyer_client.post(ORDERS, {"productId": str(product.pk), "paymentMethod": "GATEWAY"})
        error(response, 503, "GATEWAY_NOT_CONFIGURED")
        assert books() == before and not CheckoutPayment.objects.exists()

    @pytest.mark.parametrize("how", ["down", "fail_next"])
    def test_stripe_down_is_502_and_releases_the_reservation(self, fake_stripe, buyer_client, product, how, reconcile):
        if how == "down":
            fake_stripe.down = True
        else:
            fake_stripe.fail_next(1, status=500)
        response = buyer_client.post(ORDERS, {"productId": str(product.pk), "paymentMethod": "GATEWAY"})
        error(response, 502, "GATEWAY_ERROR")
        assert stock(product) == 10
        order = Order.objects.select_related("payment").get()  # the order stays, FAILED, as the record
        assert order.status == Order.Status.FAILED and order.failure_reason
        assert order.payment.status == FAILED and order.payment.stripe_session_id is None
        reconcile()

    def test_stripe_down_with_an_idempotency_key_releases_and_allows_a_retry(self, fake_stripe, buyer_client, product):
        fake_stripe.down = True
        response = buyer_client.post(
            ORDERS, {"productId": str(product.pk), "paymentMethod": "GATEWAY"}, HTTP_IDEMPOTENCY_KEY="k1"
        )
        error(response, 502, "GATEWAY_ERROR")
        # The reservation committed before the Stripe call (no lock is held across it), so
        # it is released rather than rolled back: the order stays as a FAILED record.
        assert stock(product) == 10
        assert Order.objects.get().status == Order.Status.FAILED
        fake_stripe.down = False  # the 502 was not stored: the same key may be retried
        response = buyer_client.post(
            ORDERS, {"productId": str(product.pk), "paymentMethod": "GATEWAY"}, HTTP_IDEMPOTENCY_KEY="k1"
        )
        assert response.status_code == 201 and stock(product) == 9
        replay = buyer_client.post(
            ORDERS, {"productId": str(product.pk), "paymentMethod": "GATEWAY"}, HTTP_IDEMPOTENCY_KEY="k1"
        )
        assert replay.content == response.content and replay["Idempotent-Replayed"] == "true"
        assert len(fake_stripe.calls("POST", "/v1/checkout/sessions")) == 2  # the refused one, the good one


@pytest.mark.django_db
class TestPaymentHooks:
    def test_paid_completes_and_credits_the_merchant_against_clearing(
        self, fake_stripe, buyer_client, product, merchant, reconcile
    ):
        order = pay(fake_stripe, create(buyer_client, product)["id"])

        assert order.status == Order.Status.COMPLETED and order.completed_at is not None
        assert order.payment.status == "SUCCEEDED" and order.payment.stripe_payment_intent_id.startswith("pi_test_")
        assert balance(merchant) == D("50.00") and clearing() == D("-50.00") and stock(product) == 8
        assert order_legs(order) == {
            (merchant.email, "REVENUE"): D("50.00"),
            ("stripe:clearing", "REVENUE"): D("-50.00"),
        }
        reconcile()

    def test_paid_twice_moves_money_once(self, fake_stripe, buyer_client, product, merchant, reconcile):
        order = pay(fake_stripe, create(buyer_client, product)["id"])
        session = CheckoutSession.from_stripe(fake_stripe.sessions[order.payment.stripe_session_id])
        again = payment_paid(payment_id=order.payment_id, session=session)
        assert again.payment.status == "SUCCEEDED" and not again.refund_due
        assert balance(merchant) == D("50.00") and len(order_legs(order)) == 2
        assert not fake_stripe.calls("POST", "/v1/refunds")
        reconcile()

    def test_failed_releases_the_stock(self, fake_stripe, buyer_client, product, reconcile):
        order = reload(create(buyer_client, product)["id"])
        assert payment_release(payment_id=order.payment_id, status=FAILED, reason="Card declined.")
        order = reload(order.pk)
        assert order.status == Order.Status.FAILED and order.failure_reason == "Card declined."
        assert stock(product) == 10
        assert not payment_release(payment_id=order.payment_id, status=FAILED, reason="again")
        assert reload(order.pk).failure_reason == "Card declined." and stock(product) == 10
        reconcile()

    def test_session_expired_releases_the_stock(self, fake_stripe, buyer_client, product, reconcile):
        order = reload(create(buyer_client, product)["id"])
        payment_release(payment_id=order.payment_id, status=EXPIRED, reason="The checkout session expired unpaid.")
        order = reload(order.pk)
        assert order.status == Order.Status.CANCELLED and order.cancelled_at and order.failure_reason
        assert order.payment.status == EXPIRED and stock(product) == 10
        payment_release(payment_id=order.payment_id, status=EXPIRED, reason="again")
        assert stock(product) == 10
        reconcile()

    def test_expired_or_failed_after_completion_is_a_no_op(self, fake_stripe, buyer_client, product, merchant):
        order = pay(fake_stripe, create(buyer_client, product)["id"])
        assert not payment_release(payment_id=order.payment_id, status=EXPIRED, reason="x")
        assert not payment_release(payment_id=order.payment_id, status=FAILED, reason="x")
        assert reload(order.pk).status == "COMPLETED" and stock(product) == 8 and balance(merchant) == D("50.00")

    def test_late_payment_for_a_cancelled_order_is_refunded_once(
        self, fake_stripe, buyer_client, product, merchant, reconcile
    ):
        order = reload(create(buyer_client, product)["id"])
        session = CheckoutSession.from_stripe(fake_stripe.mark_paid(order.payment.stripe_session_id))  # paid...
        payment_release(payment_id=order.payment_id, status=EXPIRED, reason="x")  # ...but released here first

        outcome = payment_paid(payment_id=order.payment_id, session=session)
        # Under the payment lock only the decision is recorded: Stripe is not called there.
        assert outcome.refund_due and outcome.payment.refund_status == "PENDING"
        assert outcome.payment.stripe_payment_intent_id == session.payment_intent_id
        assert reload(order.pk).status == Order.Status.CANCELLED and not fake_stripe.calls("POST", "/v1/refunds")

        for _ in range(2):  # the refund run twice (a retried event): one refund at Stripe
            payment = payment_refund_resume(payment_id=order.payment_id)
        again = payment_paid(payment_id=order.payment_id, session=session)  # the event again: nothing to do

        assert payment.refund_status == "SUCCEEDED" and payment.stripe_refund_id in fake_stripe.refunds
        assert not again.refund_due
        (refund,) = fake_stripe.calls("POST", "/v1/refunds")
        assert refund.params["payment_intent"] == session.payment_intent_id
        assert refund.idempotency_key == f"refund-{order.payment_id}"
        assert balance(merchant) == D("0.00") and clearing() == D("0.00") and stock(product) == 10
        assert reload(order.pk).status == Order.Status.CANCELLED
        reconcile()

    def test_late_payment_refund_failure_keeps_it_pending_for_a_retry(self, fake_stripe, buyer_client, product):
        order = reload(create(buyer_client, product)["id"])
        session = CheckoutSession.from_stripe(fake_stripe.mark_paid(order.payment.stripe_session_id))
        payment_release(payment_id=order.payment_id, status=FAILED, reason="x")
        payment_paid(payment_id=order.payment_id, session=session)
        fake_stripe.fail_next(1, status=500)
        with pytest.raises(GatewayError):
            payment_refund_resume(payment_id=order.payment_id)
        payment = reload(order.pk).payment
        assert payment.refund_status == "PENDING" and payment.stripe_refund_id is None
        assert payment.refund_attempt_started_at is None  # the lease is given back

        payment = payment_refund_resume(payment_id=order.payment_id)  # Stripe retries the event
        assert payment.refund_status == "SUCCEEDED" and len(fake_stripe.refunds) == 1

    def test_paid_with_the_merchant_wallet_locked_fails_releases_and_is_refunded(
        self, fake_stripe, buyer_client, product, merchant, reconcile
    ):
        """A locked wallet refuses every credit: the order cannot complete, so it fails,
        its units come back and the card is refunded; nothing is credited."""
        order = reload(create(buyer_client, product)["id"])
        session = CheckoutSession.from_stripe(fake_stripe.mark_paid(order.payment.stripe_session_id))
        wallet_set_locked(wallet_ids=[Wallet.objects.get(user=merchant).pk], locked=True)

        outcome = payment_paid(payment_id=order.payment_id, session=session)

        order = reload(order.pk)
        assert order.status == Order.Status.FAILED and "locked" in order.failure_reason
        assert outcome.refund_due and order.payment.status == FAILED
        assert stock(product) == 10 and balance(merchant) == D("0.00") and clearing() == D("0.00")
        assert not order_legs(order) and not fake_stripe.calls("POST", "/v1/refunds")

        payment = payment_refund_resume(payment_id=order.payment_id)

        assert payment.stripe_refund_id in fake_stripe.refunds and payment.refund_status == "SUCCEEDED"
        assert fake_stripe.last("POST", "/v1/refunds").params["payment_intent"] == session.payment_intent_id
        reconcile()

    def test_a_refund_only_of_a_settled_payment_with_its_payment_intent(self, fake_stripe, buyer_client, product):
        order = reload(create(buyer_client, product)["id"])
        with pytest.raises(IntegrityError), transaction.atomic():  # still PENDING
            CheckoutPayment.objects.filter(pk=order.payment_id).update(
                refund_status="PENDING", refund_requested_at=timezone.now(), stripe_payment_intent_id="pi_x"
            )
        with pytest.raises(IntegrityError), transaction.atomic():  # nothing paid: no payment intent
            CheckoutPayment.objects.filter(pk=order.payment_id).update(
                status="FAILED", refund_status="PENDING", refund_requested_at=timezone.now()
            )


@pytest.mark.django_db
class TestCancel:
    def test_expires_the_session_then_releases(self, fake_stripe, buyer_client, product, reconcile):
        body = create(buyer_client, product)
        response = buyer_client.post(f"{ORDERS}/{body['id']}/cancel")
        assert response.status_code == 200, response.content
        assert response.json()["status"] == "CANCELLED"
        assert fake_stripe.last("POST", f"/v1/checkout/sessions/{body['stripeSessionId']}/expire")
        assert fake_stripe.sessions[body["stripeSessionId"]]["status"] == "expired"
        assert reload(body["id"]).payment.status == EXPIRED and stock(product) == 10
        reconcile()

    def test_paid_meanwhile_is_409_and_completes(self, fake_stripe, buyer_client, product, merchant, reconcile):
        body = create(buyer_client, product)
        fake_stripe.mark_paid(body["stripeSessionId"])
        error(buyer_client.post(f"{ORDERS}/{body['id']}/cancel"), 409, "ORDER_NOT_CANCELLABLE")
        order = Order.objects.get(pk=body["id"])
        assert order.status == Order.Status.COMPLETED and balance(merchant) == D("50.00") and stock(product) == 8
        reconcile()

    def test_paid_meanwhile_with_the_merchant_wallet_locked_is_409_failed_and_refunded(
        self, fake_stripe, buyer_client, product, merchant, reconcile
    ):
        body = create(buyer_client, product)
        session = fake_stripe.mark_paid(body["stripeSessionId"])
        wallet_set_locked(wallet_ids=[Wallet.objects.get(user=merchant).pk], locked=True)

        refused = error(buyer_client.post(f"{ORDERS}/{body['id']}/cancel"), 409, "ORDER_NOT_CANCELLABLE")

        assert "refunded" in refused["message"]
        order = reload(body["id"])
        assert order.status == Order.Status.FAILED and order.payment.refund_status == "SUCCEEDED"
        assert order.payment.stripe_refund_id in fake_stripe.refunds
        assert fake_stripe.last("POST", "/v1/refunds").params["payment_intent"] == session["payment_intent"]
        assert balance(merchant) == D("0.00") and clearing() == D("0.00") and stock(product) == 10
        reconcile()

    def test_payment_processing_is_409(self, fake_stripe, buyer_client, product):
        body = create(buyer_client, product)
        fake_stripe.mark_completed_unpaid(body["stripeSessionId"])
        error(buyer_client.post(f"{ORDERS}/{body['id']}/cancel"), 409, "ORDER_NOT_CANCELLABLE")
        assert Order.objects.get(pk=body["id"]).status == "PENDING" and stock(product) == 8

    def test_stripe_down_is_502_and_nothing_changes(self, fake_stripe, buyer_client, product):
        body = create(buyer_client, product)
        fake_stripe.down = True
        error(buyer_client.post(f"{ORDERS}/{body['id']}/cancel"), 502, "GATEWAY_ERROR")
        assert Order.objects.get(pk=body["id"]).status == "PENDING" and stock(product) == 8


@pytest.mark.django_db
class TestRefund:
    def test_refund_at_stripe_and_revenue_back_to_clearing(
        self, fake_stripe, buyer_client, merchant_client, product, merchant, reconcile
    ):
        order = pay(fake_stripe, create(buyer_client, product)["id"])

        response = merchant_client.post(f"{ORDERS}/{order.pk}/refund", {"reason": "Out of date"})

        assert response.status_code == 200, response.content
        assert response.json()["status"] == "REFUNDED" and response.json()["refundStatus"] == "SUCCEEDED"
        call = fake_stripe.last("POST", "/v1/refunds")
        assert call.params["payment_intent"] == order.payment.stripe_payment_intent_id
        assert "amount" not in call.params  # all that is left of what Stripe took: 50.00
        assert fake_stripe.refunds[next(iter(fake_stripe.refunds))]["amount"] == 5000
        assert call.idempotency_key == f"refund-{order.payment_id}"
        order = reload(order.pk)
        assert (
            order.payment.stripe_refund_id == next(iter(fake_stripe.refunds)) and order.refund_reason == "Out of date"
        )
        assert balance(merchant) == D("0.00") and clearing() == D("0.00") and stock(product) == 10
        assert order_legs(order)[(merchant.email, "REFUND")] == D("-50.00")
        reconcile()

    def test_merchant_short_is_400_and_stripe_is_not_called(
        self, fake_stripe, buyer_client, merchant_client, product, merchant, reconcile
    ):
        order = pay(fake_stripe, create(buyer_client, product)["id"])
        wallet_withdraw(wallet=Wallet.objects.get(user=merchant), amount=D("10.00"))
        before = books()
        error(merchant_client.post(f"{ORDERS}/{order.pk}/refund"), 400, "INSUFFICIENT_FUNDS")
        assert books() == before and not fake_stripe.calls("POST", "/v1/refunds")
        assert reload(order.pk).payment.refund_status is None
        reconcile()

    def test_transient_failure_keeps_the_hold_and_a_retry_finishes(
        self, fake_stripe, buyer_client, merchant_client, product, merchant, reconcile
    ):
        order = pay(fake_stripe, create(buyer_client, product)["id"])
        fake_stripe.stall_next(1, seconds=1.5)  # the refund IS made, the answer is lost
        with override_settings(STRIPE_TIMEOUT_SECONDS=0.5):
            error(merchant_client.post(f"{ORDERS}/{order.pk}/refund"), 502, "GATEWAY_ERROR")
        order = reload(order.pk)
        assert order.status == "COMPLETED" and order.payment.refund_status == "PENDING"
        assert balance(merchant) == D("0.00")  # held: the money cannot be spent meanwhile
        reconcile()

        response = merchant_client.post(f"{ORDERS}/{order.pk}/refund")

        assert response.status_code == 200 and response.json()["status"] == "REFUNDED"
        assert len(fake_stripe.refunds) == 1  # the same idempotency key found the first refund
        assert balance(merchant) == D("0.00") and clearing() == D("0.00") and stock(product) == 10
        reconcile()

    def test_not_configured_is_503_and_nothing_changes(self, fake_stripe, buyer_client, merchant_client, product):
        order = pay(fake_stripe, create(buyer_client, product)["id"])
        before = books()
        with override_settings(STRIPE_SECRET_KEY=""):
            error(merchant_client.post(f"{ORDERS}/{order.pk}/refund"), 503, "GATEWAY_NOT_CONFIGURED")
        assert books() == before


@pytest.mark.django_db
class TestExpirePendingCheckouts:
    def _expire(self, order_id, minutes_ago=5):
        payment = reload(order_id).payment
        CheckoutPayment.objects.filter(pk=payment.pk).update(expires_at=timezone.now() - timedelta(minutes=minutes_ago))

    def test_closes_expired_checkouts_only(self, fake_stripe, buyer_client, client_for, product, reconcile):
        from orders.tests.factories import funded_buyer

        old, fresh = create(buyer_client, product, 1), create(buyer_client, product, 1)
        self._expire(old["id"])
        paid = create(client_for(funded_buyer()), product, 1)
        self._expire(paid["id"], 10)
        fake_stripe.mark_paid(paid["stripeSessionId"])

        out = io.StringIO()
        call_command("expire_pending_checkouts", stdout=out)

        assert Order.objects.get(pk=old["id"]).status == "CANCELLED"
        assert fake_stripe.sessions[old["stripeSessionId"]]["status"] == "expired"
        assert Order.objects.get(pk=fresh["id"]).status == "PENDING"
        assert Order.objects.get(pk=paid["id"]).status == "COMPLETED"  # paid meanwhile: applied, not cancelled
        assert "2 found" in out.getvalue() and stock(product) == 8
        reconcile()

    def test_a_lost_async_payment_failure_fails_the_order(self, fake_stripe, buyer_client, product, reconcile):
        """The delayed payment failed at Stripe and its `async_payment_failed` event was lost:
        the session is complete and unpaid for ever, so the sweep asks its PaymentIntent."""
        body = create(buyer_client, product, 3)
        fake_stripe.mark_completed_unpaid(body["stripeSessionId"])
        self._expire(body["id"])
        call_command("expire_pending_checkouts", stdout=io.StringIO())
        assert Order.objects.get(pk=body["id"]).status == "PENDING"  # still processing: left alone

        fake_stripe.mark_async_failed(body["stripeSessionId"])
        call_command("expire_pending_checkouts", stdout=io.StringIO())

        order = reload(body["id"])
        assert order.status == "FAILED" and order.payment.status == FAILED and stock(product) == 10
        assert fake_stripe.calls(
            "GET", f"/v1/payment_intents/{fake_stripe.sessions[body['stripeSessionId']]['payment_intent']}"
        )
        reconcile()

    def test_paid_with_the_merchant_wallet_locked_fails_and_is_refunded(
        self, fake_stripe, buyer_client, product, merchant, reconcile
    ):
        old = create(buyer_client, product, 2)
        self._expire(old["id"])
        fake_stripe.mark_paid(old["stripeSessionId"])
        wallet_set_locked(wallet_ids=[Wallet.objects.get(user=merchant).pk], locked=True)

        out = io.StringIO()
        call_command("expire_pending_checkouts", stdout=out)  # exits 0: the order was handled

        order = reload(old["id"])
        assert order.status == "FAILED" and order.payment.stripe_refund_id in fake_stripe.refunds
        assert "paid_not_applied: 1" in out.getvalue()
        assert balance(merchant) == D("0.00") and stock(product) == 10
        reconcile()

    def test_stripe_down_exits_non_zero_and_keeps_the_order(self, fake_stripe, buyer_client, product):
        old = create(buyer_client, product, 1)
        self._expire(old["id"])
        fake_stripe.down = True
        with pytest.raises(CommandError, match=str(reload(old["id"]).payment_id)):
            call_command("expire_pending_checkouts", stdout=io.StringIO())
        assert Order.objects.get(pk=old["id"]).status == "PENDING"

    def test_not_configured_keeps_sessions_pending(self, buyer_client, product):
        """Without a Stripe key an open session cannot be expired, so its order is kept."""
        from orders.tests.factories import OrderFactory

        order = OrderFactory(payment__stripe_session_id="cs_test_x")
        self._expire(order.pk)
        with pytest.raises(CommandError):
            call_command("expire_pending_checkouts", stdout=io.StringIO())
        assert Order.objects.get(pk=order.pk).status == "PENDING"

    def test_a_checkout_that_never_got_a_session_is_released_without_stripe(self, product, reconcile):
        from orders.tests.factories import OrderFactory

        order = OrderFactory()
        self._expire(order.pk)
        call_command("expire_pending_checkouts", stdout=io.StringIO())
        assert reload(order.pk).status == "CANCELLED"
        reconcile()


@pytest.mark.django_db(transaction=True)
@pytest.mark.concurrency
def test_expire_pending_checkouts_twice_at_once(fake_stripe, buyer, client_for, product, reconcile):
    client = client_for(buyer)
    orders = [create(client, product, 1) for _ in range(3)]
    CheckoutPayment.objects.update(expires_at=timezone.now() - timedelta(hours=1))

    def run():
        # A session the other run expired first reads back "expired": not an error.
        call_command("expire_pending_checkouts", stdout=io.StringIO())

    run_at_once([run, run])

    assert set(Order.objects.values_list("status", flat=True)) == {"CANCELLED"}
    assert stock(product) == 10  # each order's units came back exactly once
    assert all(fake_stripe.sessions[o["stripeSessionId"]]["status"] == "expired" for o in orders)
    reconcile()


def test_gateway_not_configured_raises_before_reserving(db, buyer, product):
    with pytest.raises(GatewayNotConfigured):
        services.order_purchase_with_gateway(buyer=buyer, product_id=product.pk)
    assert stock(product) == 10 and not Order.objects.exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.concurrency
def test_a_second_refund_while_the_first_is_at_stripe_is_409_and_keeps_the_hold(
    fake_stripe, buyer_client, product, merchant, reconcile
):
    """Two refunds of one card order at once: while the first talks to Stripe (it holds the
    payment's refund lease), the second is refused 409 REFUND_IN_PROGRESS without asking
    Stripe, and the first goes through: one refund, the merchant debited once."""
    order = pay(fake_stripe, create(buyer_client, product)["id"])

    def second_refund_while_the_first_waits_for_stripe():
        try:
            with pytest.raises(RefundInProgress):
                services.order_refund(order_id=order.pk, merchant=merchant)
            return reload(order.pk).payment.refund_status
        finally:
            connection.close()  # this runs in the fake Stripe's thread

    fake_stripe.on_next_request("/v1/refunds", second_refund_while_the_first_waits_for_stripe)

    refunded = services.order_refund(order_id=order.pk, merchant=merchant)

    assert fake_stripe.hook_results == ["PENDING"]
    assert len(fake_stripe.calls("POST", "/v1/refunds")) == 1
    assert refunded.status == "REFUNDED" and len(fake_stripe.refunds) == 1
    assert balance(merchant) == D("0.00") and clearing() == D("0.00") and stock(product) == 10
    reconcile()


@pytest.mark.django_db
def test_a_card_order_beyond_any_money_column_is_400_not_500(fake_stripe, buyer_client, merchant):
    """Issue 11, defect 4: 999999999999.99 x 2 overflowed `orders_order.amount` (a 500)."""
    from catalog.tests.factories import ProductFactory

    product = ProductFactory(merchant=merchant, price=D("999999999999.99"), available_units=5)
    before = books()
    response = buyer_client.post(ORDERS, {"productId": str(product.pk), "paymentMethod": "GATEWAY", "quantity": 2})
    body = error(response, 400, "VALIDATION_ERROR")
    assert "quantity" in body["details"]
    assert books() == before and not fake_stripe.requests


@pytest.mark.django_db(transaction=True)
@pytest.mark.concurrency
def test_a_cancel_while_the_checkout_session_is_being_created_wins(fake_stripe, buyer, client_for, product, reconcile):
    """The buyer cancels the PENDING card order while POST /orders waits for Stripe to create
    its Checkout Session: the cancel wins. When the session comes back it is recorded as
    ours (so a payment through it could only be a late one, refunded) but expired at Stripe
    at once, and the POST answers the order as it is: CANCELLED, no checkout URL; the
    units came back once."""

    def cancel_while_stripe_creates_the_session():
        try:  # runs in the fake Stripe's thread, before it creates the session
            order = Order.objects.get(user=buyer, status=Order.Status.PENDING)
            response = client_for(buyer).post(f"{ORDERS}/{order.pk}/cancel")
            return response.status_code, response.json()["status"]
        finally:
            connection.close()

    fake_stripe.on_next_request("/v1/checkout/sessions", cancel_while_stripe_creates_the_session)

    response = client_for(buyer).post(ORDERS, {"productId": str(product.pk), "paymentMethod": "GATEWAY", "quantity": 2})

    assert fake_stripe.hook_results == [(200, "CANCELLED")]
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "CANCELLED" and body["checkoutUrl"] is None, body
    (session_id,) = fake_stripe.sessions
    assert fake_stripe.sessions[session_id]["status"] == "expired"  # it can no longer be paid
    assert fake_stripe.last("POST", f"/v1/checkout/sessions/{session_id}/expire")
    order = reload(body["id"])
    assert order.status == Order.Status.CANCELLED and order.payment.status == EXPIRED
    assert order.payment.stripe_session_id == session_id and order.payment.checkout_url is None
    assert stock(product) == 10  # the two units back, once
    reconcile()


@pytest.mark.django_db(transaction=True)
@pytest.mark.concurrency
def test_a_cancel_while_the_session_creation_fails_is_the_answer_not_a_502(
    fake_stripe, buyer, client_for, product, reconcile
):
    def cancel_while_stripe_creates_the_session():
        try:
            order = Order.objects.get(user=buyer, status=Order.Status.PENDING)
            return client_for(buyer).post(f"{ORDERS}/{order.pk}/cancel").status_code
        finally:
            connection.close()

    fake_stripe.on_next_request("/v1/checkout/sessions", cancel_while_stripe_creates_the_session)
    fake_stripe.fail_next(1, status=500, path="/v1/checkout/sessions")

    response = client_for(buyer).post(ORDERS, {"productId": str(product.pk), "paymentMethod": "GATEWAY"})

    assert fake_stripe.hook_results == [200]
    assert response.status_code == 201, response.content
    assert response.json()["status"] == "CANCELLED" and response.json()["checkoutUrl"] is None
    assert reload(response.json()["id"]).payment.status == EXPIRED and stock(product) == 10
    reconcile()
