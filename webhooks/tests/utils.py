"""Delivering signed Stripe events to our endpoint, the way Stripe does (shared by the
webhook, top-up and gateway-order tests)."""

from rest_framework.test import APIClient

from paymentflow.testing.concurrency import Post, post_at_once
from payments.testing.fake_stripe import build_event

WEBHOOK_URL = "/api/v1/webhooks/stripe"


def post_raw(body: bytes, signature: str | None, *, client: APIClient | None = None):
    headers = {} if signature is None else {"HTTP_STRIPE_SIGNATURE": signature}
    return (client or APIClient()).post(WEBHOOK_URL, data=body, content_type="application/json", **headers)


def deliver(fake_stripe, event: dict, *, secret: str | None = None, timestamp: int | None = None):
    """POST `event` signed with the endpoint secret (or `secret`) at `timestamp` (or now)."""
    body, signature = fake_stripe.signed(event, secret=secret, timestamp=timestamp)
    return post_raw(body, signature)


def deliver_session_event(fake_stripe, type: str, session_id: str):  # noqa: A002 - Stripe's name
    """Build the `type` event carrying the session's current state at the fake and deliver
    it; returns (event, response)."""
    event = fake_stripe.session_event(type, session_id)
    return event, deliver(fake_stripe, event)


def deliver_all_at_once(live_server, deliveries):
    """POST every signed (body, signature) to the live server at the same moment, each on
    its own connection; the responses in order."""
    posts = [
        Post(WEBHOOK_URL, data=body, headers={"Content-Type": "application/json", "Stripe-Signature": signature})
        for body, signature in deliveries
    ]
    return post_at_once(live_server, posts)


def paid_session_event(fake_stripe, topup, type_="checkout.session.completed"):
    """A paid session for `topup` (made directly, not through our API) and its event."""
    session = {
        "id": topup.payment.stripe_session_id,
        "object": "checkout.session",
        "amount_total": int(topup.amount * 100),
        "currency": topup.currency.lower(),
        "client_reference_id": str(topup.pk),
        "metadata": {"kind": "topup", "reference_id": str(topup.pk)},
        "payment_intent": "pi_test_direct",
        "payment_status": "paid",
        "status": "complete",
    }
    return build_event(type_, session)
