"""The back office for Stripe events and top-ups, through Django's test client."""

from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from accounts.models import User
from payments.testing.fake_stripe import build_event
from wallets.models import TopUp, Wallet
from wallets.services import wallet_set_locked
from wallets.tests.factories import TopUpFactory, WalletFactory
from webhooks.models import StripeEvent
from webhooks.tests.utils import deliver

pytestmark = pytest.mark.django_db
EVENTS = "/admin/webhooks/stripeevent/"


@pytest.fixture
def admin_client(staff):
    client = Client()
    client.force_login(staff)
    return client


def failed_refund_event(fake_stripe, buyer_client, buyer):
    """A paid top-up whose wallet was locked meanwhile, and Stripe failing the refund: FAILED."""
    body = buyer_client.post("/api/v1/wallet/top-ups", {"amount": "20.00"}, format="json").json()
    wallet_set_locked(wallet_ids=[Wallet.objects.get(user=buyer).pk], locked=True)
    fake_stripe.mark_paid(body["stripeSessionId"])
    event = fake_stripe.session_event("checkout.session.completed", body["stripeSessionId"])
    fake_stripe.fail_next(1, status=503)
    assert deliver(fake_stripe, event).status_code == 500
    return StripeEvent.objects.get(event_id=event["id"]), TopUp.objects.get(pk=body["id"])


def test_events_list_filters_and_search(fake_stripe, admin_client):
    deliver(fake_stripe, build_event("customer.created", {"id": "cus_1"}, id="evt_test_customer"))
    deliver(fake_stripe, build_event("charge.refunded", {"id": "ch_1"}, id="evt_test_charge"))

    listing = admin_client.get(EVENTS, {"type": "customer.created", "status__exact": "IGNORED"})
    assert listing.status_code == 200
    assert "evt_test_customer" in listing.content.decode() and "evt_test_charge" not in listing.content.decode()

    found = admin_client.get(EVENTS, {"q": "evt_test_charge"}).content.decode()
    assert "evt_test_charge" in found and "evt_test_customer" not in found


def test_event_page_is_read_only_and_shows_the_payload(fake_stripe, admin_client):
    deliver(fake_stripe, build_event("customer.created", {"id": "cus_1"}, id="evt_test_page"))
    stored = StripeEvent.objects.get()

    page = admin_client.get(f"{EVENTS}{stored.pk}/change/")

    html = page.content.decode()
    assert page.status_code == 200 and "cus_1" in html and "evt_test_page" in html
    assert 'name="status"' not in html and 'name="_save"' not in html
    assert admin_client.get(f"{EVENTS}add/").status_code == 403
    assert admin_client.post(f"{EVENTS}{stored.pk}/delete/").status_code == 403


def test_reprocess_handles_a_failed_event_through_the_dispatcher(fake_stripe, admin_client, buyer_client, buyer):
    event, topup = failed_refund_event(fake_stripe, buyer_client, buyer)
    assert event.status == StripeEvent.Status.FAILED

    response = admin_client.post(EVENTS, {"action": "reprocess", "_selected_action": [event.pk]}, follow=True)

    assert "Reprocessed 1 event(s)." in response.content.decode()
    event.refresh_from_db()
    assert event.status == StripeEvent.Status.PROCESSED and event.attempts == 2
    payment = TopUp.objects.select_related("payment").get(pk=topup.pk).payment
    assert payment.stripe_refund_id in fake_stripe.refunds and payment.refund_status == "SUCCEEDED"


def test_reprocess_failing_again_says_so_and_skips_handled_events(fake_stripe, admin_client, buyer_client, buyer):
    event, _ = failed_refund_event(fake_stripe, buyer_client, buyer)
    deliver(fake_stripe, build_event("customer.created", {"id": "cus_1"}, id="evt_test_done"))
    done = StripeEvent.objects.get(event_id="evt_test_done")
    fake_stripe.fail_next(1, status=503)

    response = admin_client.post(EVENTS, {"action": "reprocess", "_selected_action": [event.pk, done.pk]}, follow=True)

    html = response.content.decode()
    assert "failed again" in html and "Skipped 1 event(s)" in html
    event.refresh_from_db()
    assert event.status == StripeEvent.Status.FAILED and event.attempts == 2


