"""One delivery attempt at a time against a local receiver (webhooks.delivery): signed per
Standard Webhooks (checked with the `standardwebhooks` package on the receiving side),
retried on WEBHOOK_RETRY_SCHEDULE with the same webhook-id, never two attempts at once,
SSRF checked again at delivery time, and endpoints disabled after a day of failures."""

import json
import socket
import time
from datetime import timedelta

import pytest
from django.utils import timezone
from django_tasks_db.models import DBTaskResult
from standardwebhooks import WebhookVerificationError

from accounts.tests.factories import MerchantFactory
from webhooks import delivery as machinery
from webhooks import events
from webhooks.delivery import (
    LEASE_MARGIN_SECONDS,
    lease_seconds,
    webhook_deliveries_kick_due,
    webhook_delivery_attempt,
    webhook_delivery_retry_now,
)
from webhooks.models import WebhookDelivery
from webhooks.tests.factories import WebhookEndpointFactory
from webhooks.tests.receiver import DripReceiver, serve_tls, tls_files

pytestmark = pytest.mark.usefixtures("private_urls_allowed")


@pytest.fixture
def endpoint(db, receiver):
    return WebhookEndpointFactory(url=receiver.url)


@pytest.fixture
def delivery(endpoint, monkeypatch):
    """One PENDING order.completed delivery for `endpoint`, due now (its subject is a plain
    dict: what it holds is not the point here; test_events.py renders real orders)."""
    monkeypatch.setitem(events._SUBJECT_RENDERERS, "order", lambda subject: subject)
    (delivery_id,) = events.webhook_event_record(
        merchant_id=endpoint.merchant_id, event_type="order.completed", subject={"id": "o-1", "status": "COMPLETED"}
    )
    return WebhookDelivery.objects.get(pk=delivery_id)


def attempt(delivery) -> WebhookDelivery:
    webhook_delivery_attempt(delivery_id=delivery.pk)
    delivery.refresh_from_db()
    return delivery


def make_due(delivery) -> None:
    WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())


def test_a_2xx_is_success_and_the_signature_verifies_with_standardwebhooks(delivery, endpoint, receiver):
    delivery = attempt(delivery)

    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("SUCCEEDED", 1, 200)
    assert delivery.delivered_at is not None and delivery.next_attempt_at is None and delivery.locked_until is None
    (request,) = receiver.requests
    assert request.path == "/hooks"
    assert request.headers["webhook-id"] == str(delivery.event_id)
    assert request.headers["content-type"] == "application/json"
    event = request.verified(endpoint.secret)  # raises unless the signature and timestamp are right
    assert event == json.loads(delivery.payload) and request.body == delivery.payload.encode()
    assert event["type"] == "order.completed" and event["data"] == {"order": {"id": "o-1", "status": "COMPLETED"}}
    with pytest.raises(WebhookVerificationError):
        request.verified(WebhookEndpointFactory().secret)  # another endpoint's secret does not verify


def test_a_500_is_retried_on_the_schedule_with_the_same_webhook_id(delivery, receiver, settings):
    settings.WEBHOOK_RETRY_SCHEDULE = [5, 30]
    receiver.respond(500, 503)

    before = timezone.now()
    delivery = attempt(delivery)
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("PENDING", 1, 500)
    assert before + timedelta(seconds=5) <= delivery.next_attempt_at <= timezone.now() + timedelta(seconds=5)
    retry_task = DBTaskResult.objects.get()  # the next attempt's task, enqueued with the record
    assert retry_task.run_after == delivery.next_attempt_at and retry_task.args_kwargs["args"] == [str(delivery.pk)]

    assert attempt(delivery).attempts == 1  # not due yet: nothing sent
    make_due(delivery)
    delivery = attempt(delivery)
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("PENDING", 2, 503)
    make_due(delivery)
    delivery = attempt(delivery)
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("SUCCEEDED", 3, 200)
    assert len(set(receiver.ids())) == 1 and len(receiver.requests) == 3
    assert len({r.headers["webhook-signature"] for r in receiver.requests}) >= 1


