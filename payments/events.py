"""What each Stripe event does to our card payments: the one table of it.

| event type                                          | service                                   |
| --------------------------------------------------- | ----------------------------------------- |
| checkout.session.completed, paid                    | payment_paid                              |
| checkout.session.completed, not yet paid            | nothing: wait for the async event         |
| checkout.session.async_payment_succeeded            | payment_paid                              |
| checkout.session.async_payment_failed               | payment_release(FAILED)                   |
| checkout.session.expired                            | payment_release(EXPIRED)                  |
| charge.refunded, charge.refund.updated, refund.*    | after the commit: payment_refund_sync     |
| after the commit, a payment not applied             | payment_refund_resume                     |
| a paid session we never recorded that names us     | after the commit: payment_refund_unrecorded_session |

A session is ours when its id is a payment's `stripe_session_id`, never because its
metadata says so: a paid session that only names one of ours (its `kind` is one we
registered) is refused and refunded, and so is one whose amount or currency is not the
payment's. Anything else (other types, another integration's sessions and charges) is
acknowledged and ignored.

`handle_event` runs inside the webhook event's transaction (`webhooks.services`), under
its row lock; the services lock the payment themselves. Nothing here calls Stripe: what
must (a refund, asking Stripe which refunds exist) is returned in `Outcome.after_commit`,
run once the transaction committed, with no lock held.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from payments import services
from payments.gateway import CheckoutSession
from payments.hooks import registered_kinds
from payments.models import CheckoutPayment

logger = logging.getLogger("paymentflow.payments")

PAID, FAILED, EXPIRED = "paid", "failed", "expired"
SESSION_EVENTS = {
    "checkout.session.completed": PAID,  # only when paid; see below
    "checkout.session.async_payment_succeeded": PAID,
    "checkout.session.async_payment_failed": FAILED,
    "checkout.session.expired": EXPIRED,
}
REFUND_EVENTS = frozenset(
    {"charge.refunded", "charge.refund.updated", "refund.created", "refund.updated", "refund.failed"}
)
HANDLED_TYPES = frozenset(SESSION_EVENTS) | REFUND_EVENTS


@dataclass
class Outcome:
    handled: bool  # False: IGNORED
    note: str
    after_commit: list[Callable[[], Any]] = field(default_factory=list)
    #: Not empty: the event was refused for this reason (recorded FAILED for staff).
    rejected: str = ""


def handle_event(event: dict) -> Outcome:
    kind = event["type"]
    data = event["data"]["object"]
    if kind in SESSION_EVENTS:
        return _session_event(kind, CheckoutSession.from_stripe(data))
    if kind in REFUND_EVENTS:
        return _refund_event(kind, data)
    return Outcome(False, f"type {kind} is not handled")


def _session_event(event_type: str, session: CheckoutSession) -> Outcome:
    action = SESSION_EVENTS[event_type]
    payment = CheckoutPayment.objects.filter(stripe_session_id=session.id).first()
    if payment is None:
        return _unrecorded_session(action, session)
    if event_type == "checkout.session.completed" and not session.is_paid:
        note = f"{payment.kind} payment {payment.pk}: session complete, payment {session.payment_status}: waiting"
        return Outcome(True, note)
    if action == FAILED:
        services.payment_release(
            payment_id=payment.pk, status=payment.Status.FAILED, reason=services.PAYMENT_FAILED_REASON
        )
        return Outcome(True, f"{payment.kind} payment {payment.pk} failed")
    if action == EXPIRED:
        services.payment_release(payment_id=payment.pk, status=payment.Status.EXPIRED, reason=services.EXPIRED_REASON)
        return Outcome(True, f"{payment.kind} payment {payment.pk} expired")
    outcome = services.payment_paid(payment_id=payment.pk, session=session)
    refund = (
        [partial(services.payment_refund_resume, payment_id=payment.pk, busy_ok=True)] if outcome.refund_due else []
    )
    return Outcome(True, f"{payment.kind} payment {payment.pk}: {outcome.note}", refund, rejected=outcome.rejected)


def _unrecorded_session(action: str, session: CheckoutSession) -> Outcome:
    kind, reference = session.metadata.get("kind"), session.metadata.get("reference_id")
    if kind not in registered_kinds():
        return Outcome(False, f"session {session.id} is not ours")
    if action == PAID and session.is_paid and session.payment_intent_id:
        reason = f"paid session {session.id} names {kind} {reference} but is not the session created for it"
        return Outcome(True, reason, [partial(services.payment_refund_unrecorded_session, session=session)], reason)
    return Outcome(False, f"session {session.id} names {kind} {reference} but is not one we recorded")


def _refund_event(event_type: str, data: dict) -> Outcome:
    intent = data.get("payment_intent")
    intent_id = intent.get("id") if isinstance(intent, dict) else intent
    payment = CheckoutPayment.objects.filter(stripe_payment_intent_id=intent_id).first() if intent_id else None
    if payment is None:
        return Outcome(False, f"{event_type} of payment intent {intent_id}, which is not ours")
    # Which refunds exist is asked of Stripe (events may come late or out of order).
    sync = partial(services.payment_refund_sync, payment_id=payment.pk)
    return Outcome(True, f"{payment.kind} payment {payment.pk}: {event_type}", [sync])
