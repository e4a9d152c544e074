"""Card orders end to end against the fake Stripe (the real SDK over HTTP): creation,
the three webhook-facing services, cancel, expiry, late payments and refunds."""

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
from orders.tests.utils import balance, books, error, order_legs, stock
from paymentflow.testing.concurrency import run_at_once
from payments.gateway import GatewayError, GatewayNotConfigured
from wallets.models import JournalEntry, Wallet
from wallets.selectors import system_wallet_balances
from wallets.services import wallet_set_locked, wallet_withdraw

D = Decimal
ORDERS = "/api/v1/orders"


def clearing() -> Decimal:
    return system_wallet_balances()["stripe:clearing"]


def create(client, product, quantity=2):
    response = client.post(ORDERS, {"productId": str(product.pk), "paymentMethod": "GATEWAY", "quantity": quantity})
    assert response.status_code == 201, response.content
    return response.json()


def pay(fake_stripe, order_id):
    order = Order.objects.get(pk=order_id)
    session = fake_stripe.mark_paid(order.stripe_session_id)
    return services.order_gateway_payment_succeeded(
        order_id=order.pk, session_id=session["id"], payment_intent_id=session["payment_intent"]
    )


@pytest.mark.django_db
class TestCreate:
    def test_pending_order_with_a_checkout_session(self, fake_stripe, buyer, buyer_client, product, reconcile):
        body = create(buyer_client, product, quantity=2)

        assert body["status"] == "PENDING" and body["paymentMethod"] == "GATEWAY"
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
        assert call.idempotency_key == f"checkout-{body['id']}"
        order = Order.objects.get(pk=body["id"])
        assert int(call.params["expires_at"]) == int(order.checkout_expires_at.timestamp())
        assert order.checkout_expires_at > timezone.now() + timedelta(minutes=30)
        assert not JournalEntry.objects.exists()  # no money moves until Stripe says paid
        reconcile()

    def test_not_configured_is_503_and_reserves_nothing(self, buyer_client, product):
        before = books()
        response = buyer_client.post(ORDERS, {"productId": str(product.pk), "paymentMethod": "GATEWAY"})
        error(response, 503, "GATEWAY_NOT_CONFIGURED")
        assert books() == before

    @pytest.mark.parametrize("how", ["down", "fail_next"])
    def test_stripe_down_is_502_and_releases_the_reservation(self, fake_stripe, buyer_client, product, how, reconcile):
        if how == "down":
            fake_stripe.down = True
        else:
            fake_stripe.fail_next(1, status=500)
        response = buyer_client.post(ORDERS, {"productId": str(product.pk), "paymentMethod": "GATEWAY"})
        error(response, 502, "GATEWAY_ERROR")
        assert stock(product) == 10
        order = Order.objects.get()  # without Idempotency-Key the order stays, FAILED, as a record
        assert order.status == Order.Status.FAILED and order.failure_reason
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
class TestWebhookServices:
    def test_paid_completes_and_credits_the_merchant_against_clearing(
        self, fake_stripe, buyer_client, product, merchant, reconcile
    ):
        body = create(buyer_client, product)
        order = pay(fake_stripe, body["id"])

        assert order.status == Order.Status.COMPLETED and order.completed_at is not None
        assert order.stripe_payment_intent_id.startswith("pi_test_")
        assert balance(merchant) == D("50.00") and clearing() == D("-50.00") and stock(product) == 8
        assert order_legs(order) == {
            (merchant.email, "REVENUE"): D("50.00"),
            ("stripe:clearing", "REVENUE"): D("-50.00"),
        }
        reconcile()

    def test_paid_twice_moves_money_once(self, fake_stripe, buyer_client, product, merchant, reconcile):
        body = create(buyer_client, product)
        order = pay(fake_stripe, body["id"])
        again = services.order_gateway_payment_succeeded(
            order_id=order.pk, session_id=order.stripe_session_id, payment_intent_id=order.stripe_payment_intent_id
        )
        assert again.status == Order.Status.COMPLETED
        assert balance(merchant) == D("50.00") and len(order_legs(order)) == 2
        assert not fake_stripe.calls("POST", "/v1/refunds")
        reconcile()

    def test_failed_releases_the_stock(self, fake_stripe, buyer_client, product, reconcile):
        body = create(buyer_client, product)
        order = services.order_gateway_payment_failed(order_id=body["id"], reason="Card declined.")
        assert order.status == Order.Status.FAILED and order.failure_reason == "Card declined."
        assert stock(product) == 10
        assert services.order_gateway_payment_failed(order_id=body["id"], reason="again").failure_reason == (
            "Card declined."
        )
        assert stock(product) == 10
        reconcile()

    def test_session_expired_releases_the_stock(self, fake_stripe, buyer_client, product, reconcile):
        body = create(buyer_client, product)
        fake_stripe.mark_expired(body["stripeSessionId"])
        order = services.order_gateway_session_expired(order_id=body["id"])
        assert order.status == Order.Status.CANCELLED and order.cancelled_at and order.failure_reason
        assert stock(product) == 10
        services.order_gateway_session_expired(order_id=body["id"])
        assert stock(product) == 10
        reconcile()

    def test_expired_after_completion_is_a_no_op(self, fake_stripe, buyer_client, product, merchant):
        body = create(buyer_client, product)
        pay(fake_stripe, body["id"])
        assert services.order_gateway_session_expired(order_id=body["id"]).status == Order.Status.COMPLETED
        assert services.order_gateway_payment_failed(order_id=body["id"], reason="x").status == "COMPLETED"
        assert stock(product) == 8 and balance(merchant) == D("50.00")

    def test_late_payment_for_a_cancelled_order_is_refunded_once(
        self, fake_stripe, buyer_client, product, merchant, reconcile
    ):
        body = create(buyer_client, product)
        session = fake_stripe.mark_paid(body["stripeSessionId"])  # paid at Stripe...
        services.order_gateway_session_expired(order_id=body["id"])  # ...but we released the stock first

        order = services.order_gateway_payment_succeeded(
            order_id=body["id"], session_id=session["id"], payment_intent_id=session["payment_intent"]
        )
        # Under the order lock only the decision is recorded: Stripe is not called there.
        assert order.status == Order.Status.CANCELLED and order.refund_required and order.stripe_refund_id is None
        assert order.stripe_payment_intent_id == session["payment_intent"]
        assert not fake_stripe.calls("POST", "/v1/refunds")

        for _ in range(2):  # the refund run twice (a retried event): one refund at Stripe
            order = services.order_refund_unapplied_payment(order_id=body["id"])
        again = services.order_gateway_payment_succeeded(  # the event delivered again: nothing to do
            order_id=body["id"], session_id=session["id"], payment_intent_id=session["payment_intent"]
        )

        assert order.status == Order.Status.CANCELLED and order.stripe_refund_id.startswith("re_test_")
        assert not order.refund_required and not again.refund_required
        refunds = fake_stripe.calls("POST", "/v1/refunds")
        assert len(refunds) == 1
        assert refunds[0].params["payment_intent"] == session["payment_intent"]
        assert refunds[0].idempotency_key == f"late-payment-refund-{body['id']}"
        assert balance(merchant) == D("0.00") and clearing() == D("0.00") and stock(product) == 10
        reconcile()

    def test_late_payment_refund_failure_keeps_it_required_for_a_retry(self, fake_stripe, buyer_client, product):
        body = create(buyer_client, product)
        session = fake_stripe.mark_paid(body["stripeSessionId"])
        services.order_gateway_payment_failed(order_id=body["id"], reason="x")
        services.order_gateway_payment_succeeded(
            order_id=body["id"], session_id=session["id"], payment_intent_id=session["payment_intent"]
        )
        fake_stripe.fail_next(1, status=500)
        with pytest.raises(GatewayError):
            services.order_refund_unapplied_payment(order_id=body["id"])
        order = Order.objects.get(pk=body["id"])
        assert order.refund_required and order.stripe_refund_id is None

        order = services.order_refund_unapplied_payment(order_id=body["id"])  # Stripe retries the event
        assert order.stripe_refund_id and not order.refund_required and len(fake_stripe.refunds) == 1

    def test_paid_with_the_merchant_wallet_locked_fails_releases_and_is_refunded(
        self, fake_stripe, buyer_client, product, merchant, reconcile
    ):
        """A locked wallet refuses every credit: the order cannot complete, so it fails,
        its units come back and the card is refunded; nothing is credited."""
        body = create(buyer_client, product)
        session = fake_stripe.mark_paid(body["stripeSessionId"])
        wallet_set_locked(wallet_ids=[Wallet.objects.get(user=merchant).pk], locked=True)

        order = services.order_gateway_payment_succeeded(
            order_id=body["id"], session_id=session["id"], payment_intent_id=session["payment_intent"]
        )

        assert order.status == Order.Status.FAILED and "locked" in order.failure_reason
        assert order.refund_required and order.stripe_payment_intent_id == session["payment_intent"]
        assert stock(product) == 10 and balance(merchant) == D("0.00") and clearing() == D("0.00")
        assert not order_legs(order) and not fake_stripe.calls("POST", "/v1/refunds")

        order = services.order_refund_unapplied_payment(order_id=body["id"])

        assert order.stripe_refund_id in fake_stripe.refunds and not order.refund_required
        assert fake_stripe.last("POST", "/v1/refunds").params["payment_intent"] == session["payment_intent"]
        reconcile()

    def test_refund_required_only_on_released_gateway_orders(self, fake_stripe, buyer_client, product):
        body = create(buyer_client, product)
        with pytest.raises(IntegrityError), transaction.atomic():
            Order.objects.filter(pk=body["id"]).update(refund_required=True)  # still PENDING