def test_after_the_last_retry_it_is_failed(delivery, receiver, settings):
    settings.WEBHOOK_RETRY_SCHEDULE = [5]
    receiver.respond(500, 500, 500)
    delivery = attempt(delivery)
    make_due(delivery)
    delivery = attempt(delivery)
    assert (delivery.status, delivery.attempts, delivery.next_attempt_at) == ("FAILED", 2, None)
    make_due_failed = WebhookDelivery.objects.filter(pk=delivery.pk, status="FAILED").exists()
    assert make_due_failed and attempt(delivery).attempts == 2  # finished: never attempted again


def test_redirects_are_not_followed(delivery, receiver):
    receiver.respond(302)
    receiver.extra_headers = {"Location": "http://127.0.0.1:9/elsewhere"}
    delivery = attempt(delivery)
    assert (delivery.status, delivery.last_status_code) == ("PENDING", 302)
    assert len(receiver.requests) == 1


def test_only_a_short_excerpt_of_the_answer_is_kept(delivery, receiver):
    receiver.default_status = 400
    receiver.body = b"x" * 100_000
    delivery = attempt(delivery)
    assert delivery.last_status_code == 400 and delivery.response_excerpt == "x" * 500


def test_a_slow_receiver_is_a_timeout(delivery, receiver, settings):
    settings.WEBHOOK_TIMEOUT_SECONDS = 0.5
    receiver.delay = 2
    delivery = attempt(delivery)
    assert (delivery.status, delivery.last_status_code) == ("PENDING", None)
    assert delivery.last_error == "No answer within 0.5 s."


def test_an_unreachable_receiver_is_a_failed_attempt(delivery, endpoint, receiver):
    receiver.stop()
    delivery = attempt(delivery)
    assert (delivery.status, delivery.attempts, delivery.last_error) == ("PENDING", 1, "Could not connect.")


def test_the_url_is_checked_again_at_delivery_time(delivery, receiver, settings):
    """Registered while allowed (or while its name resolved elsewhere): refused now."""
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = False
    delivery = attempt(delivery)
    assert delivery.status == "PENDING" and delivery.attempts == 1
    assert "must start with https://" in delivery.last_error
    assert receiver.requests == []


