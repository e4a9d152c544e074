"""Card refunds can never pay twice (issue 11, defect 1): money goes back to the merchant
only when Stripe says no refund exists for the payment; a refund whose outcome is unknown
stays in progress, visibly, until a retry or the sweep asks Stripe; a refund made at
Stripe without us refunds the order (or is flagged for staff). Against the fake Stripe,
through the API, the webhook and the management commands."""

import io
import time
from decimal import Decimal

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.core.management import CommandError, call_command
from django.test import override_settings

from orders.models import Order
from orders.tests.utils import ORDERS, balance, card_order, error, merchant_product, pay_by_card, stock
from wallets.models import Wallet
from wallets.selectors import system_wallet_balances
from wallets.services import wallet_deposit, wallet_withdraw
from webhooks.models import StripeEvent
from webhooks.tests.utils import deliver

pytestmark = pytest.mark.django_db
D = Decimal


@pytest.fixture
def product(merchant):
    return merchant_product(merchant, price="20.00", units=10)


@pytest.fixture
def paid(fake_stripe, buyer_client, product):
    """A paid 40.00 card order (2 x 20.00): the merchant holds 40.00."""
    order = card_order(buyer_client, product, quantity=2)
    session = pay_by_card(fake_stripe, order)
    return {**order, "paymentIntent": session["payment_intent"]}


def clearing() -> Decimal:
    return system_wallet_balances()["stripe:clearing"]


def refund(client, order):
    return client.post(f"{ORDERS}/{order['id']}/refund", {})


def test_a_lost_refund_answer_then_a_retry_after_stripe_forgot_the_key_refunds_once(
    fake_stripe, paid, merchant, merchant_client, product, reconcile
):
    """The review's reproduction: the refund is made at Stripe but every answer is lost
    (502 after the SDK's retries); Stripe then forgets its idempotency keys (24 h later), and
    the retry meets `charge_already_refunded`. That is no refusal: Stripe did refund, so the
    order is REFUNDED and the merchant's 40.00 never come back."""
    assert balance(merchant) == D("40.00")
    fake_stripe.lose_responses("/v1/refunds", method="POST")
    with override_settings(STRIPE_MAX_NETWORK_RETRIES=2):
        error(refund(merchant_client, paid), 502, "GATEWAY_ERROR")

    assert len(fake_stripe.refunds) == 1  # Stripe refunded the buyer; we never heard
    assert balance(merchant) == D("0.00")  # held while the outcome is unknown
    shown = merchant_client.get(f"{ORDERS}/{paid['id']}").json()
    assert shown["status"] == "COMPLETED" and shown["refundStatus"] == "PENDING"

    fake_stripe.keep_responses()
    fake_stripe.forget_idempotency_keys()
    response = refund(merchant_client, paid)

    assert response.status_code == 200, response.content
    assert response.json()["status"] == "REFUNDED" and response.json()["refundStatus"] == "SUCCEEDED"
    assert len(fake_stripe.refunds) == 1
    assert balance(merchant) == D("0.00") and clearing() == D("0.00") and stock(product) == 10
    reconcile()


def test_a_definitive_refusal_with_no_refund_at_stripe_gives_the_money_back(
    fake_stripe, paid, merchant, merchant_client, product, reconcile
):
    fake_stripe.fail_next(1, status=400, message="This charge is disputed.", path="/v1/refunds")

    error(refund(merchant_client, paid), 502, "GATEWAY_ERROR")

    assert not fake_stripe.refunds  # Stripe was asked, and said there is none
    assert fake_stripe.calls("GET", "/v1/refunds")
    shown = merchant_client.get(f"{ORDERS}/{paid['id']}").json()
    assert shown["status"] == "COMPLETED" and shown["refundStatus"] is None
    assert balance(merchant) == D("40.00") and stock(product) == 8
    reconcile()


