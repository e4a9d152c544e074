"""Stripe webhooks: verify, store once, handle at most once.

    stripe_event_receive(payload=request.body, signature_header=...)
      1. `gateway.construct_event` checks `Stripe-Signature` on the raw bytes (400 / 503).
      2. `stripe_event_record`: INSERT the event, unique on Stripe's id; a duplicate finds
         the stored row (concurrent inserts of one id: one wins, the others read it).
      3. `stripe_event_process`: one transaction takes the event's row lock
         (`SELECT ... FOR UPDATE`), returns at once if the event is already PROCESSED /
         IGNORED, else hands it to `payments.events.handle_event` and marks it, all
         committed together. A second delivery of the same event, even at the same
         moment, waits for the lock and then finds it done: its effect happens at most
         once. The payment services are idempotent under the payment's row lock as well.
      4. The Stripe calls the handler asked for (a refund, asking Stripe which refunds
         exist) run after the commit, with no lock held. Until they succeed the event stays
         RECEIVED (its database effect committed, the refund recorded PENDING on the
         payment), so a crash or a Stripe failure in between leaves it to be handled again;
         the refund's idempotency key and the check of Stripe's refunds make that safe.

An event that `payments` refuses (a paid session that is not ours to the cent) is marked
FAILED with the reason in `last_error`, once what Stripe took for it was refunded.

A handler error is logged, the event is marked FAILED with the error (the handler's
writes are rolled back) and `WebhookProcessingFailed` (500) is raised, so Stripe delivers
the event again and the next delivery (or staff's "reprocess" in the admin) handles it
again.
"""

import logging
import traceback

from django.db.models import F
from django.utils import timezone

from paymentflow import metrics
from paymentflow.db import atomic_with_retry
from payments import gateway
from payments.events import Outcome, handle_event
from webhooks.exceptions import WebhookProcessingFailed
from webhooks.models import StripeEvent

logger = logging.getLogger("paymentflow.webhooks")

MAX_ERROR_LENGTH = 4000


def stripe_event_receive(*, payload: bytes, signature_header: str | None) -> StripeEvent:
    """The webhook endpoint's one call: verify, store, process."""
    event = gateway.construct_event(payload=payload, signature_header=signature_header)
    stripe_event_record(event=event)
    return stripe_event_process(event_id=event["id"])


def stripe_event_record(*, event: dict) -> StripeEvent:
    """Store a verified event once; a redelivery returns the stored row unchanged."""
    data_object = event["data"]["object"]
    stored, created = StripeEvent.objects.get_or_create(
        event_id=event["id"],
        defaults={
            "type": event["type"][:100],
            "livemode": bool(event.get("livemode")),
            "payload": event,
            "object_id": str(data_object.get("id") or "")[:255],
        },
    )
    if not created:
        logger.info("Stripe event %s (%s) delivered again; it is %s", stored.event_id, stored.type, stored.status)
    return stored


def stripe_event_process(*, event_id: str) -> StripeEvent:
    """Handle a stored event unless it was already handled. Raises WebhookProcessingFailed."""
    committed = False
    try:
        event, outcome = _handle_locked(event_id)
        committed = True
        if outcome.after_commit:
            final = outcome
            for action in outcome.after_commit:
                result = action()
                if isinstance(result, Outcome):  # what Stripe said decides the outcome
                    final = result
            event = _mark_handled(event_id, final)
    except Exception as exc:
        logger.exception("Stripe event %s failed", event_id)
        _record_failure(event_id, exc, count_attempt=not committed)
        raise WebhookProcessingFailed() from exc
    return event


@atomic_with_retry
def _handle_locked(event_id: str) -> tuple[StripeEvent, Outcome]:
    event = StripeEvent.objects.select_for_update().get(event_id=event_id)
    if event.is_done:
        metrics.stripe_event_handled(event_type=event.type, outcome="duplicate")
        return event, Outcome(event.status == StripeEvent.Status.PROCESSED, "already handled")
    outcome = handle_event(event.payload)
    event.attempts += 1
    event.last_error = ""
    if outcome.after_commit:  # done only once those succeed (see _mark_handled)
        event.status = StripeEvent.Status.RECEIVED
        event.outcome = outcome.note[:255]
        event.save(update_fields=["status", "outcome", "attempts", "last_error"])
        return event, outcome
    return _finish(event, outcome), outcome


def _finish(event: StripeEvent, outcome: Outcome) -> StripeEvent:
    if outcome.rejected:
        event.status = StripeEvent.Status.FAILED
        event.last_error = f"Refused: {outcome.rejected}"[:MAX_ERROR_LENGTH]
    else:
        event.status = StripeEvent.Status.PROCESSED if outcome.handled else StripeEvent.Status.IGNORED
    event.outcome = outcome.note[:255]
    event.processed_at = timezone.now()
    event.save(update_fields=["status", "outcome", "attempts", "last_error", "processed_at"])
    metrics.stripe_event_handled(event_type=event.type, outcome=event.status.lower())
    logger.info("Stripe event %s (%s) %s: %s", event.event_id, event.type, event.status, event.outcome)
    return event


@atomic_with_retry
def _mark_handled(event_id: str, outcome: Outcome) -> StripeEvent:
    event = StripeEvent.objects.select_for_update().get(event_id=event_id)
    if event.is_done:  # a concurrent delivery finished it first
        metrics.stripe_event_handled(event_type=event.type, outcome="duplicate")
        return event
    event.last_error = ""
    return _finish(event, outcome)


@atomic_with_retry
def _record_failure(event_id: str, exc: BaseException, *, count_attempt: bool) -> None:
    error = "".join(traceback.format_exception_only(exc)).strip()
    cause = "".join(traceback.format_exception(exc))
    # A concurrent delivery may have finished the event meanwhile: never flip that back.
    finished = [StripeEvent.Status.PROCESSED, StripeEvent.Status.IGNORED]
    failed = StripeEvent.objects.filter(event_id=event_id).exclude(status__in=finished)
    for event_type in failed.values_list("type", flat=True):
        metrics.stripe_event_handled(event_type=event_type, outcome="failed")
    failed.update(
        status=StripeEvent.Status.FAILED,
        last_error=f"{error}\n\n{cause}"[:MAX_ERROR_LENGTH],
        attempts=F("attempts") + (1 if count_attempt else 0),
        processed_at=None,
    )


def stripe_event_reprocess(*, event: StripeEvent) -> StripeEvent:
    """The back office's "reprocess": handle a FAILED (or stuck RECEIVED) event again,
    through the same path as a delivery. Raises WebhookProcessingFailed."""
    return stripe_event_process(event_id=event.event_id)
