"""`POST /api/v1/webhooks/stripe`: signatures with the real scheme, storage, dispatch,
failures and retries. Stripe is the fake server; nothing of ours is mocked."""

import json
import time
from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from paymentflow.testing.assertions import ENVELOPE_KEYS
from payments.gateway import WEBHOOK_TOLERANCE_SECONDS
from payments.testing.fake_stripe import build_event, sign_payload
from wallets.models import TopUp, Wallet
from wallets.services import wallet_set_locked
from wallets.tests.factories import TopUpFactory, WalletFactory
from webhooks.models import StripeEvent
from webhooks.tests.utils import WEBHOOK_URL, deliver, paid_session_event, post_raw

pytestmark = pytest.mark.django_db

STALE_SECONDS = WEBHOOK_TOLERANCE_SECONDS + 60


def assert_refused(response, status, code):
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == ENVELOPE_KEYS
    assert body["statusCode"] == status and body["code"] == code
    assert body["path"] == WEBHOOK_URL and body["method"] == "POST"


def unknown_event():
    return build_event("customer.created", {"id": "cus_test_1", "object": "customer"})


def test_a_good_signature_is_handled_and_stored(fake_stripe):
    event = unknown_event()

    response = deliver(fake_stripe, event)

    assert response.status_code == 200
    assert response.content == b'{"received":true}'
    stored = StripeEvent.objects.get(event_id=event["id"])
    assert stored.type == "customer.created" and stored.payload == event and stored.livemode is False
    assert stored.status == StripeEvent.Status.IGNORED and stored.processed_at is not None
    assert stored.attempts == 1 and stored.object_id == "cus_test_1"


@pytest.mark.parametrize(
    "signature",
    [
        pytest.param(lambda body, fake: sign_payload(body, "whsec_some_other_secret"), id="wrong-secret"),
        pytest.param(
            lambda body, fake: sign_payload(body, fake.webhook_secret, int(time.time()) - STALE_SECONDS),
            id="stale-timestamp",
        ),
        pytest.param(lambda body, fake: sign_payload(body.replace(b"cus_test_1", b"cus_test_2"), fake.webhook_secret),
                     id="signed-another-body"),
        pytest.param(lambda body, fake: "t=123,v1=", id="garbage"),
        pytest.param(lambda body, fake: "", id="empty"),
        pytest.param(lambda body, fake: None, id="missing"),
    ],
)  # fmt: skip
def test_bad_signatures_are_400_and_nothing_is_stored(fake_stripe, signature):
    body, _ = fake_stripe.signed(unknown_event())

    response = post_raw(body, signature(body, fake_stripe))

    assert_refused(response, 400, "INVALID_SIGNATURE")
    assert not StripeEvent.objects.exists()


def test_a_tampered_body_is_400(fake_stripe):
    body, signature = fake_stripe.signed(unknown_event())

    response = post_raw(body.replace(b"customer.created", b"checkout.session.completed"), signature)

    assert_refused(response, 400, "INVALID_SIGNATURE")
    assert not StripeEvent.objects.exists()


def test_the_body_is_verified_byte_for_byte_not_reparsed(fake_stripe):
    """Same JSON, other spacing: the signature no longer matches (a parsed-and-reserialized
    body would have passed)."""
    event = unknown_event()
    body, signature = fake_stripe.signed(event)
    compact = json.dumps(event, separators=(",", ":")).encode()
    assert compact != body and json.loads(compact) == json.loads(body)

    assert_refused(post_raw(compact, signature), 400, "INVALID_SIGNATURE")
    assert post_raw(body, signature).status_code == 200


def test_a_signed_body_that_is_not_an_event_is_400(fake_stripe):
    body = b'["not", "an", "event"]'
    assert_refused(post_raw(body, sign_payload(body, fake_stripe.webhook_secret)), 400, "INVALID_PAYLOAD")


def test_without_a_webhook_secret_it_is_503(fake_stripe, settings):
    settings.STRIPE_WEBHOOK_SECRET = ""
    body, signature = fake_stripe.signed(unknown_event())

    assert_refused(post_raw(body, signature), 503, "GATEWAY_NOT_CONFIGURED")


def test_only_post_is_allowed():
    response = APIClient().get(WEBHOOK_URL)
    assert response.status_code == 405 and response.json()["code"] == "METHOD_NOT_ALLOWED"


def test_no_jwt_no_csrf_no_camel_case_needed(fake_stripe, buyer):
    """A session-authenticated browser-like client with CSRF checks on still gets in: the
    endpoint does no session auth, and the snake_case body is never rewritten."""
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(buyer)
    event = unknown_event()
    body, signature = fake_stripe.signed(event)

    response = client.post(WEBHOOK_URL, data=body, content_type="application/json", HTTP_STRIPE_SIGNATURE=signature)

    assert response.status_code == 200
    assert StripeEvent.objects.get().payload["pending_webhooks"] == 1