@pytest.mark.django_db
class TestCancel:
    def test_expires_the_session_then_releases(self, fake_stripe, buyer_client, product, reconcile):
        body = create(buyer_client, product)
        response = buyer_client.post(f"{ORDERS}/{body['id']}/cancel")
        assert response.status_code == 200, response.content
        assert response.json()["status"] == "CANCELLED"
        assert fake_stripe.last("POST", f"/v1/checkout/sessions/{body['stripeSessionId']}/expire")
        assert fake_stripe.sessions[body["stripeSessionId"]]["status"] == "expired"
        assert stock(product) == 10
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
        order = Order.objects.get(pk=body["id"])
        assert order.status == Order.Status.FAILED and not order.refund_required
        assert order.stripe_refund_id in fake_stripe.refunds
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
        body = create(buyer_client, product)
        order = pay(fake_stripe, body["id"])

        response = merchant_client.post(f"{ORDERS}/{order.pk}/refund", {"reason": "Out of date"})

        assert response.status_code == 200, response.content
        assert response.json()["status"] == "REFUNDED"
        call = fake_stripe.last("POST", "/v1/refunds")
        assert call.params["payment_intent"] == order.stripe_payment_intent_id and call.params["amount"] == "5000"
        assert call.idempotency_key == f"refund-{order.pk}"
        order.refresh_from_db()
        assert order.stripe_refund_id == next(iter(fake_stripe.refunds)) and order.refund_reason == "Out of date"
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
        reconcile()

    def test_transient_failure_keeps_the_hold_and_a_retry_finishes(
        self, fake_stripe, buyer_client, merchant_client, product, merchant, reconcile
    ):
        order = pay(fake_stripe, create(buyer_client, product)["id"])
        fake_stripe.stall_next(1, seconds=1.5)  # the refund IS made, the answer is lost
        with override_settings(STRIPE_TIMEOUT_SECONDS=0.5):
            error(merchant_client.post(f"{ORDERS}/{order.pk}/refund"), 502, "GATEWAY_ERROR")
        order.refresh_from_db()
        assert order.status == "COMPLETED" and order.refund_requested_at is not None
        assert balance(merchant) == D("0.00")  # held: the money cannot be spent meanwhile
        reconcile()

        response = merchant_client.post(f"{ORDERS}/{order.pk}/refund")

        assert response.status_code == 200 and response.json()["status"] == "REFUNDED"
        assert len(fake_stripe.refunds) == 1  # the same idempotency key found the first refund
        assert balance(merchant) == D("0.00") and clearing() == D("0.00") and stock(product) == 10
        reconcile()

    def test_definitive_refusal_gives_the_hold_back(
        self, fake_stripe, buyer_client, merchant_client, product, merchant, reconcile
    ):
        order = pay(fake_stripe, create(buyer_client, product)["id"])
        fake_stripe.fail_next(1, status=400, message="charge_disputed")
        error(merchant_client.post(f"{ORDERS}/{order.pk}/refund"), 502, "GATEWAY_ERROR")
        order.refresh_from_db()
        assert order.status == "COMPLETED" and order.refund_requested_at is None
        assert balance(merchant) == D("50.00") and stock(product) == 8
        reconcile()

    def test_not_configured_is_503_and_nothing_changes(self, fake_stripe, buyer_client, merchant_client, product):
        order = pay(fake_stripe, create(buyer_client, product)["id"])
        before = books()
        with override_settings(STRIPE_SECRET_KEY=""):
            error(merchant_client.post(f"{ORDERS}/{order.pk}/refund"), 503, "GATEWAY_NOT_CONFIGURED")
        assert books() == before


