"""Wallet top-ups by card, end to end: the API, the real SDK against the fake Stripe, and
signed webhooks through the real endpoint. Nothing of ours is mocked."""

from decimal import Decimal

import pytest
from django.test import override_settings

from payments.gateway import CheckoutSession
from payments.models import CheckoutPayment
from payments.services import payment_paid, payment_release
from wallets.models import LedgerEntry, SystemAccount, TopUp, Wallet
from wallets.selectors import wallet_balance
from wallets.services import system_wallet, wallet_set_locked
from wallets.tests.factories import TopUpFactory, WalletFactory
from webhooks.models import StripeEvent
from webhooks.tests.utils import deliver, deliver_session_event

pytestmark = pytest.mark.django_db
D = Decimal
URL = "/api/v1/wallet/top-ups"
SESSIONS = "/v1/checkout/sessions"


def start_topup(client, amount="25.50", **headers):
    response = client.post(URL, {"amount": amount}, format="json", **headers)
    assert response.status_code == 201, response.content
    return response.json()


def deposits_for(topup_id):
    return LedgerEntry.objects.filter(journal__reference_type="topup", journal__reference_id=str(topup_id))


def clearing_balance():
    return wallet_balance(wallet=system_wallet(SystemAccount.STRIPE_CLEARING))


# --- creation ---------------------------------------------------------------------------------


def test_create_opens_a_checkout_session_with_what_stripe_needs(fake_stripe, buyer, buyer_client):
    body = start_topup(buyer_client, "25.50")

    topup = TopUp.objects.select_related("payment").get(pk=body["id"])
    payment = topup.payment
    assert body == {
        "id": str(topup.pk),
        "amount": "25.50",
        "currency": "USD",
        "status": "PENDING",
        "checkoutUrl": payment.checkout_url,
        "stripeSessionId": payment.stripe_session_id,
        "checkoutExpiresAt": body["checkoutExpiresAt"],
        "failureReason": "",
        "completedAt": None,
        "createdAt": body["createdAt"],
        "updatedAt": body["updatedAt"],
    }
    assert payment.stripe_session_id in fake_stripe.sessions
    assert payment.checkout_url == fake_stripe.sessions[payment.stripe_session_id]["url"]
    assert topup.user == buyer and topup.wallet == Wallet.objects.get(user=buyer)
    assert (payment.kind, payment.payer, payment.amount, payment.status) == ("topup", buyer, D("25.50"), "PENDING")

    sent = fake_stripe.last("POST", SESSIONS)
    assert sent.idempotency_key == f"checkout-{payment.pk}"
    assert sent.params["line_items"] == [
        {
            "price_data": {"currency": "usd", "unit_amount": "2550", "product_data": {"name": "Wallet top-up"}},
            "quantity": "1",
        }
    ]
    metadata = {"kind": "topup", "reference_id": str(topup.pk)}
    assert sent.params["metadata"] == metadata
    assert sent.params["payment_intent_data"] == {"metadata": metadata}
    assert sent.params["client_reference_id"] == str(topup.pk)
    assert sent.params["customer_email"] == buyer.email
    # expires_at was computed once and stored: what Stripe got is what the top-up says.
    assert int(sent.params["expires_at"]) == int(payment.expires_at.timestamp())
    assert not deposits_for(topup.pk).exists()


def test_an_idempotent_retry_returns_the_same_top_up_and_opens_one_session(fake_stripe, buyer_client):
    first = buyer_client.post(URL, {"amount": "10.00"}, format="json", HTTP_IDEMPOTENCY_KEY="topup-1")
    again = buyer_client.post(URL, {"amount": "10.00"}, format="json", HTTP_IDEMPOTENCY_KEY="topup-1")

    assert first.status_code == again.status_code == 201
    assert again.content == first.content and again["Idempotent-Replayed"] == "true"
    assert TopUp.objects.count() == 1
    assert len(fake_stripe.calls("POST", SESSIONS)) == 1


