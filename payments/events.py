"""What each Stripe event does to our card payments: the one table of it.

| event type                                        | service                                       |
| ------------------------------------------------- | --------------------------------------------- |
| checkout.session.completed, paid                  | payment_paid                                  |
| checkout.session.completed, not yet paid          | nothing: wait for the async event             |
| checkout.session.async_payment_succeeded          | payment_paid                                  |
| checkout.session.async_payment_failed             | payment_release(FAILED)                       |
| checkout.session.expired                          | payment_release(EXPIRED)                      |
| charge.refunded, charge.refund.updated, refund.*  | after the commit: payment_refund_sync         |
| after the commit, a payment not applied           | payment_refund_resume                         |
| a paid session we never recorded, possibly ours   | after the commit: payment_claim_lost_session  |
| any other session (not ours)                      | nothing: IGNORED, with the reason             |

A session is ours when its id is a payment's `stripe_session_id`, never because its
metadata says so. A session recorded on none of our payments (another integration's, the
Dashboard's, one whose metadata copies ours) is acknowledged and IGNORED with the reason:
it never moves money and is never refunded by us. The one exception is a paid session our
own create made whose answer we never got (`services.lost_session_line` says when that is
possible): after the commit, Stripe is asked to replay our create, and only if it answers
with this very session is it recorded and applied (a late payment: refunded). A session of
ours paid with another amount or currency is refused (FAILED) and refunded.

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


@dataclass
class Outcome:
    handled: bool  # False: IGNORED
    note: str
    #: Stripe calls to make once the event's transaction committed; one that returns an
    #: Outcome decides the event's final one (what Stripe said changes what it was).
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
    if action != PAID or not session.is_paid or not session.payment_intent_id:
        return Outcome(False, f"session {session.id} is not one we recorded: not ours")
    line = services.lost_session_line(session)
    if isinstance(line, str):
        return Outcome(False, f"paid session {session.id} is not ours: {line}")
    note = f"paid session {session.id} may be ours (its create's answer lost): asking Stripe"
    return Outcome(True, note, [partial(_claim, line, session)])


def _claim(line, session: CheckoutSession) -> Outcome:
    """After the commit: the event's final outcome, once Stripe said whose session it is."""
    outcome = services.payment_claim_lost_session(line=line, session=session)
    if outcome is None:
        return Outcome(False, f"paid session {session.id} is not ours: Stripe's replay of our create is another")
    note = f"session {session.id} was ours, its create's answer lost: {outcome.note}"
    return Outcome(True, note, rejected=outcome.rejected)


def _refund_event(event_type: str, data: dict) -> Outcome:
    intent = data.get("payment_intent")
    intent_id = intent.get("id") if isinstance(intent, dict) else intent
    payment = CheckoutPayment.objects.filter(stripe_payment_intent_id=intent_id).first() if intent_id else None
    if payment is None:
        return Outcome(False, f"{event_type} of payment intent {intent_id}, which is not ours")
    # Which refunds exist is asked of Stripe (events may come late or out of order).
    sync = partial(services.payment_refund_sync, payment_id=payment.pk)
    return Outcome(True, f"{payment.kind} payment {payment.pk}: {event_type}", [sync])