def test_a_refund_made_in_the_dashboard_refunds_the_order_through_its_event(
    fake_stripe, paid, merchant, merchant_client, product, reconcile
):
    made = fake_stripe.refund_in_dashboard(paid["paymentIntent"])

    response = deliver(fake_stripe, fake_stripe.charge_event("charge.refunded", paid["paymentIntent"]))

    assert response.status_code == 200, response.content
    shown = merchant_client.get(f"{ORDERS}/{paid['id']}").json()
    assert shown["status"] == "REFUNDED" and shown["refundStatus"] == "SUCCEEDED"
    assert Order.objects.get(pk=paid["id"]).payment.stripe_refund_id == made["id"]
    assert balance(merchant) == D("0.00") and clearing() == D("0.00") and stock(product) == 10
    # The refund's own events, and the charge event again: nothing more.
    for event in (
        fake_stripe.refund_event("refund.created", made["id"]),
        fake_stripe.charge_event("charge.refunded", paid["paymentIntent"]),
    ):
        assert deliver(fake_stripe, event).status_code == 200
    assert balance(merchant) == D("0.00") and stock(product) == 10
    reconcile()


def test_a_dashboard_refund_the_merchant_cannot_cover_is_flagged_for_staff(
    fake_stripe, paid, merchant, merchant_client, product, reconcile
):
    wallet_withdraw(wallet=Wallet.objects.get(user=merchant), amount=D("30.00"))
    fake_stripe.refund_in_dashboard(paid["paymentIntent"])

    event = fake_stripe.refund_event("refund.created", next(iter(fake_stripe.refunds)))
    assert deliver(fake_stripe, event).status_code == 200

    order = Order.objects.select_related("payment").get(pk=paid["id"])
    assert order.status == "COMPLETED" and order.payment.needs_attention
    assert "merchant" in order.payment.attention_reason and "insufficient" in order.payment.attention_reason.lower()
    assert balance(merchant) == D("10.00") and stock(product) == 8  # nothing half-done
    assert StripeEvent.objects.get(event_id=event["id"]).status == StripeEvent.Status.PROCESSED
    reconcile()


def test_the_sweep_finishes_a_refund_left_in_progress(fake_stripe, paid, merchant, merchant_client, product, reconcile):
    fake_stripe.lose_responses("/v1/refunds", n=1, method="POST")
    error(refund(merchant_client, paid), 502, "GATEWAY_ERROR")
    fake_stripe.forget_idempotency_keys()

    out = io.StringIO()
    with override_settings(REFUND_RETRY_AFTER_SECONDS=0):
        call_command("sweep_stripe_refunds", stdout=out)

    assert Order.objects.get(pk=paid["id"]).status == "REFUNDED"
    assert len(fake_stripe.refunds) == 1 and balance(merchant) == D("0.00") and stock(product) == 10
    reconcile()


def test_the_sweep_finds_a_dashboard_refund_whose_event_was_lost(fake_stripe, paid, merchant, product, reconcile):
    fake_stripe.refund_in_dashboard(paid["paymentIntent"])

    call_command("sweep_stripe_refunds", stdout=io.StringIO())

    assert Order.objects.get(pk=paid["id"]).status == "REFUNDED"
    assert balance(merchant) == D("0.00") and stock(product) == 10
    reconcile()


def test_the_sweep_exits_non_zero_naming_what_it_could_not_settle(fake_stripe, paid, merchant_client):
    fake_stripe.lose_responses("/v1/refunds", n=1, method="POST")
    error(refund(merchant_client, paid), 502, "GATEWAY_ERROR")
    fake_stripe.down = True
    with override_settings(REFUND_RETRY_AFTER_SECONDS=0), pytest.raises(CommandError):
        call_command("sweep_stripe_refunds", stdout=io.StringIO())
    assert Order.objects.get(pk=paid["id"]).status == "COMPLETED"


