"""Paid events are checked to the cent (issue 11, defect 2): a paid Checkout event moves
money only when its session id, amount and currency are exactly the ones we created, for
card orders and top-ups alike. A session of ours paid otherwise credits nothing, the event
is recorded FAILED with the reason, and what Stripe took for it is refunded. A session we
never recorded is not ours, whatever its metadata says: IGNORED, never refunded by us,
unless Stripe's replay of our own create shows it is ours (its create's answer lost)."""

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


def assert_ignored_as_not_ours(event: dict) -> StripeEvent:
    stored = StripeEvent.objects.get(event_id=event["id"])
    assert stored.status == StripeEvent.Status.IGNORED, (stored.status, stored.outcome, stored.last_error)
    assert "not ours" in stored.outcome, stored.outcome
    return stored


def test_a_paid_event_of_another_session_naming_our_order_moves_nothing_and_refunds_nothing(
    fake_stripe, buyer_client, product, merchant, reconcile
):
    """Another integration's session (or the Dashboard's) whose metadata names one of our
    orders is not ours: only a session id we recorded is. Acknowledged, IGNORED with the
    reason; nothing moves and we never refund what someone else sold."""
    order = card_order(buyer_client, product, quantity=2)
    other = another_session_naming("order", order["id"], D("50.00"))
    paid_elsewhere = fake_stripe.mark_paid(other)
    event = build_event("checkout.session.completed", paid_elsewhere)
    before = len(fake_stripe.requests)

    response = deliver(fake_stripe, event)

    assert response.status_code == 200, response.content
    assert order["stripeSessionId"] in assert_ignored_as_not_ours(event).outcome  # it has its own session
    assert Order.objects.get(pk=order["id"]).status == Order.Status.PENDING  # still waits for its own session
    assert balance(merchant) == D("0.00") and stock(product) == 8
    assert not fake_stripe.refunds and len(fake_stripe.requests) == before  # Stripe not even asked
    reconcile()


@pytest.mark.parametrize("kind", ["order", "topup"])
def test_a_signed_event_of_a_foreign_session_naming_our_payment_id_moves_nothing_and_refunds_nothing(
    fake_stripe, buyer, buyer_client, product, merchant, kind, reconcile
):
    """The finding's case: a paid session we never created, whose metadata (and
    client_reference_id) name our order or top-up and its payment id, for the very amount."""
    if kind == "order":
        owner = card_order(buyer_client, product, quantity=2)
        payment = Order.objects.get(pk=owner["id"]).payment
    else:
        owner = top_up(buyer_client, "50.00")
        payment = TopUp.objects.get(pk=owner["id"]).payment
    session = {
        "id": "cs_test_from_another_integration",
        "object": "checkout.session",
        "amount_total": 5000,
        "currency": "usd",
        "client_reference_id": owner["id"],
        "metadata": {"kind": kind, "reference_id": owner["id"], "payment_id": str(payment.pk)},
        "payment_intent": "pi_test_another_integration",
        "payment_status": "paid",
        "status": "complete",
    }
    event = build_event("checkout.session.completed", session)

    assert deliver(fake_stripe, event).status_code == 200
    assert deliver(fake_stripe, event).status_code == 200  # delivered again: the same

    assert_ignored_as_not_ours(event)
    payment.refresh_from_db()
    assert payment.status == "PENDING" and payment.refund_status is None
    assert payment.stripe_session_id == owner["stripeSessionId"] and payment.stripe_payment_intent_id is None
    assert balance(merchant) == D("0.00") and (kind == "order" or balance(buyer) == D("0.00"))
    assert not fake_stripe.calls("POST", "/v1/refunds") and not fake_stripe.refunds
    reconcile()


def lost_order(fake_stripe, buyer_client, product) -> tuple[Order, str]:
    """A card order whose session Stripe created but whose answer never reached us: 502,
    the order FAILED, the session unrecorded (it exists at Stripe under our key)."""
    fake_stripe.lose_responses("/v1/checkout/sessions", n=1, method="POST")
    response = buyer_client.post("/api/v1/orders", {"productId": str(product.pk), "paymentMethod": "GATEWAY"})
    assert response.status_code == 502, response.content
    order = Order.objects.select_related("payment").get()
    assert order.status == Order.Status.FAILED and order.payment.stripe_session_id is None
    (lost,) = fake_stripe.sessions
    return order, lost