@pytest.mark.parametrize(
    ("amount", "code"),
    [("10000.01", "INVALID_DEPOSIT_AMOUNT"), ("0", "VALIDATION_ERROR"), ("-5", "VALIDATION_ERROR"),
     ("1.001", "VALIDATION_ERROR"), ("NaN", "VALIDATION_ERROR"), (True, "VALIDATION_ERROR")],
)  # fmt: skip
def test_invalid_amounts_are_refused_before_stripe_is_called(fake_stripe, buyer_client, amount, code):
    response = buyer_client.post(URL, {"amount": amount}, format="json")

    assert response.status_code == 400
    assert response.json()["code"] == code
    assert not TopUp.objects.exists() and not fake_stripe.requests


def test_the_maximum_deposit_itself_is_accepted(fake_stripe, buyer_client):
    assert start_topup(buyer_client, "10000.00")["amount"] == "10000.00"


def test_unknown_fields_are_refused(fake_stripe, buyer_client):
    response = buyer_client.post(URL, {"amount": "5.00", "currency": "EUR"}, format="json")
    assert response.status_code == 400 and "currency" in response.json()["details"]


def test_a_locked_wallet_cannot_be_topped_up(fake_stripe, buyer, buyer_client):
    wallet = WalletFactory(user=buyer)
    wallet_set_locked(wallet_ids=[wallet.pk], locked=True)

    response = buyer_client.post(URL, {"amount": "5.00"}, format="json")

    assert response.status_code == 403 and response.json()["code"] == "WALLET_LOCKED"
    assert not TopUp.objects.exists() and not fake_stripe.requests


def test_without_stripe_configured_it_is_503_and_nothing_is_created(buyer_client):
    response = buyer_client.post(URL, {"amount": "5.00"}, format="json")

    assert response.status_code == 503 and response.json()["code"] == "GATEWAY_NOT_CONFIGURED"
    assert not TopUp.objects.exists()


def test_needs_authentication(api_client):
    assert api_client.post(URL, {"amount": "5.00"}, format="json").status_code == 401
    assert api_client.get(URL).status_code == 401


def test_stripe_down_is_502_and_the_top_up_is_failed(fake_stripe, buyer_client, reconcile):
    fake_stripe.down = True

    response = buyer_client.post(URL, {"amount": "5.00"}, format="json")

    assert response.status_code == 502 and response.json()["code"] == "GATEWAY_ERROR"
    topup = TopUp.objects.select_related("payment").get()
    assert topup.status == TopUp.Status.FAILED and topup.payment.stripe_session_id is None
    assert topup.failure_reason
    assert not deposits_for(topup.pk).exists()
    reconcile()