def test_reprocess_needs_its_permission(fake_stripe, buyer_client, buyer):
    event, _ = failed_refund_event(fake_stripe, buyer_client, buyer)
    clerk = User.objects.create_user("clerk@example.com", "ClerkPass123!", is_staff=True)
    clerk.user_permissions.add(Permission.objects.get(codename="view_stripeevent"))
    client = Client()
    client.force_login(clerk)

    listing = client.get(EVENTS)
    assert listing.status_code == 200 and 'value="reprocess"' not in listing.content.decode()
    client.post(EVENTS, {"action": "reprocess", "_selected_action": [event.pk]})
    event.refresh_from_db()
    assert event.status == StripeEvent.Status.FAILED

    clerk.user_permissions.add(Permission.objects.get(codename="reprocess_stripeevent"))
    assert 'value="reprocess"' in client.get(EVENTS).content.decode()


def test_top_ups_are_listed_read_only_and_searchable(admin_client, buyer, merchant):
    mine = TopUpFactory(wallet=WalletFactory(user=buyer), amount=Decimal("7.00"))
    other = TopUpFactory(wallet=WalletFactory(user=merchant))

    by_email = admin_client.get("/admin/wallets/topup/", {"q": buyer.email}).content.decode()
    assert str(mine.payment_id) in by_email and str(other.payment_id) not in by_email
    by_session = admin_client.get("/admin/wallets/topup/", {"q": other.payment.stripe_session_id}).content.decode()
    assert str(other.payment_id) in by_session and str(mine.payment_id) not in by_session
    assert admin_client.get("/admin/wallets/topup/", {"status__exact": "PENDING"}).status_code == 200

    page = admin_client.get(f"/admin/wallets/topup/{mine.pk}/change/")
    assert page.status_code == 200 and 'name="status"' not in page.content.decode()
    assert admin_client.get("/admin/wallets/topup/add/").status_code == 403


# --- merchant webhooks (outbound) ---------------------------------------------------------

DELIVERIES = "/admin/webhooks/webhookdelivery/"


def make_delivery(status: str, **fields):
    from django.utils import timezone

    from webhooks.models import WebhookDelivery
    from webhooks.tests.factories import WebhookEndpointFactory

    endpoint = WebhookEndpointFactory()
    now = timezone.now()
    return WebhookDelivery.objects.create(
        endpoint=endpoint, event_id=endpoint.pk, event_type="order.completed", payload='{"id":"e","type":"x"}',
        status=status, attempts=fields.pop("attempts", 8), created_at=now, updated_at=now, **fields,
    )  # fmt: skip


def test_deliveries_are_read_only_and_show_the_payload_never_the_secret(admin_client):
    delivery = make_delivery("FAILED", last_status_code=500, last_error="", response_excerpt="boom")
    listing = admin_client.get(DELIVERIES, {"status__exact": "FAILED"})
    assert listing.status_code == 200 and str(delivery.event_id) in listing.content.decode()
    page = admin_client.get(f"{DELIVERIES}{delivery.pk}/change/").content.decode()
    assert "boom" in page and "&quot;type&quot;: &quot;x&quot;" in page and 'name="_save"' not in page
    endpoint_page = admin_client.get(f"/admin/webhooks/webhookendpoint/{delivery.endpoint_id}/change/")
    assert endpoint_page.status_code == 200 and delivery.endpoint.secret not in endpoint_page.content.decode()


def test_retry_now_needs_its_permission_and_retries_failed_ones(staff, django_capture_on_commit_callbacks):
    from django_tasks_db.models import DBTaskResult

    failed, delivered = make_delivery("FAILED"), make_delivery("SUCCEEDED")
    clerk = User.objects.create_user(email="clerk@example.com", password="x" * 12, is_staff=True)
    clerk.user_permissions.add(Permission.objects.get(codename="view_webhookdelivery"))
    client = Client()
    client.force_login(clerk)
    action = {"action": "retry_now", "_selected_action": [failed.pk, delivered.pk]}
    client.post(DELIVERIES, action)
    failed.refresh_from_db()
    assert failed.status == "FAILED"  # no permission: the action is not offered

    clerk.user_permissions.add(Permission.objects.get(codename="retry_webhookdelivery"))
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(DELIVERIES, action, follow=True)
    assert "Retrying 1 delivery(ies) now." in response.content.decode()
    assert "Skipped 1" in response.content.decode()
    failed.refresh_from_db()
    delivered.refresh_from_db()
    assert (failed.status, failed.next_attempt_at is not None, delivered.status) == ("PENDING", True, "SUCCEEDED")
    assert [t.args_kwargs["args"] for t in DBTaskResult.objects.all()] == [[str(failed.pk)]]