@pytest.mark.django_db
class TestExpirePendingOrders:
    def _age(self, order_id, minutes):
        Order.objects.filter(pk=order_id).update(created_at=timezone.now() - timedelta(minutes=minutes))

    def test_cancels_old_pending_orders_only(self, fake_stripe, buyer_client, product, reconcile):
        old, fresh = create(buyer_client, product, 1), create(buyer_client, product, 1)
        self._age(old["id"], 36)
        paid = create(buyer_client, product, 1)
        self._age(paid["id"], 40)
        fake_stripe.mark_paid(paid["stripeSessionId"])

        call_command("expire_pending_orders", stdout=io.StringIO())

        assert Order.objects.get(pk=old["id"]).status == "CANCELLED"
        assert fake_stripe.sessions[old["stripeSessionId"]]["status"] == "expired"
        assert Order.objects.get(pk=fresh["id"]).status == "PENDING"
        assert Order.objects.get(pk=paid["id"]).status == "COMPLETED"  # paid meanwhile: applied, not cancelled
        assert stock(product) == 8
        reconcile()

    def test_paid_with_the_merchant_wallet_locked_fails_and_is_refunded(
        self, fake_stripe, buyer_client, product, merchant, reconcile
    ):
        old = create(buyer_client, product, 2)
        self._age(old["id"], 40)
        fake_stripe.mark_paid(old["stripeSessionId"])
        wallet_set_locked(wallet_ids=[Wallet.objects.get(user=merchant).pk], locked=True)

        out = io.StringIO()
        call_command("expire_pending_orders", stdout=out)  # exits 0: the order was handled

        order = Order.objects.get(pk=old["id"])
        assert order.status == "FAILED" and order.stripe_refund_id in fake_stripe.refunds
        assert "FAILED: 1" in out.getvalue()
        assert balance(merchant) == D("0.00") and stock(product) == 10
        reconcile()

    def test_stripe_down_exits_non_zero_and_keeps_the_order(self, fake_stripe, buyer_client, product):
        old = create(buyer_client, product, 1)
        self._age(old["id"], 60)
        fake_stripe.down = True
        with pytest.raises(CommandError):
            call_command("expire_pending_orders")
        assert Order.objects.get(pk=old["id"]).status == "PENDING"

    def test_not_configured_keeps_sessions_pending(self, buyer_client, product):
        """Without a Stripe key an open session cannot be expired, so its order is kept."""
        from orders.tests.factories import OrderFactory

        order = OrderFactory(stripe_session_id="cs_test_x")
        self._age(order.pk, 60)
        with pytest.raises(CommandError):
            call_command("expire_pending_orders")
        assert Order.objects.get(pk=order.pk).status == "PENDING"