def test_a_session_that_is_not_ours_is_acknowledged_and_ignored(fake_stripe):
    event = build_event(
        "checkout.session.completed",
        {"id": "cs_test_payment_link", "object": "checkout.session", "payment_status": "paid", "metadata": {}},
    )

    assert deliver(fake_stripe, event).status_code == 200
    stored = StripeEvent.objects.get()
    assert stored.status == StripeEvent.Status.IGNORED and "not ours" in stored.outcome


def test_a_top_up_we_do_not_know_is_ignored(fake_stripe):
    event = build_event(
        "checkout.session.expired",
        {
            "id": "cs_test_elsewhere",
            "object": "checkout.session",
            "metadata": {"kind": "topup", "reference_id": "6c1f0a5e-0000-4000-8000-000000000000"},
        },
    )

    assert deliver(fake_stripe, event).status_code == 200
    assert StripeEvent.objects.get().status == StripeEvent.Status.IGNORED


def test_the_same_event_twice_takes_effect_once(fake_stripe, buyer):
    topup = TopUpFactory(wallet=WalletFactory(user=buyer), amount=Decimal("5.00"))
    fake_session = paid_session_event(fake_stripe, topup)

    first, second = deliver(fake_stripe, fake_session), deliver(fake_stripe, fake_session)

    assert first.status_code == second.status_code == 200
    assert Wallet.objects.get(user=buyer).balance == Decimal("5.00")
    stored = StripeEvent.objects.get()
    assert stored.status == StripeEvent.Status.PROCESSED and stored.attempts == 1


def test_a_handler_failure_is_500_and_the_retry_succeeds(fake_stripe, buyer_client, buyer, reconcile):
    """The wallet was locked meanwhile, so the payment must be refunded, and Stripe fails
    the refund: 500 (Stripe will retry), event FAILED; the next delivery refunds."""
    body = buyer_client.post("/api/v1/wallet/top-ups", {"amount": "20.00"}, format="json").json()
    wallet_set_locked(wallet_ids=[Wallet.objects.get(user=buyer).pk], locked=True)
    fake_stripe.mark_paid(body["stripeSessionId"])
    event = fake_stripe.session_event("checkout.session.completed", body["stripeSessionId"])
    fake_stripe.fail_next(1, status=500)

    assert_refused(deliver(fake_stripe, event), 500, "WEBHOOK_PROCESSING_FAILED")
    stored = StripeEvent.objects.get(event_id=event["id"])
    assert stored.status == StripeEvent.Status.FAILED and stored.attempts == 1
    assert "GatewayError" in stored.last_error
    payment = TopUp.objects.select_related("payment").get(pk=body["id"]).payment
    assert payment.refund_status == "PENDING" and not payment.stripe_refund_id and not fake_stripe.refunds

    assert deliver(fake_stripe, event).status_code == 200

    stored.refresh_from_db()
    assert stored.status == StripeEvent.Status.PROCESSED and stored.attempts == 2 and stored.last_error == ""
    payment.refresh_from_db()
    assert payment.refund_status == "SUCCEEDED" and payment.stripe_refund_id in fake_stripe.refunds
    assert Wallet.objects.get(user=buyer).balance == Decimal("0.00")
    reconcile()


def test_an_event_naming_the_top_up_from_another_session_is_ignored_and_changes_nothing(fake_stripe, buyer):
    """Not the session we created for it (another integration's, or a copy of our metadata):
    not ours. Acknowledged, IGNORED with the reason, never credited, never refunded by us."""
    topup = TopUpFactory(wallet=WalletFactory(user=buyer), amount=Decimal("5.00"))
    event = paid_session_event(fake_stripe, topup)
    event["data"]["object"]["id"] = "cs_test_someone_else"

    assert deliver(fake_stripe, event).status_code == 200
    topup = TopUp.objects.select_related("payment").get(pk=topup.pk)
    assert topup.status == TopUp.Status.PENDING and topup.payment.stripe_payment_intent_id is None
    stored = StripeEvent.objects.get()
    assert stored.status == StripeEvent.Status.IGNORED and "not ours" in stored.outcome
    assert Wallet.objects.get(user=buyer).balance == Decimal("0.00")
    assert not fake_stripe.requests  # Stripe is not asked anything: no refund of someone else's sale


@pytest.mark.django_db
@pytest.mark.parametrize("finished", [StripeEvent.Status.PROCESSED, StripeEvent.Status.IGNORED])
def test_a_late_failure_of_one_delivery_never_reopens_an_event_another_finished(finished):
    """Delivery 1 fails after delivery 2 already finished the event: the event stays finished
    (a FAILED mark would invite a needless reprocess and misreport the books)."""
    from webhooks.services import _record_failure

    event = StripeEvent.objects.create(
        event_id="evt_done", type="checkout.session.completed", payload={}, status=finished
    )

    _record_failure(event.event_id, RuntimeError("refund call failed"), count_attempt=True)

    event.refresh_from_db()
    assert event.status == finished and event.attempts == 0 and not event.last_error