def test_an_internal_https_host_is_refused_at_delivery_time(delivery, endpoint, receiver, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = False
    endpoint.url = receiver.url.replace("http://127.0.0.1", "https://localhost")
    endpoint.save()
    delivery = attempt(delivery)
    assert "resolves to the loopback" in delivery.last_error and receiver.requests == []


def test_a_leased_delivery_is_not_attempted_twice_at_once(delivery, receiver):
    """A second worker finds the delivery leased by the first and sends nothing."""
    receiver.delay = 0  # (the first attempt is simulated by the lease it holds)
    WebhookDelivery.objects.filter(pk=delivery.pk).update(locked_until=timezone.now() + timedelta(seconds=60))
    assert webhook_delivery_attempt(delivery_id=delivery.pk).startswith("not due")
    assert receiver.requests == []


def test_an_expired_lease_is_attempted_again_and_the_stale_outcome_is_not_kept(delivery, receiver):
    """A worker died mid-attempt (lease expired): another attempt is made; if the first
    were to report late, its outcome is ignored (attempts is the fencing token)."""
    from webhooks import delivery as machinery

    first = machinery._claim(delivery.pk)  # the attempt that "dies"
    WebhookDelivery.objects.filter(pk=delivery.pk).update(locked_until=timezone.now() - timedelta(seconds=1))
    delivery = attempt(delivery)
    assert (delivery.status, delivery.attempts) == ("SUCCEEDED", 2)
    machinery._record(first, machinery.AttemptResult(status_code=500))  # the late report
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("SUCCEEDED", 2, 200)


def test_the_kick_job_finds_lost_kicks_and_expired_leases(delivery, endpoint):
    now = timezone.now()
    lost = WebhookDelivery.objects.filter(pk=delivery.pk)
    lost.update(next_attempt_at=now - timedelta(minutes=1))
    dead = WebhookDelivery.objects.create(
        endpoint=endpoint, event_id=MerchantFactory().pk, event_type="order.refunded", payload="{}",
        next_attempt_at=now - timedelta(minutes=2), locked_until=now - timedelta(seconds=1), attempts=1,
        created_at=now, updated_at=now,
    )  # fmt: skip
    in_flight = WebhookDelivery.objects.create(
        endpoint=endpoint, event_id=MerchantFactory().pk, event_type="order.refunded", payload="{}",
        next_attempt_at=now - timedelta(minutes=2), locked_until=now + timedelta(seconds=30), attempts=1,
        created_at=now, updated_at=now,
    )  # fmt: skip
    just_due = WebhookDelivery.objects.create(
        endpoint=endpoint, event_id=MerchantFactory().pk, event_type="order.failed", payload="{}",
        next_attempt_at=now, created_at=now, updated_at=now,
    )  # fmt: skip

    assert webhook_deliveries_kick_due(now=now) == "Kicked 2 webhook deliveries."
    kicked = sorted(t.args_kwargs["args"][0] for t in DBTaskResult.objects.all())
    assert kicked == sorted([str(delivery.pk), str(dead.pk)])
    assert in_flight.pk and just_due.pk


def test_retry_now_attempts_a_failed_delivery_once_more(
    delivery, receiver, settings, django_capture_on_commit_callbacks
):
    settings.WEBHOOK_RETRY_SCHEDULE = [5]
    WebhookDelivery.objects.filter(pk=delivery.pk).update(status="FAILED", attempts=2, next_attempt_at=None)
    with django_capture_on_commit_callbacks(execute=True):
        assert webhook_delivery_retry_now(delivery_id=delivery.pk) is True
    assert DBTaskResult.objects.count() == 1
    delivery = attempt(delivery)
    assert (delivery.status, delivery.attempts) == ("SUCCEEDED", 3)
    assert webhook_delivery_retry_now(delivery_id=delivery.pk) is False  # delivered: nothing to retry


def test_an_endpoint_failing_everything_for_a_day_is_disabled_and_says_why(delivery, endpoint, receiver, settings):
    settings.WEBHOOK_RETRY_SCHEDULE = [5, 5, 5]
    receiver.default_status = 500
    delivery = attempt(delivery)
    endpoint.refresh_from_db()
    assert endpoint.is_active and endpoint.failing_since is not None  # failing, not for a day yet
    endpoint.failing_since = timezone.now() - timedelta(hours=24, seconds=1)
    endpoint.save()
    make_due(delivery)
    delivery = attempt(delivery)
    endpoint.refresh_from_db()
    assert not endpoint.is_active
    assert endpoint.disabled_reason.startswith("Disabled on ") and "(last: 500)" in endpoint.disabled_reason
    make_due(delivery)
    delivery = attempt(delivery)  # its pending deliveries end
    assert (delivery.status, delivery.last_error) == ("FAILED", "The endpoint is disabled.")
    assert len(receiver.requests) == 2


def test_a_success_clears_the_failing_streak(delivery, endpoint, receiver):
    receiver.respond(500)
    delivery = attempt(delivery)
    make_due(delivery)
    attempt(delivery)
    endpoint.refresh_from_db()
    assert endpoint.failing_since is None and endpoint.is_active


def test_a_receiver_dripping_its_answer_is_cut_at_the_attempt_deadline(delivery, endpoint, settings):
    """The timeout is the attempt's whole wall-clock budget, not per socket read: a byte
    every 0.1 s (4.5 s for the answer) still ends the attempt at 1 s, failed and retried."""
    settings.WEBHOOK_TIMEOUT_SECONDS = 1
    settings.WEBHOOK_RETRY_SCHEDULE = [5, 30]
    drip = DripReceiver(interval=0.1)
    try:
        endpoint.url = drip.url
        endpoint.save()
        began = time.monotonic()
        delivery = attempt(delivery)
        took = time.monotonic() - began
    finally:
        drip.stop()
    assert took < 2, took
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("PENDING", 1, None)
    assert delivery.last_error == "No answer within 1 s." and delivery.locked_until is None
    assert timezone.now() < delivery.next_attempt_at <= timezone.now() + timedelta(seconds=5)
    assert DBTaskResult.objects.get().args_kwargs["args"] == [str(delivery.pk)]  # the retry, enqueued


def test_the_lease_outlasts_an_attempt_and_its_lookup_in_one_place(delivery, settings):
    """Another worker may take a delivery over once its lease expires: the lease must be
    longer than anything one attempt may take (the lookup, the deadline), with a margin."""
    settings.WEBHOOK_LEASE_SECONDS = 10
    settings.WEBHOOK_TIMEOUT_SECONDS = 40
    settings.WEBHOOK_DNS_TIMEOUT_SECONDS = 20
    assert lease_seconds() >= 40 + 20 + LEASE_MARGIN_SECONDS and LEASE_MARGIN_SECONDS >= 5
    before = timezone.now()
    claimed = machinery._claim(delivery.pk)
    assert claimed.locked_until >= before + timedelta(seconds=lease_seconds())
    settings.WEBHOOK_LEASE_SECONDS, settings.WEBHOOK_TIMEOUT_SECONDS, settings.WEBHOOK_DNS_TIMEOUT_SECONDS = 60, 10, 5
    assert lease_seconds() == 60  # the operator's longer lease stands


def test_an_internationalised_host_is_posted_to_under_its_idna_name(delivery, endpoint, receiver, monkeypatch):
    """`bücher.example` resolves (as `xn--bcher-kva.example`) to the receiver; the Host
    header names it in that form, as a receiver's routing expects."""
    real = socket.getaddrinfo
    port = int(receiver.url.split(":")[2].split("/")[0])
    monkeypatch.setattr(
        socket,
        "getaddrinfo",
        lambda host, *a, **k: real("127.0.0.1" if host == "xn--bcher-kva.example" else host, *a, **k),
    )
    endpoint.url = f"http://bücher.example:{port}/hooks"
    endpoint.save()
    delivery = attempt(delivery)
    assert delivery.status == "SUCCEEDED", delivery.last_error
    (request,) = receiver.requests
    assert request.headers["host"] == f"xn--bcher-kva.example:{port}"


def test_tls_to_an_internationalised_host_names_and_verifies_its_idna_form(
    delivery, endpoint, receiver, monkeypatch, tmp_path
):
    """Over TLS to the pinned address: the server name (SNI), the certificate checked and
    the Host header are all `xn--bcher-kva.example`."""
    ca, cert, key = tls_files(tmp_path, "xn--bcher-kva.example")
    server_names = serve_tls(receiver, cert, key)
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))  # trust the test CA (OpenSSL reads it per context)
    real = socket.getaddrinfo
    monkeypatch.setattr(
        socket,
        "getaddrinfo",
        lambda host, *a, **k: real("127.0.0.1" if host == "xn--bcher-kva.example" else host, *a, **k),
    )
    port = int(receiver.url.split(":")[2].split("/")[0])
    endpoint.url = f"https://Bücher.example:{port}/hooks"
    endpoint.save()
    delivery = attempt(delivery)
    assert delivery.status == "SUCCEEDED", delivery.last_error
    assert server_names == ["xn--bcher-kva.example"]
    assert receiver.requests[0].headers["host"] == f"xn--bcher-kva.example:{port}"


def test_any_exception_during_an_attempt_is_a_failed_attempt_and_retried(delivery, endpoint, receiver, settings):
    """Not only network errors: here the stored secret cannot sign (not base64). The
    attempt is recorded failed with a short reason, the lease given back, the retry due."""
    settings.WEBHOOK_RETRY_SCHEDULE = [5, 30]
    endpoint.secret = "whsec_not base64!"
    endpoint.save()
    delivery = attempt(delivery)
    assert (delivery.status, delivery.attempts, delivery.locked_until) == ("PENDING", 1, None)
    assert delivery.last_error == "The attempt failed unexpectedly (Error)." and receiver.requests == []
    assert delivery.next_attempt_at > timezone.now()
    assert DBTaskResult.objects.get().args_kwargs["args"] == [str(delivery.pk)]
