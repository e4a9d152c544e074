"""Delivering merchant webhooks. The delivery row is the source of truth; tasks only wake
a worker up (docs/ARCHITECTURE.md, "Merchant webhooks").

One attempt (`webhook_delivery_attempt`, run by the `deliver_webhook` task):

1. Claim: one conditional UPDATE takes a lease (`locked_until`) on a PENDING delivery that
   is due and not leased, and counts the attempt. Two workers cannot both match the row,
   so one event is never sent by two workers at the same moment.
2. No transaction, no lock: check the URL again (SSRF; DNS may have changed, resolving
   bounded by WEBHOOK_DNS_TIMEOUT_SECONDS), sign (Standard Webhooks: the same `webhook-id`
   on every attempt, a fresh timestamp), POST to the checked address, redirects not
   followed, at most a short excerpt of the answer read, all within WEBHOOK_TIMEOUT_SECONDS
   of wall-clock time (`_Deadline`: a receiver dripping its answer a byte at a time is cut
   off). Any exception is a failed attempt with a short reason, never a stuck lease.
3. Record, only if no later attempt has begun (`attempts` is the fencing token): 2xx →
   SUCCEEDED; otherwise the next attempt after WEBHOOK_RETRY_SCHEDULE[n], its task
   enqueued in the same transaction, or FAILED after the last. An endpoint whose every
   attempt has failed for WEBHOOK_DISABLE_AFTER_HOURS is disabled, with the reason.

A worker killed during step 2 leaves the lease to expire (`lease_seconds()`); the
`kick_due_webhook_deliveries` job (every 30 s) then enqueues the attempt again, as it does
for a delivery whose first kick was lost. Delivery is therefore at least once; receivers
deduplicate on `webhook-id`.
"""

import contextlib
import http.client
import logging
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from datetime import timedelta

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
#: What the lease keeps beyond the longest an attempt may take (the lookup and the
#: deadline): recording the outcome, a slow database, clocks.
LEASE_MARGIN_SECONDS = 5


def lease_seconds() -> float:
    """How long a claimed attempt is ours: WEBHOOK_LEASE_SECONDS, but never less than the
    longest an attempt may take plus a margin, so no other worker sends the same delivery
    again while this one is still sending it (the one place this is computed)."""
    longest = settings.WEBHOOK_DNS_TIMEOUT_SECONDS + settings.WEBHOOK_TIMEOUT_SECONDS
    return max(settings.WEBHOOK_LEASE_SECONDS, longest + LEASE_MARGIN_SECONDS)


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
    except Exception as exc:  # noqa: BLE001 - any failure is a failed attempt, retried; never a stuck lease
        if not isinstance(exc, OSError | http.client.HTTPException):
            logger.exception("Webhook delivery %s: the attempt failed unexpectedly", delivery.pk)
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
            locked_until=now + timedelta(seconds=lease_seconds()),
            attempts=F("attempts") + 1,
            updated_at=now,
        )
    )
    if not claimed:
        return None
    return WebhookDelivery.objects.select_related("endpoint").filter(pk=delivery_id).first()


class _Deadline:
    """One attempt's wall clock (WEBHOOK_TIMEOUT_SECONDS for connect, TLS, send and the
    answer's excerpt). A socket timeout bounds each read, not their sum: a receiver sending
    a byte every 9 s would hold the worker for ever. So each step gets the time left, and a
    timer shuts the socket down at the deadline, which ends any read or write in progress."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.expired = False
        self._ends = time.monotonic() + seconds
        self._socket = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def left(self) -> float:
        left = self._ends - time.monotonic()
        if left <= 0:
            self.expired = True
            raise TimeoutError("the attempt's deadline passed")
        return left

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._socket = sock
            if self.expired:
                self._shutdown()

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            self._shutdown()

    def _shutdown(self) -> None:
        if self._socket is not None:  # the plain socket's shutdown: an SSLSocket's would drop its TLS state
            with contextlib.suppress(OSError):  # under the reader; already closed is fine
                socket.socket.shutdown(self._socket, socket.SHUT_RDWR)

    def __enter__(self):
        self._timer.start()
        return self

    def __exit__(self, *exc):
        self._timer.cancel()
        with self._lock:
            sock, self._socket = self._socket, None
        if sock is not None:
            sock.close()


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
    with _Deadline(settings.WEBHOOK_TIMEOUT_SECONDS) as deadline:
        try:
            sock = _connect(target, deadline)
            connection = http.client.HTTPConnection(target.address, target.port, timeout=deadline.left())
            connection.sock = sock  # the checked address, already connected (and TLS-verified)
            connection.request("POST", target.path, body=delivery.payload.encode(), headers=headers)
            sock.settimeout(deadline.left())
            response = connection.getresponse()  # redirects are answers: never followed
            sock.settimeout(deadline.left())
            excerpt = response.read(EXCERPT_BYTES) or b""
            deadline.left()  # an excerpt completed only by the deadline's shutdown is no answer
        except (OSError, http.client.HTTPException):
            if deadline.expired:
                raise TimeoutError("the attempt's deadline passed") from None
            raise
    return AttemptResult(status_code=response.status, excerpt=excerpt.decode("utf-8", "replace"))


def _connect(target: WebhookTarget, deadline: _Deadline) -> socket.socket:
    """A connection to the checked address; for https, TLS verified against the URL's host
    (its IDNA form: the server name sent and the name the certificate must carry)."""
    sock = socket.create_connection((target.address, target.port), timeout=deadline.left())
    deadline.watch(sock)
    if target.scheme != "https":
        return sock
    context = ssl.create_default_context()
    tls = context.wrap_socket(sock, server_hostname=target.host, do_handshake_on_connect=False)
    deadline.watch(tls)  # `sock` is detached now: the TLS socket holds the connection
    tls.settimeout(deadline.left())
    tls.do_handshake()
    return tls


def _host_header(target: WebhookTarget) -> str:
    host = f"[{target.host}]" if ":" in target.host else target.host
    default_port = 443 if target.scheme == "https" else 80
    return host if target.port == default_port else f"{host}:{target.port}"


def _describe(exc: Exception) -> str:
    """A failed attempt's reason, short and fit for the merchant (no internals)."""
    if isinstance(exc, TimeoutError):  # socket.timeout too
        return f"No answer within {settings.WEBHOOK_TIMEOUT_SECONDS} s."
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return "TLS failed (certificate or handshake)."
    if isinstance(exc, OSError):
        return "Could not connect."
    if isinstance(exc, http.client.HTTPException):
        return "The answer was not valid HTTP."
    return f"The attempt failed unexpectedly ({type(exc).__name__})."


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
