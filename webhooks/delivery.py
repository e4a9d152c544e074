"""Delivering merchant webhooks. The delivery row is the source of truth; tasks only wake
a worker up (docs/ARCHITECTURE.md, "Merchant webhooks").

One attempt (`webhook_delivery_attempt`, run by the `deliver_webhook` task):

1. Claim: one conditional UPDATE takes a lease (`locked_until`) on a PENDING delivery that
   is due and not leased, and counts the attempt. Two workers cannot both match the row,
   so one event is never sent by two workers at the same moment.
2. No transaction, no lock: check the URL again (SSRF; DNS may have changed), sign
   (Standard Webhooks: the same `webhook-id` on every attempt, a fresh timestamp), POST to
   the checked address with a 10 s timeout, redirects not followed, at most a short
   excerpt of the answer read.
3. Record, only if no later attempt has begun (`attempts` is the fencing token): 2xx →
   SUCCEEDED; otherwise the next attempt after WEBHOOK_RETRY_SCHEDULE[n], its task
   enqueued in the same transaction, or FAILED after the last. An endpoint whose every
   attempt has failed for WEBHOOK_DISABLE_AFTER_HOURS is disabled, with the reason.

A worker killed during step 2 leaves the lease to expire (WEBHOOK_LEASE_SECONDS); the
`kick_due_webhook_deliveries` job (every 30 s) then enqueues the attempt again, as it does
for a delivery whose first kick was lost. Delivery is therefore at least once; receivers
deduplicate on `webhook-id`.
"""

import logging
from dataclasses import dataclass
from datetime import timedelta

import urllib3
from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from standardwebhooks import Webhook

from paymentflow import metrics
from webhooks.models import WebhookDelivery, WebhookEndpoint
from webhooks.urls_safety import UnsafeWebhookUrl, WebhookTarget, check_webhook_url

logger = logging.getLogger("paymentflow.webhooks.delivery")

Status = WebhookDelivery.Status
EXCERPT_BYTES = 500
USER_AGENT = "PaymentFlow-Webhooks/1"
#: A due delivery still unclaimed this long after it fell due has lost its kick.
KICK_GRACE = timedelta(seconds=15)
KICK_BATCH = 500


@dataclass(frozen=True)
class AttemptResult:
    status_code: int | None = None
    error: str = ""
    excerpt: str = ""

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def webhook_delivery_attempt(*, delivery_id) -> str:
    """Make the delivery's next attempt if it is due and nobody else is making it; returns
    what happened, for the task's result."""
    delivery = _claim(delivery_id)
    if delivery is None:
        return "not due, in flight elsewhere, finished or gone"
    endpoint = delivery.endpoint
    if not endpoint.is_active:
        result = AttemptResult(error="The endpoint is disabled.")
        _record(delivery, result, final=True)
        return result.error
    try:
        target = check_webhook_url(endpoint.url)
        result = _post(target, delivery=delivery, secret=endpoint.secret)
    except UnsafeWebhookUrl as exc:
        result = AttemptResult(error=str(exc))
    except urllib3.exceptions.HTTPError as exc:  # timeouts, refused connections, TLS failures
        result = AttemptResult(error=_describe(exc))
    _record(delivery, result)
    outcome = f"attempt {delivery.attempts}: {result.status_code or result.error}"
    logger.info("Webhook %s %s to %s: %s", delivery.event_type, delivery.event_id, endpoint.pk, outcome)
    return outcome


def _claim(delivery_id) -> WebhookDelivery | None:
    now = timezone.now()
    claimed = (
        WebhookDelivery.objects.filter(pk=delivery_id, status=Status.PENDING, next_attempt_at__lte=now)
        .filter(Q(locked_until__isnull=True) | Q(locked_until__lt=now))
        .update(
            locked_until=now + timedelta(seconds=settings.WEBHOOK_LEASE_SECONDS),
            attempts=F("attempts") + 1,
            updated_at=now,
        )
    )
    if not claimed:
        return None
    return WebhookDelivery.objects.select_related("endpoint").filter(pk=delivery_id).first()


def _post(target: WebhookTarget, *, delivery: WebhookDelivery, secret: str) -> AttemptResult:
    sent_at = timezone.now()
    event_id = str(delivery.event_id)
    headers = {
        "Host": _host_header(target),
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": event_id,
        "webhook-timestamp": str(int(sent_at.timestamp())),
        "webhook-signature": Webhook(secret).sign(event_id, sent_at, delivery.payload),
    }
    options = {
        "port": target.port,
        "timeout": urllib3.Timeout(total=settings.WEBHOOK_TIMEOUT_SECONDS),  # connecting and the answer
        "retries": False,
        "maxsize": 1,
    }
    if target.scheme == "https":  # connect to the checked address, verify the certificate of the name
        pool = urllib3.HTTPSConnectionPool(
            target.address, server_hostname=target.host, assert_hostname=target.host, **options
        )
    else:
        pool = urllib3.HTTPConnectionPool(target.address, **options)
    try:
        response = pool.urlopen(
            "POST",
            target.path,
            body=delivery.payload.encode(),
            headers=headers,
            redirect=False,
            assert_same_host=False,
            preload_content=False,
        )
        try:
            excerpt = response.read(EXCERPT_BYTES, decode_content=False) or b""
        finally:
            response.close()
        return AttemptResult(status_code=response.status, excerpt=excerpt.decode("utf-8", "replace"))
    finally:
        pool.close()