def test_our_own_session_whose_create_answer_was_lost_is_recognised_when_paid_and_refunded(
    fake_stripe, buyer_client, product, merchant, reconcile
):
    """Ours but unrecorded: Stripe's replay of our create (same key, same parameters) answers
    this very session, so it is recorded on its payment and is a late payment of a FAILED
    order: refunded once (key refund-<payment id>), nothing credited."""
    order, lost = lost_order(fake_stripe, buyer_client, product)
    paid = fake_stripe.mark_paid(lost)
    event = build_event("checkout.session.completed", paid)

    assert deliver(fake_stripe, event).status_code == 200

    stored = StripeEvent.objects.get(event_id=event["id"])
    assert stored.status == StripeEvent.Status.PROCESSED and "was ours" in stored.outcome, stored.outcome
    replay = fake_stripe.last("POST", "/v1/checkout/sessions")
    assert replay.idempotency_key == f"checkout-{order.payment_id}"
    payment = Order.objects.get(pk=order.pk).payment
    assert payment.stripe_session_id == lost and payment.refund_status == "SUCCEEDED"
    assert refunded_intents(fake_stripe) == {paid["payment_intent"]}
    assert fake_stripe.last("POST", "/v1/refunds").idempotency_key == f"refund-{payment.pk}"
    assert Order.objects.get(pk=order.pk).status == Order.Status.FAILED
    assert balance(merchant) == D("0.00") and stock(product) == 10
    assert deliver(fake_stripe, build_event("checkout.session.completed", paid)).status_code == 200
    assert len(fake_stripe.refunds) == 1
    reconcile()


def test_a_foreign_session_naming_an_order_whose_session_was_never_recorded_is_still_not_ours(
    fake_stripe, buyer_client, product, merchant, reconcile
):
    """The order's own session was lost, so metadata, client_reference_id and amount all
    fit; but Stripe's replay of our create answers our lost session, not this one: the
    paid one is ignored and not refunded; ours is recorded and expired at Stripe."""
    order, lost = lost_order(fake_stripe, buyer_client, product)
    other = another_session_naming("order", str(order.pk), D("25.00"))
    event = build_event("checkout.session.completed", fake_stripe.mark_paid(other))

    assert deliver(fake_stripe, event).status_code == 200

    assert_ignored_as_not_ours(event)
    assert not fake_stripe.refunds
    payment = Order.objects.get(pk=order.pk).payment
    assert payment.stripe_session_id == lost and payment.checkout_url is None and payment.status == "FAILED"
    assert fake_stripe.sessions[lost]["status"] == "expired"
    assert balance(merchant) == D("0.00") and stock(product) == 10
    reconcile()


def test_a_top_up_paid_through_another_session_is_not_credited_and_not_refunded(
    fake_stripe, buyer, buyer_client, reconcile
):
    topup = top_up(buyer_client)
    other = another_session_naming("topup", topup["id"], D("30.00"))
    paid_elsewhere = fake_stripe.mark_paid(other)
    event = build_event("checkout.session.completed", paid_elsewhere)

    response = deliver(fake_stripe, event)

    assert response.status_code == 200, response.content
    assert_ignored_as_not_ours(event)
    assert TopUp.objects.get(pk=topup["id"]).status == TopUp.Status.PENDING
    assert balance(buyer) == D("0.00")
    assert not fake_stripe.refunds
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


def test_a_lost_session_that_stripe_will_not_replay_is_not_proven_ours_and_not_refunded(
    fake_stripe, buyer_client, product, merchant, reconcile
):
    """Our create cannot be replayed as it was (the product renamed since: Stripe refuses the
    key with other parameters): not proven ours, so IGNORED and not refunded by us; the
    payment records nothing (reconcile_stripe keeps reporting it for staff)."""
    order, lost = lost_order(fake_stripe, buyer_client, product)
    product.name = "Renamed since"
    product.save(update_fields=["name"])
    event = build_event("checkout.session.completed", fake_stripe.mark_paid(lost))

    assert deliver(fake_stripe, event).status_code == 200

    assert_ignored_as_not_ours(event)
    assert not fake_stripe.refunds
    assert Order.objects.get(pk=order.pk).payment.stripe_session_id is None
    assert balance(merchant) == D("0.00") and stock(product) == 10
    reconcile()
