"""`manage.py reconcile_stripe` against the fake Stripe: books that agree pass; each kind of
drift, planted on one side only, is named and fails the command."""

import io
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from orders.models import Order
from orders.tests.utils import card_order, merchant_product, pay_by_card
from payments import gateway
from payments.models import CheckoutPayment
from payments.testing.fake_stripe import build_event
from wallets.models import SystemAccount, Wallet
from wallets.services import wallet_settle
from webhooks.tests.utils import deliver

pytestmark = pytest.mark.django_db
D = Decimal


@pytest.fixture
def product(merchant):
    return merchant_product(merchant, price="20.00", units=50)


@pytest.fixture
def books(fake_stripe, buyer_client, merchant_client, product, client_for, merchant):
    """Card payments in the states that must reconcile: paid, refunded by the merchant,
    paid late and refunded, a completed top-up, an open checkout, an expired one."""
    from orders.tests.factories import funded_buyer

    paid = card_order(buyer_client, product)
    pay_by_card(fake_stripe, paid)
    refunded = card_order(buyer_client, product, 2)
    pay_by_card(fake_stripe, refunded)
    assert merchant_client.post(f"/api/v1/orders/{refunded['id']}/refund", {}).status_code == 200
    other = client_for(funded_buyer())
    late = card_order(other, product)
    assert other.post(f"/api/v1/orders/{late['id']}/cancel").status_code == 200
    fake_stripe.sessions[late["stripeSessionId"]]["status"] = "open"  # paid in the same moment at Stripe
    pay_by_card(fake_stripe, late)  # a late payment: refunded, never applied
    topup = other.post("/api/v1/wallet/top-ups", {"amount": "15.00"}).json()
    pay_by_card(fake_stripe, topup)
    return {"paid": paid, "refunded": refunded, "open": card_order(other, product), "late": late, "topup": topup}


def reconcile_stripe() -> str:
    out = io.StringIO()
    call_command("reconcile_stripe", stdout=out)
    return out.getvalue()


def drift() -> str:
    out = io.StringIO()
    with pytest.raises(CommandError) as refused:
        call_command("reconcile_stripe", stdout=out)
    assert "difference(s) with Stripe" in str(refused.value)
    return out.getvalue()


def payment_of(order: dict) -> CheckoutPayment:
    return Order.objects.select_related("payment").get(pk=order["id"]).payment


def test_books_that_agree_pass(books, fake_stripe):
    assert "agree with Stripe" in reconcile_stripe()
    assert fake_stripe.calls("GET", "/v1/checkout/sessions") and fake_stripe.calls("GET", "/v1/refunds")


def test_a_payment_stripe_took_that_we_never_applied(books, fake_stripe, buyer_client, product):
    lost = card_order(buyer_client, product)
    fake_stripe.mark_paid(lost["stripeSessionId"])  # its webhook never came

    report = drift()

    assert f"[not applied] order payment {payment_of(lost).pk}: Stripe took 20.00" in report
    assert report.count("[") == 1  # nothing else differs


def test_a_refund_we_do_not_know_of(books, fake_stripe):
    intent = payment_of(books["paid"]).stripe_payment_intent_id
    made = fake_stripe.refund_in_dashboard(intent)  # its event never came

    report = drift()

    assert (
        f"[unknown refund] order payment {payment_of(books['paid']).pk}: Stripe refunded 20.00 ({made['id']})" in report
    )


def test_a_refund_we_recorded_that_stripe_does_not_have(books):
    CheckoutPayment.objects.filter(pk=payment_of(books["refunded"]).pk).update(stripe_refund_id="re_test_invented")

    assert "[refund missing]" in drift()


def test_an_amount_that_differs(books, fake_stripe):
    session = fake_stripe.sessions[books["paid"]["stripeSessionId"]]
    session["amount_total"] = 1999

    assert "ours is 20.00 USD, Stripe's session" in drift()