def _host_header(target: WebhookTarget) -> str:
    host = f"[{target.host}]" if ":" in target.host else target.host
    default_port = 443 if target.scheme == "https" else 80
    return host if target.port == default_port else f"{host}:{target.port}"


def _describe(exc: Exception) -> str:
    if isinstance(exc, urllib3.exceptions.NewConnectionError):  # (a subclass of the timeout error)
        return "Could not connect."
    if isinstance(exc, urllib3.exceptions.TimeoutError):
        return f"No answer within {settings.WEBHOOK_TIMEOUT_SECONDS} s."
    if isinstance(exc, urllib3.exceptions.SSLError):
        return "TLS failed (certificate or handshake)."
    return "Could not connect."


def _record(delivery: WebhookDelivery, result: AttemptResult, *, final: bool = False) -> None:
    now = timezone.now()
    fields = {
        "last_status_code": result.status_code,
        "last_error": result.error[:255],
        "response_excerpt": result.excerpt[:EXCERPT_BYTES],
        "locked_until": None,
        "updated_at": now,
    }
    schedule = settings.WEBHOOK_RETRY_SCHEDULE
    retry_at = None
    if result.succeeded:
        fields.update(status=Status.SUCCEEDED, delivered_at=now, next_attempt_at=None)
    elif final or delivery.attempts > len(schedule):
        fields.update(status=Status.FAILED, next_attempt_at=None)
    else:
        retry_at = now + timedelta(seconds=schedule[delivery.attempts - 1])
        fields.update(next_attempt_at=retry_at)
    with transaction.atomic():
        current = WebhookDelivery.objects.filter(pk=delivery.pk, status=Status.PENDING, attempts=delivery.attempts)
        if not current.update(**fields):
            logger.warning("Webhook delivery %s: a later attempt began; this one's outcome is not kept", delivery.pk)
            return
        if retry_at is not None:
            webhook_deliveries_kick([delivery.pk], at=retry_at)
        _note_endpoint_health(delivery.endpoint, result, now=now)
    metrics.webhook_delivery_attempted(outcome=fields.get("status", "retrying").lower())


def _note_endpoint_health(endpoint: WebhookEndpoint, result: AttemptResult, *, now) -> None:
    """A success clears `failing_since`; a failure starts it, and disables the endpoint once
    every attempt has failed for WEBHOOK_DISABLE_AFTER_HOURS."""
    endpoints = WebhookEndpoint.objects.filter(pk=endpoint.pk)
    if result.succeeded:
        endpoints.filter(failing_since__isnull=False).update(failing_since=None)
        return
    endpoints.filter(failing_since__isnull=True).update(failing_since=now)
    cutoff = now - timedelta(hours=settings.WEBHOOK_DISABLE_AFTER_HOURS)
    reason = (
        f"Disabled on {now:%Y-%m-%d %H:%M} UTC: every delivery attempt failed for "
        f"{settings.WEBHOOK_DISABLE_AFTER_HOURS} hours (last: {result.status_code or result.error})."
    )[:255]
    if endpoints.filter(is_active=True, failing_since__lte=cutoff).update(is_active=False, disabled_reason=reason):
        logger.warning("Webhook endpoint %s of merchant %s disabled: %s", endpoint.pk, endpoint.merchant_id, reason)


def webhook_deliveries_kick(delivery_ids, *, at=None) -> None:
    """Enqueue one attempt task per delivery (to run at `at`, or as soon as a worker is free)."""
    from webhooks.tasks import deliver_webhook  # the task module imports this one

    task = deliver_webhook.using(run_after=at) if at else deliver_webhook
    for delivery_id in delivery_ids:
        task.enqueue(str(delivery_id))


def webhook_deliveries_kick_due(*, now=None) -> str:
    """The scheduled safety net: enqueue an attempt for each PENDING delivery that is due
    but apparently has no task (its kick was lost), or whose lease expired (its worker
    died mid-attempt). A duplicate kick is harmless: the claim lets one attempt through."""
    now = now or timezone.now()
    lost = Q(next_attempt_at__lte=now - KICK_GRACE, locked_until__isnull=True) | Q(locked_until__lt=now)
    due = (
        WebhookDelivery.objects.filter(lost, status=Status.PENDING)
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:KICK_BATCH]
    )
    ids = list(due)
    webhook_deliveries_kick(ids)
    return f"Kicked {len(ids)} webhook deliveries."


def webhook_delivery_retry_now(*, delivery_id) -> bool:
    """The back office's "retry now": a PENDING or FAILED delivery is attempted at once
    (one more attempt; a failure then follows the schedule from where it was, or ends
    FAILED again). False for a SUCCEEDED or leased (in flight) one."""
    now = timezone.now()
    with transaction.atomic():
        retried = (
            WebhookDelivery.objects.filter(pk=delivery_id, status__in=[Status.PENDING, Status.FAILED])
            .filter(Q(locked_until__isnull=True) | Q(locked_until__lt=now))
            .update(status=Status.PENDING, next_attempt_at=now, locked_until=None, updated_at=now)
        )
        if retried:
            transaction.on_commit(lambda: webhook_deliveries_kick([delivery_id]))
    return bool(retried)
