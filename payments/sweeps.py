"""The scheduled sweeps of card payments: plain functions (no arguments needed) that do
their whole round, never stop at one payment's failure, and return what they did. Their
management commands print that and exit 1 naming what could not be settled; a scheduler
may call the functions directly.

- `expire_pending_checkouts`: PENDING payments whose session's `expires_at` has passed
  (Stripe's `checkout.session.expired` or `async_payment_failed` never arrived): the one
  rule for card orders and top-ups, `payments.services.payment_close` (expire at Stripe,
  then settle what Stripe says: expired, paid, or a delayed payment that failed).
- `sweep_stripe_refunds`: refunds whose outcome is unknown are made again (once
  REFUND_RETRY_AFTER_SECONDS old), and the refunds Stripe made recently are matched with
  our payments, so a refund made without us whose event was lost is still applied.

Both are safe to run twice at once, or beside a webhook: every change re-checks the
payment under its row lock, and a refund attempt holds the payment's refund lease.
"""

import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from paymentflow.api.exceptions import ApplicationError
from payments import gateway, services
from payments.models import CheckoutPayment

logger = logging.getLogger("paymentflow.payments")

#: How far back `sweep_stripe_refunds` reads Stripe's refunds (events are retried 3 days).
REFUND_LOOKBACK = timedelta(days=7)


@dataclass
class SweepSummary:
    found: int = 0
    outcomes: Counter = field(default_factory=Counter)
    #: {payment id: why it could not be settled}; the next run tries again.
    failed: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        done = ", ".join(f"{outcome}: {count}" for outcome, count in sorted(self.outcomes.items()))
        return f"{self.found} found; {done or 'nothing to do'}; {len(self.failed)} not settled"


def expire_pending_checkouts(*, now=None) -> SweepSummary:
    """Close every PENDING card payment whose Checkout Session has expired."""
    now = now or timezone.now()
    expired = list(
        CheckoutPayment.objects.filter(status=CheckoutPayment.Status.PENDING, expires_at__lt=now).order_by("expires_at")
    )
    summary = SweepSummary(found=len(expired))
    for payment in expired:
        try:
            summary.outcomes[services.payment_close(payment=payment, reason=services.EXPIRED_REASON)] += 1
        except ApplicationError as exc:  # Stripe unreachable or not configured: stays PENDING
            logger.warning("Could not close card payment %s: %s (%s)", payment.pk, exc.code, exc.message)
            summary.failed[str(payment.pk)] = exc.message
    return summary


def sweep_stripe_refunds(*, now=None) -> SweepSummary:
    """Settle refunds whose outcome is unknown, and apply refunds made at Stripe without us."""
    now = now or timezone.now()
    summary = SweepSummary()
    retry_before = now - timedelta(seconds=settings.REFUND_RETRY_AFTER_SECONDS)
    in_progress = list(
        CheckoutPayment.objects.filter(
            refund_status=CheckoutPayment.RefundStatus.PENDING, refund_requested_at__lte=retry_before
        )
        .filter(Q(refund_attempt_started_at=None) | Q(refund_attempt_started_at__lt=now - services.refund_lease()))
        .order_by("refund_requested_at")
        .values_list("pk", flat=True)
    )
    for payment_id in in_progress:
        _settle(summary, payment_id, lambda pk: services.payment_refund_resume(payment_id=pk, busy_ok=True))
    if not gateway.is_configured():  # no card payments are taken: no refunds of ours to find at Stripe
        return summary
    try:
        made_at_stripe = gateway.list_refunds(created_since=now - REFUND_LOOKBACK)
    except ApplicationError as exc:
        summary.failed["stripe:refunds"] = exc.message
        return summary
    intents = {refund.payment_intent_id for refund in made_at_stripe if refund.is_made}
    unknown = (
        CheckoutPayment.objects.filter(stripe_payment_intent_id__in=intents)
        .exclude(refund_status=CheckoutPayment.RefundStatus.SUCCEEDED)
        .exclude(pk__in=in_progress)
        .values_list("pk", flat=True)
    )
    for payment_id in unknown:
        _settle(summary, payment_id, lambda pk: services.payment_refund_sync(payment_id=pk))
    return summary


def _settle(summary: SweepSummary, payment_id, settle) -> None:
    summary.found += 1
    try:
        payment = settle(payment_id)
    except ApplicationError as exc:
        logger.warning("Could not settle the refund of card payment %s: %s (%s)", payment_id, exc.code, exc.message)
        summary.failed[str(payment_id)] = exc.message
        return
    if payment.needs_attention:
        summary.failed[str(payment_id)] = payment.attention_reason
    else:
        summary.outcomes[f"refund {payment.refund_status or 'none'}"] += 1