def test_staff_settle_a_flagged_refund_once_the_merchant_can_cover_it(
    fake_stripe, paid, merchant, product, staff, client, reconcile
):
    """The back office shows the flagged card payment (and the order's refund state) and
    settles it through `payments.services.payment_settle_flagged`."""
    wallet_withdraw(wallet=Wallet.objects.get(user=merchant), amount=D("30.00"))
    fake_stripe.refund_in_dashboard(paid["paymentIntent"])
    deliver(fake_stripe, fake_stripe.charge_event("charge.refunded", paid["paymentIntent"]))
    payment = Order.objects.get(pk=paid["id"]).payment
    client.force_login(staff)

    flagged = client.get("/admin/payments/checkoutpayment/", {"needs_attention__exact": "1"})
    assert [p.pk for p in flagged.context["cl"].result_list] == [payment.pk]
    order_page = client.get(f"/admin/orders/order/{paid['id']}/change/").content.decode()
    assert "needs staff" in order_page and merchant.email in order_page

    still_short = client.post(
        "/admin/payments/checkoutpayment/", {"action": "settle", "_selected_action": [payment.pk]}, follow=True
    )
    assert any("insufficient" in str(m).lower() for m in still_short.context["messages"])
    assert Order.objects.get(pk=paid["id"]).status == "COMPLETED"

    wallet_deposit(wallet=Wallet.objects.get(user=merchant), amount=D("30.00"))
    settled = client.post(
        "/admin/payments/checkoutpayment/", {"action": "settle", "_selected_action": [payment.pk]}, follow=True
    )

    assert any("1 payment(s) settled" in str(m) for m in settled.context["messages"])
    payment.refresh_from_db()
    assert payment.refund_status == "SUCCEEDED" and not payment.needs_attention and not payment.attention_reason
    assert Order.objects.get(pk=paid["id"]).status == "REFUNDED"
    assert balance(merchant) == D("0.00") and stock(product) == 10 and clearing() == D("0.00")
    reconcile()


def test_a_card_order_with_no_recorded_payment_intent_is_409_before_anything_is_held(
    fake_stripe, paid, merchant, merchant_client, product, reconcile
):
    """Explicitly checked and refused (it used to pass "" to the gateway and read its
    ValueError as "no payment"): nothing held, Stripe not asked."""
    from payments.models import CheckoutPayment

    CheckoutPayment.objects.filter(pk=Order.objects.get(pk=paid["id"]).payment_id).update(stripe_payment_intent_id=None)

    refused = error(refund(merchant_client, paid), 409, "ORDER_NOT_REFUNDABLE")

    assert "no recorded payment intent" in refused["message"]
    assert balance(merchant) == D("40.00") and not fake_stripe.calls("POST", "/v1/refunds")
    reconcile()


def test_a_refund_that_fails_at_stripe_after_we_recorded_it_is_flagged_for_staff(
    fake_stripe, paid, merchant_client, reconcile
):
    """Stripe may report a refund failed after it succeeded (`refund.failed`, e.g. the card
    was closed): the buyer may not have the money, so it is never dropped silently."""
    assert refund(merchant_client, paid).status_code == 200
    payment = Order.objects.get(pk=paid["id"]).payment
    fake_stripe.refunds[payment.stripe_refund_id]["status"] = "failed"

    assert deliver(fake_stripe, fake_stripe.refund_event("refund.failed", payment.stripe_refund_id)).status_code == 200

    payment.refresh_from_db()
    assert payment.needs_attention and "failed" in payment.attention_reason
    assert payment.refund_status == "SUCCEEDED"  # the books stand until staff decide
    reconcile()


# --- One Stripe deadline per request (STRIPE_REQUEST_DEADLINE_SECONDS) -----------------------------


@override_settings(STRIPE_TIMEOUT_SECONDS=3, STRIPE_MAX_NETWORK_RETRIES=2, STRIPE_REQUEST_DEADLINE_SECONDS=1)
def test_a_refund_request_talks_to_a_slow_stripe_no_longer_than_its_deadline_then_the_sweep_settles_it(
    fake_stripe, paid, merchant, merchant_client, product, reconcile
):
    """Stripe makes the refund but answers after 4 s. The request's only try waits for the
    time left (1 s, not the SDK's 3 s), makes no retry (no time is left for one), and the
    refund stays visibly in progress with the money held; the sweep then settles it, once."""
    fake_stripe.stall_next(1, seconds=4)

    started = time.monotonic()
    error(refund(merchant_client, paid), 502, "GATEWAY_ERROR")
    took = time.monotonic() - started

    assert 1 <= took < 3  # the deadline (and the request's database work), never the SDK's timeout
    assert len(fake_stripe.calls("POST", "/v1/refunds")) == 1
    shown = merchant_client.get(f"{ORDERS}/{paid['id']}").json()
    assert shown["status"] == "COMPLETED" and shown["refundStatus"] == "PENDING"
    assert balance(merchant) == D("0.00")

    with override_settings(REFUND_RETRY_AFTER_SECONDS=0):
        call_command("sweep_stripe_refunds", stdout=io.StringIO())

    shown = merchant_client.get(f"{ORDERS}/{paid['id']}").json()
    assert shown["status"] == "REFUNDED" and shown["refundStatus"] == "SUCCEEDED"
    assert len(fake_stripe.refunds) == 1 and len(fake_stripe.calls("POST", "/v1/refunds")) == 2
    assert balance(merchant) == D("0.00") and clearing() == D("0.00") and stock(product) == 10
    reconcile()