@pytest.mark.django_db(transaction=True)
@pytest.mark.concurrency
def test_expire_pending_orders_twice_at_once(fake_stripe, buyer, client_for, product, reconcile):
    client = client_for(buyer)
    orders = [create(client, product, 1) for _ in range(5)]
    Order.objects.update(created_at=timezone.now() - timedelta(hours=1))

    def run():
        # A session the other run expired first reads back "expired": not an error.
        call_command("expire_pending_orders", stdout=io.StringIO())

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
def test_concurrent_refund_refused_409_by_stripe_keeps_the_hold(
    fake_stripe, buyer_client, product, merchant, reconcile
):
    """Two refunds of one card order at once: the second finds the hold taken and asks
    Stripe with the same key while the first is still in flight; Stripe answers it 409
    (idempotency key in use). That is no refusal of the refund: the first one goes through,
    so the second must not give the held money back to the merchant."""
    order = pay(fake_stripe, create(buyer_client, product)["id"])

    def second_refund_while_the_first_waits_for_stripe():
        try:
            fake_stripe.fail_next(1, status=409, message="idempotency_key_in_use", path="/v1/refunds")
            with pytest.raises(GatewayError) as exc_info:
                services.order_refund(order_id=order.pk, merchant=merchant)
            return exc_info.value.transient
        finally:
            connection.close()  # this runs in the fake Stripe's thread

    fake_stripe.on_next_request("/v1/refunds", second_refund_while_the_first_waits_for_stripe)

    refunded = services.order_refund(order_id=order.pk, merchant=merchant)

    assert fake_stripe.hook_results == [True]  # the 409 is transient: the hold stays
    assert refunded.status == "REFUNDED" and len(fake_stripe.refunds) == 1
    assert balance(merchant) == D("0.00") and clearing() == D("0.00") and stock(product) == 10
    reconcile()