def test_stripe_down_under_an_idempotency_key_is_not_stored_so_the_key_can_be_retried(fake_stripe, buyer_client):
    """A 502 is not stored under the key: the client's retry with the same key gets a fresh
    attempt once Stripe is back, and from then on the 201 is replayed."""
    fake_stripe.fail_next(1, status=500)

    failed = buyer_client.post(URL, {"amount": "5.00"}, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    retried = buyer_client.post(URL, {"amount": "5.00"}, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    replayed = buyer_client.post(URL, {"amount": "5.00"}, format="json", HTTP_IDEMPOTENCY_KEY="k1")

    assert failed.status_code == 502 and failed.json()["code"] == "GATEWAY_ERROR"
    assert retried.status_code == 201 and retried.json()["status"] == "PENDING"
    assert replayed.status_code == 201 and replayed.content == retried.content
    assert TopUp.objects.filter(status=TopUp.Status.PENDING).count() == 1
    assert not TopUp.objects.exclude(status__in=[TopUp.Status.PENDING, TopUp.Status.FAILED]).exists()
    payment_id = TopUp.objects.get(pk=retried.json()["id"]).payment_id
    assert len([c for c in fake_stripe.calls("POST", SESSIONS) if c.idempotency_key == f"checkout-{payment_id}"]) == 1


# --- webhooks ---------------------------------------------------------------------------------


def test_paid_checkout_credits_the_wallet_once(fake_stripe, buyer, buyer_client, reconcile):
    body = start_topup(buyer_client, "25.50")
    session = fake_stripe.mark_paid(body["stripeSessionId"])

    event, response = deliver_session_event(fake_stripe, "checkout.session.completed", session["id"])

    assert response.status_code == 200 and response.json() == {"received": True}
    topup = TopUp.objects.select_related("payment").get(pk=body["id"])
    assert topup.status == TopUp.Status.COMPLETED and topup.completed_at is not None
    assert topup.payment.stripe_payment_intent_id == session["payment_intent"]
    wallet = Wallet.objects.get(user=buyer)
    assert wallet.balance == D("25.50")
    (leg,) = deposits_for(topup.pk).filter(wallet=wallet)
    assert leg.type == LedgerEntry.Type.DEPOSIT and leg.amount == D("25.50")
    assert clearing_balance() == D("-25.50")
    assert StripeEvent.objects.get(event_id=event["id"]).status == StripeEvent.Status.PROCESSED
    reconcile()

    # The same event again (Stripe retries), and the API shows the result.
    assert deliver(fake_stripe, event).status_code == 200
    assert Wallet.objects.get(user=buyer).balance == D("25.50")
    assert deposits_for(topup.pk).count() == 2  # the two legs of the one deposit
    listed = buyer_client.get(URL).json()["data"][0]
    assert listed["status"] == "COMPLETED" and listed["completedAt"]
    transactions = buyer_client.get("/api/v1/wallet/transactions").json()["data"]
    assert [(t["type"], t["referenceType"], t["referenceId"]) for t in transactions] == [
        ("DEPOSIT", "topup", str(topup.pk))
    ]
    reconcile()


def test_completed_but_unpaid_waits_then_async_success_credits(fake_stripe, buyer, buyer_client, reconcile):
    body = start_topup(buyer_client, "40.00")
    fake_stripe.mark_completed_unpaid(body["stripeSessionId"])

    event, response = deliver_session_event(fake_stripe, "checkout.session.completed", body["stripeSessionId"])

    assert response.status_code == 200
    assert TopUp.objects.get(pk=body["id"]).status == TopUp.Status.PENDING
    assert not deposits_for(body["id"]).exists()
    assert "waiting" in StripeEvent.objects.get(event_id=event["id"]).outcome

    fake_stripe.mark_async_succeeded(body["stripeSessionId"])
    session_id = body["stripeSessionId"]
    _, response = deliver_session_event(fake_stripe, "checkout.session.async_payment_succeeded", session_id)

    assert response.status_code == 200
    assert TopUp.objects.get(pk=body["id"]).status == TopUp.Status.COMPLETED
    assert Wallet.objects.get(user=buyer).balance == D("40.00")
    reconcile()


def test_async_payment_failure_fails_the_top_up(fake_stripe, buyer, buyer_client, reconcile):
    body = start_topup(buyer_client, "40.00")
    fake_stripe.mark_completed_unpaid(body["stripeSessionId"])
    deliver_session_event(fake_stripe, "checkout.session.completed", body["stripeSessionId"])
    fake_stripe.mark_async_failed(body["stripeSessionId"])

    _, response = deliver_session_event(fake_stripe, "checkout.session.async_payment_failed", body["stripeSessionId"])

    assert response.status_code == 200
    topup = TopUp.objects.get(pk=body["id"])
    assert topup.status == TopUp.Status.FAILED and topup.failure_reason == "The card payment failed."
    assert Wallet.objects.get(user=buyer).balance == D("0.00")
    assert not deposits_for(topup.pk).exists()
    reconcile()


def test_expired_session_expires_the_top_up(fake_stripe, buyer, buyer_client, reconcile):
    body = start_topup(buyer_client, "40.00")
    fake_stripe.mark_expired(body["stripeSessionId"])

    _, response = deliver_session_event(fake_stripe, "checkout.session.expired", body["stripeSessionId"])

    assert response.status_code == 200
    assert TopUp.objects.get(pk=body["id"]).status == TopUp.Status.EXPIRED
    assert not deposits_for(body["id"]).exists()
    reconcile()


def test_events_after_completion_change_nothing(fake_stripe, buyer, buyer_client, reconcile):
    body = start_topup(buyer_client, "12.00")
    fake_stripe.mark_paid(body["stripeSessionId"])
    deliver_session_event(fake_stripe, "checkout.session.completed", body["stripeSessionId"])

    # Another event id for the same paid session, then stray failure / expiry events.
    for type_ in ("checkout.session.async_payment_succeeded", "checkout.session.async_payment_failed",
                  "checkout.session.expired"):  # fmt: skip
        _, response = deliver_session_event(fake_stripe, type_, body["stripeSessionId"])
        assert response.status_code == 200

    assert TopUp.objects.get(pk=body["id"]).status == TopUp.Status.COMPLETED
    assert Wallet.objects.get(user=buyer).balance == D("12.00")
    assert deposits_for(body["id"]).count() == 2
    reconcile()


def test_wallet_locked_before_payment_refunds_the_card_instead(fake_stripe, buyer, buyer_client, reconcile):
    body = start_topup(buyer_client, "30.00")
    wallet_set_locked(wallet_ids=[Wallet.objects.get(user=buyer).pk], locked=True)
    session = fake_stripe.mark_paid(body["stripeSessionId"])

    event, response = deliver_session_event(fake_stripe, "checkout.session.completed", session["id"])

    assert response.status_code == 200
    topup = TopUp.objects.select_related("payment").get(pk=body["id"])
    assert topup.status == TopUp.Status.FAILED and "WALLET_LOCKED" in topup.failure_reason
    assert topup.payment.refund_status == "SUCCEEDED" and topup.payment.stripe_refund_id in fake_stripe.refunds
    refund_call = fake_stripe.last("POST", "/v1/refunds")
    assert refund_call.params["payment_intent"] == session["payment_intent"]
    assert refund_call.idempotency_key == f"refund-{topup.payment_id}"
    assert Wallet.objects.get(user=buyer).balance == D("0.00")
    assert not deposits_for(topup.pk).exists()

    # Delivered again: no second refund.
    assert deliver(fake_stripe, event).status_code == 200
    assert len(fake_stripe.calls("POST", "/v1/refunds")) == 1
    reconcile()


def test_a_lowered_deposit_limit_after_creation_refunds_too(fake_stripe, buyer, buyer_client):
    body = start_topup(buyer_client, "300.00")
    fake_stripe.mark_paid(body["stripeSessionId"])

    with override_settings(MAXIMUM_DEPOSIT=D("100.00")):
        _, response = deliver_session_event(fake_stripe, "checkout.session.completed", body["stripeSessionId"])

    assert response.status_code == 200
    topup = TopUp.objects.select_related("payment").get(pk=body["id"])
    assert topup.status == TopUp.Status.FAILED and "INVALID_DEPOSIT_AMOUNT" in topup.failure_reason
    assert topup.payment.stripe_refund_id in fake_stripe.refunds


@override_settings(WALLET_DIRECT_DEPOSITS=False)
def test_with_direct_deposits_off_money_still_enters_by_card(fake_stripe, buyer, buyer_client, reconcile):
    refused = buyer_client.post("/api/v1/wallet/deposit", {"amount": "10.00"}, format="json")
    assert refused.status_code == 403 and refused.json()["code"] == "DIRECT_DEPOSITS_DISABLED"

    body = start_topup(buyer_client, "10.00")
    fake_stripe.mark_paid(body["stripeSessionId"])
    deliver_session_event(fake_stripe, "checkout.session.completed", body["stripeSessionId"])

    assert Wallet.objects.get(user=buyer).balance == D("10.00")
    reconcile()


# --- services directly ---------------------------------------------------------------------------


def test_the_hooks_are_idempotent(buyer, reconcile):
    topup = TopUpFactory(wallet=WalletFactory(user=buyer), amount=D("8.00"))
    session = CheckoutSession(
        id=topup.payment.stripe_session_id,
        url=None,
        payment_intent_id="pi_1",
        status="complete",
        payment_status="paid",
        amount_total=D("8.00"),
        currency="usd",
    )
    for _ in range(3):
        payment_paid(payment_id=topup.payment_id, session=session)
    payment_release(payment_id=topup.payment_id, status=CheckoutPayment.Status.FAILED, reason="x")
    payment_release(payment_id=topup.payment_id, status=CheckoutPayment.Status.EXPIRED, reason="x")

    topup = TopUp.objects.select_related("payment").get(pk=topup.pk)
    assert topup.status == TopUp.Status.COMPLETED and topup.payment.stripe_payment_intent_id == "pi_1"
    assert Wallet.objects.get(user=buyer).balance == D("8.00")
    reconcile()


def test_reconcile_notices_a_completed_top_up_without_its_deposit(buyer, reconcile):
    from django.core.management.base import CommandError

    TopUpFactory(wallet=WalletFactory(user=buyer), status=TopUp.Status.COMPLETED, completed_at="2026-01-01T00:00Z")
    with pytest.raises(CommandError):
        reconcile()


# --- the list ----------------------------------------------------------------------------------


def test_list_is_the_callers_own_newest_first(buyer, merchant, buyer_client):
    mine = [TopUpFactory(wallet=WalletFactory(user=buyer), amount=D(n)) for n in ("1.00", "2.00", "3.00")]
    TopUpFactory(wallet=WalletFactory(user=merchant))

    body = buyer_client.get(URL, {"limit": 2}).json()

    assert body["meta"] == {"total": 3, "page": 1, "limit": 2, "totalPages": 2}
    assert [t["id"] for t in body["data"]] == [str(mine[2].pk), str(mine[1].pk)]


def test_list_costs_the_same_queries_whatever_the_page_size(buyer, buyer_client, django_assert_num_queries):
    wallet = WalletFactory(user=buyer)
    TopUpFactory.create_batch(3, wallet=wallet)
    with django_assert_num_queries(3) as few:  # the user (JWT), the count, the page
        buyer_client.get(URL)
    TopUpFactory.create_batch(30, wallet=wallet)
    with django_assert_num_queries(len(few.captured_queries)):
        assert len(buyer_client.get(URL, {"limit": 33}).json()["data"]) == 33


def test_a_refund_made_in_the_dashboard_takes_the_deposit_back(fake_stripe, buyer, buyer_client, reconcile):
    body = start_topup(buyer_client, "30.00")
    session = fake_stripe.mark_paid(body["stripeSessionId"])
    deliver_session_event(fake_stripe, "checkout.session.completed", session["id"])
    fake_stripe.refund_in_dashboard(session["payment_intent"])

    assert (
        deliver(fake_stripe, fake_stripe.charge_event("charge.refunded", session["payment_intent"])).status_code == 200
    )

    topup = TopUp.objects.select_related("payment").get(pk=body["id"])
    assert topup.status == TopUp.Status.REFUNDED and topup.payment.refund_status == "SUCCEEDED"
    assert Wallet.objects.get(user=buyer).balance == D("0.00") and clearing_balance() == D("0.00")
    assert sorted(deposits_for(topup.pk).filter(wallet__user=buyer).values_list("type", flat=True)) == [
        "DEPOSIT",
        "REFUND",
    ]
    reconcile()


def test_a_dashboard_refund_of_money_already_spent_is_flagged_for_staff(fake_stripe, buyer, buyer_client, reconcile):
    from wallets.services import wallet_withdraw

    body = start_topup(buyer_client, "30.00")
    session = fake_stripe.mark_paid(body["stripeSessionId"])
    deliver_session_event(fake_stripe, "checkout.session.completed", session["id"])
    wallet_withdraw(wallet=Wallet.objects.get(user=buyer), amount=D("25.00"))
    fake_stripe.refund_in_dashboard(session["payment_intent"])

    deliver(fake_stripe, fake_stripe.charge_event("charge.refunded", session["payment_intent"]))

    topup = TopUp.objects.select_related("payment").get(pk=body["id"])
    assert topup.status == TopUp.Status.COMPLETED and topup.payment.needs_attention
    assert buyer.email in topup.payment.attention_reason and Wallet.objects.get(user=buyer).balance == D("5.00")
    reconcile()
