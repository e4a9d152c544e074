"""The same Stripe event delivered many times, some at the same moment, through the real
HTTP server with one database connection per server thread: it takes effect once."""

from decimal import Decimal

import pytest
import requests

from wallets import topups
from wallets.models import LedgerEntry, TopUp, Wallet
from webhooks.models import StripeEvent
from webhooks.tests.utils import WEBHOOK_URL, deliver_all_at_once

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.concurrency]


def paid_topup(fake_stripe, buyer, amount="33.00"):
    topup = topups.topup_create(user=buyer, amount=Decimal(amount))
    fake_stripe.mark_paid(topup.payment.stripe_session_id)
    return topup


def test_one_event_delivered_10_times_5_at_once_credits_once(live_server, fake_stripe, buyer, reconcile):
    topup = paid_topup(fake_stripe, buyer)
    event = fake_stripe.session_event("checkout.session.completed", topup.payment.stripe_session_id)
    delivery = fake_stripe.signed(event)

    concurrent = deliver_all_at_once(live_server, [delivery] * 5)
    sequential = [requests.post(f"{live_server.url}{WEBHOOK_URL}", data=delivery[0],
                                headers={"Stripe-Signature": delivery[1]}, timeout=60) for _ in range(5)]  # fmt: skip

    assert [r.status_code for r in concurrent + sequential] == [200] * 10
    assert Wallet.objects.get(user=buyer).balance == Decimal("33.00")
    assert LedgerEntry.objects.filter(journal__reference_type="topup", type="DEPOSIT").count() == 2  # two legs
    stored = StripeEvent.objects.get()
    assert stored.status == StripeEvent.Status.PROCESSED and stored.attempts == 1
    assert TopUp.objects.get(pk=topup.pk).status == TopUp.Status.COMPLETED
    reconcile()


def test_two_different_events_for_one_paid_session_at_once_credit_once(live_server, fake_stripe, buyer, reconcile):
    """Distinct event ids (completed + async succeeded) pass the event dedup; the payment's
    row lock makes the second a no-op."""
    topup = paid_topup(fake_stripe, buyer, "12.00")
    deliveries = [
        fake_stripe.signed(fake_stripe.session_event(type_, topup.payment.stripe_session_id))
        for type_ in ["checkout.session.completed", "checkout.session.async_payment_succeeded"] * 3
    ]

    responses = deliver_all_at_once(live_server, deliveries)

    assert [r.status_code for r in responses] == [200] * 6
    assert StripeEvent.objects.filter(status=StripeEvent.Status.PROCESSED).count() == 6
    assert Wallet.objects.get(user=buyer).balance == Decimal("12.00")
    reconcile()