@override_settings(STRIPE_TIMEOUT_SECONDS=3, STRIPE_MAX_NETWORK_RETRIES=0, STRIPE_REQUEST_DEADLINE_SECONDS=1.5)
def test_every_stripe_call_of_a_request_shares_its_one_deadline(fake_stripe, paid, merchant, merchant_client):
    """Stripe takes 1 s to refuse the refund, then is slow to list the refunds: the list gets
    what is left of the request's 1.5 s, not a timeout of its own. Nothing is concluded from
    the refusal alone: the refund stays in progress, the money held."""
    fake_stripe.on_next_request("/v1/refunds", lambda: time.sleep(1))
    fake_stripe.fail_next(1, status=400, message="This charge is disputed.", path="/v1/refunds")
    fake_stripe.stall_next(1, seconds=0)  # the refusal is answered as soon as it is made,
    fake_stripe.stall_next(1, seconds=5)  # the list after 5 s

    started = time.monotonic()
    error(refund(merchant_client, paid), 502, "GATEWAY_ERROR")
    took = time.monotonic() - started

    assert 1.5 <= took < 3
    assert [r.method for r in fake_stripe.calls(path="/v1/refunds")] == ["POST", "GET"]
    shown = merchant_client.get(f"{ORDERS}/{paid['id']}").json()
    assert shown["status"] == "COMPLETED" and shown["refundStatus"] == "PENDING"
    assert balance(merchant) == D("0.00")


def test_staff_refund_and_settle_from_the_back_office_are_attributed(
    fake_stripe, paid, buyer_client, merchant, product, staff, client, reconcile
):
    """A card order refunded from the orders admin names the staff member on the order and
    in the admin history; so does the payments admin's "settle" on the card payment."""
    client.force_login(staff)
    selected = {"action": "refund_orders", "_selected_action": [paid["id"]], "confirm": "yes", "reason": "Lost parcel"}
    client.post("/admin/orders/order/", selected, follow=True)

    order = Order.objects.get(pk=paid["id"])
    assert order.status == "REFUNDED" and order.refunded_by == staff
    (entry,) = LogEntry.objects.filter(object_id=str(order.pk))
    assert (entry.user, entry.action_flag) == (staff, CHANGE) and "Lost parcel" in entry.get_change_message()

    # A second paid order, refunded in Stripe's dashboard while the merchant is short: flagged.
    other = card_order(buyer_client, product, quantity=1)
    session = pay_by_card(fake_stripe, other)
    wallet_withdraw(wallet=Wallet.objects.get(user=merchant), amount=balance(merchant))
    fake_stripe.refund_in_dashboard(session["payment_intent"])
    deliver(fake_stripe, fake_stripe.charge_event("charge.refunded", session["payment_intent"]))
    payment = Order.objects.get(pk=other["id"]).payment
    assert payment.needs_attention
    wallet_deposit(wallet=Wallet.objects.get(user=merchant), amount=D("20.00"))

    client.post("/admin/payments/checkoutpayment/", {"action": "settle", "_selected_action": [payment.pk]}, follow=True)

    payment.refresh_from_db()
    assert not payment.needs_attention and payment.settled_by == staff
    (entry,) = LogEntry.objects.filter(object_id=str(payment.pk))
    assert (entry.user, entry.action_flag) == (staff, CHANGE) and "Settled" in entry.get_change_message()
    reconcile()