def test_a_foreign_paid_session_naming_our_order_is_ignored_not_refunded(books, fake_stripe, buyer_client, product):
    """Stripe's sessions are looked up by their id among our payments, never by metadata: a
    paid session of another integration that names one of our orders (which has its own
    session), and one with no metadata at all, are not ours. Noted, not differences; their
    events refund nothing."""
    order = card_order(buyer_client, product)
    in_an_hour = timezone.now() + timedelta(hours=1)
    other = gateway.create_checkout_session(
        reference_id=order["id"], kind="order", name="Elsewhere", unit_amount=D("20.00"), quantity=1,
        currency="usd", customer_email=None, idempotency_key="elsewhere", expires_at=in_an_hour,
    )  # fmt: skip
    fake_stripe.mark_paid(other.id)
    bare = fake_stripe.mark_paid(
        gateway.create_checkout_session(
            reference_id="x",
            kind="order",
            name="A payment link",
            unit_amount=D("7.00"),
            quantity=1,
            currency="usd",
            customer_email=None,
            idempotency_key="link",
            expires_at=in_an_hour,
        ).id  # fmt: skip
    )
    fake_stripe.sessions[bare["id"]]["metadata"] = {}

    report = reconcile_stripe()

    assert "agree with Stripe" in report
    assert f"[ignored] session {other.id} (paid 20.00 usd): not ours, order {order['id']} has its own session" in report
    assert f"[ignored] session {bare['id']} (paid 7.00 usd): not ours, its metadata names nothing of ours" in report
    refunds = len(fake_stripe.refunds)
    event = build_event("checkout.session.completed", fake_stripe.sessions[other.id])
    assert deliver(fake_stripe, event).status_code == 200
    assert len(fake_stripe.refunds) == refunds and "agree with Stripe" in reconcile_stripe()


def test_a_paid_session_of_ours_whose_create_answer_was_lost(books, fake_stripe, buyer_client, product):
    """Our create made the session but its answer never came (the order FAILED, no session
    recorded): paid anyway, it is a difference until its webhook asks Stripe (the replay
    of our create) and refunds it; then the books agree."""
    fake_stripe.lose_responses("/v1/checkout/sessions", n=1, method="POST")
    response = buyer_client.post("/api/v1/orders", {"productId": str(product.pk), "paymentMethod": "GATEWAY"})
    assert response.status_code == 502
    failed = Order.objects.get(status=Order.Status.FAILED, payment__stripe_session_id=None)
    (lost,) = [s for s, session in fake_stripe.sessions.items() if session["client_reference_id"] == str(failed.pk)]
    fake_stripe.mark_paid(lost)

    report = drift()

    assert f"[unrecorded session] Stripe took 20.00 through session {lost}" in report and report.count("[") == 1
    event = build_event("checkout.session.completed", fake_stripe.sessions[lost])
    assert deliver(fake_stripe, event).status_code == 200
    assert "agree with Stripe" in reconcile_stripe()


def test_stripe_clearing_that_does_not_add_up(books, merchant):
    wallet_settle(  # money on stripe:clearing that no card payment explains
        wallet=Wallet.objects.get(user=merchant), account=SystemAccount.STRIPE_CLEARING, delta=D("5.00"),
        type="ADJUSTMENT", description="planted",
    )  # fmt: skip

    assert "[clearing] stripe:clearing is" in drift()


def test_a_refund_in_progress_and_a_flagged_payment_are_reported_until_settled(books, fake_stripe, merchant_client):
    fake_stripe.lose_responses("/v1/refunds", n=1, method="POST")
    assert merchant_client.post(f"/api/v1/orders/{books['paid']['id']}/refund", {}).status_code == 502
    report = drift()
    assert "[unknown refund]" in report  # Stripe made it; we do not know yet

    call_command("sweep_stripe_refunds", stdout=io.StringIO())  # Stripe's refund, found
    assert "agree with Stripe" in reconcile_stripe()


def test_without_stripe_configured_only_our_side_is_checked(db, buyer):
    from payments.tests.factories import CheckoutPaymentFactory

    assert "agree with Stripe" in reconcile_stripe()  # nothing taken by card: nothing to compare
    CheckoutPaymentFactory(payer=buyer, stripe_session_id="cs_test_somewhere")
    assert "[not compared] Stripe is not configured: 1 card payment(s)" in drift()
