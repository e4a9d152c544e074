"""Paid events are checked to the cent (issue 11, defect 2): a paid Checkout event moves
money only when its session id, amount and currency are exactly the ones we created, for
card orders and top-ups alike. Otherwise nothing is credited, the event is recorded
FAILED with the reason, and what Stripe took for it is refunded."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from orders.models import Order
from orders.tests.utils import balance, card_order, merchant_product, stock
from payments import gateway
from payments.testing.fake_stripe import build_event
from wallets.models import TopUp
from webhooks.models import StripeEvent
from webhooks.tests.utils import deliver

pytestmark = pytest.mark.django_db
D = Decimal


@pytest.fixture
def product(merchant):
    return merchant_product(merchant, price="25.00", units=10)


def top_up(client, amount="30.00") -> dict:
    response = client.post("/api/v1/wallet/top-ups", {"amount": amount})
    assert response.status_code == 201, response.content
    return response.json()


def another_session_naming(kind: str, reference_id: str, amount: Decimal) -> str:
    """A second Checkout Session whose metadata names one of ours: Stripe made it, we never
    recorded it (an old deploy, a leaked key, a bug)."""
    session = gateway.create_checkout_session(
        reference_id=reference_id,
        kind=kind,
        name="Not the one we recorded",
        unit_amount=amount,
        quantity=1,
        currency="usd",
        customer_email=None,
        idempotency_key=f"elsewhere-{reference_id}",
        expires_at=timezone.now() + timedelta(minutes=40),
    )
    return session.id


def assert_failed_with_reason(event: dict, *words: str) -> StripeEvent:
    stored = StripeEvent.objects.get(event_id=event["id"])
    assert stored.status == StripeEvent.Status.FAILED, (stored.status, stored.outcome)
    for word in words:
        assert word in stored.last_error, stored.last_error
    return stored


def refunded_intents(fake_stripe) -> set:
    return {refund["payment_intent"] for refund in fake_stripe.refunds.values()}


def test_an_order_paid_with_another_amount_and_currency_is_not_completed_and_is_refunded(
    fake_stripe, buyer_client, product, merchant, reconcile
):
    order = card_order(buyer_client, product, quantity=2)  # 50.00 USD
    session = fake_stripe.mark_paid(order["stripeSessionId"])
    event = build_event("checkout.session.completed", {**session, "amount_total": 1, "currency": "jpy"})

    response = deliver(fake_stripe, event)

    assert response.status_code == 200, response.content
    assert_failed_with_reason(event, "amount")
    found = Order.objects.get(pk=order["id"])
    assert found.status != Order.Status.COMPLETED and balance(merchant) == D("0.00")
    assert refunded_intents(fake_stripe) == {session["payment_intent"]}
    assert deliver(fake_stripe, event).status_code == 200  # delivered again: no second refund
    assert len(fake_stripe.refunds) == 1 and balance(merchant) == D("0.00")
    reconcile()


def test_a_paid_event_of_another_session_naming_our_order_moves_nothing_and_is_refunded(
    fake_stripe, buyer_client, product, merchant, reconcile
):
    order = card_order(buyer_client, product, quantity=2)
    other = another_session_naming("order", order["id"], D("50.00"))
    paid_elsewhere = fake_stripe.mark_paid(other)
    event = build_event("checkout.session.completed", paid_elsewhere)

    response = deliver(fake_stripe, event)

    assert response.status_code == 200, response.content
    assert_failed_with_reason(event, other)
    assert Order.objects.get(pk=order["id"]).status == Order.Status.PENDING  # still waits for its own session
    assert balance(merchant) == D("0.00") and stock(product) == 8
    assert refunded_intents(fake_stripe) == {paid_elsewhere["payment_intent"]}
    reconcile()


def test_a_top_up_paid_through_another_session_is_not_credited_and_is_refunded(
    fake_stripe, buyer, buyer_client, reconcile
):
    topup = top_up(buyer_client)
    other = another_session_naming("topup", topup["id"], D("30.00"))
    paid_elsewhere = fake_stripe.mark_paid(other)
    event = build_event("checkout.session.completed", paid_elsewhere)

    response = deliver(fake_stripe, event)

    assert response.status_code == 200, response.content
    assert_failed_with_reason(event, other)
    assert TopUp.objects.get(pk=topup["id"]).status == TopUp.Status.PENDING
    assert balance(buyer) == D("0.00")
    assert refunded_intents(fake_stripe) == {paid_elsewhere["payment_intent"]}
    reconcile()


def test_a_top_up_paid_with_another_amount_is_not_credited_and_is_refunded(fake_stripe, buyer, buyer_client, reconcile):
    topup = top_up(buyer_client)
    session = fake_stripe.mark_paid(topup["stripeSessionId"])
    event = build_event("checkout.session.completed", {**session, "amount_total": 3000000})

    assert deliver(fake_stripe, event).status_code == 200

    assert_failed_with_reason(event, "amount")
    assert TopUp.objects.get(pk=topup["id"]).status == TopUp.Status.FAILED
    assert balance(buyer) == D("0.00")
    assert refunded_intents(fake_stripe) == {session["payment_intent"]}
    reconcile()
