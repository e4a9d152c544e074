"""What each Stripe event does: by type, then by the Checkout Session's `metadata.kind`.

| event type                                   | order (orders.services)          | top-up (wallets.topups)  |
| -------------------------------------------- | -------------------------------- | ------------------------ |
| checkout.session.completed, paid             | order_gateway_payment_succeeded  | topup_payment_succeeded  |
| checkout.session.completed, not yet paid     | nothing: wait for the async event | nothing                  |
| checkout.session.async_payment_succeeded     | order_gateway_payment_succeeded  | topup_payment_succeeded  |
| checkout.session.async_payment_failed        | order_gateway_payment_failed     | topup_payment_failed     |
| checkout.session.expired                     | order_gateway_session_expired    | topup_session_expired    |
| after the commit, when left `refund_required` | order_refund_unapplied_payment  | topup_refund_unapplied_payment |

Any other type, and sessions that are not ours (no `kind` / `reference_id` in their
metadata, or a reference we do not know: another integration on the same Stripe
account), are acknowledged and IGNORED.

`dispatch` runs inside the event's transaction (`webhooks.services`), under its row lock;
the services it calls take their own row locks (order / top-up) and are idempotent.
None of them calls Stripe. A paid session that could not be applied (a late payment for
a cancelled / failed order or top-up, a locked wallet, a lowered deposit limit) leaves
its order / top-up `refund_required`; `_applied`, shared by both kinds, then returns the
refund in `Outcome.after_commit`, run by the caller once the transaction committed, so no
lock is held while Stripe is called.
"""

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from payments.gateway import CheckoutSession

logger = logging.getLogger("paymentflow.webhooks")

SUCCEEDED, FAILED, EXPIRED = "succeeded", "failed", "expired"
SESSION_EVENTS = {
    "checkout.session.completed": SUCCEEDED,  # only when paid; see below
    "checkout.session.async_payment_succeeded": SUCCEEDED,
    "checkout.session.async_payment_failed": FAILED,
    "checkout.session.expired": EXPIRED,
}
HANDLED_TYPES = frozenset(SESSION_EVENTS)


@dataclass
class Outcome:
    handled: bool  # False: IGNORED
    note: str
    after_commit: list[Callable[[], Any]] = field(default_factory=list)


def dispatch(event: dict) -> Outcome:
    action = SESSION_EVENTS.get(event["type"])
    if action is None:
        return Outcome(False, f"type {event['type']} is not handled")
    session = CheckoutSession.from_stripe(event["data"]["object"])
    kind = session.metadata.get("kind")
    reference = session.metadata.get("reference_id") or session.client_reference_id
    try:
        reference_id = uuid.UUID(str(reference))
    except ValueError:
        return Outcome(False, f"session {session.id} is not ours (reference {reference!r})")
    if event["type"] == "checkout.session.completed" and not session.is_paid:
        return Outcome(True, f"{kind} {reference_id}: session complete, payment {session.payment_status}: waiting")
    if kind == "topup":
        return _topup(action, reference_id, session)
    if kind == "order":
        return _order(action, reference_id, session)
    return Outcome(False, f"session {session.id} has an unknown kind {kind!r}")


def _topup(action: str, topup_id: uuid.UUID, session: CheckoutSession) -> Outcome:
    from wallets import topups
    from wallets.models import TopUp

    if not TopUp.objects.filter(pk=topup_id).exists():
        return Outcome(False, f"no top-up {topup_id}")
    if action == SUCCEEDED:
        topup = topups.topup_payment_succeeded(
            topup_id=topup_id,
            session_id=session.id,
            payment_intent_id=session.payment_intent_id,
            amount=session.amount_total,
            currency=session.currency,
        )
    elif action == FAILED:
        topup = topups.topup_payment_failed(topup_id=topup_id, session_id=session.id)
    else:
        topup = topups.topup_session_expired(topup_id=topup_id, session_id=session.id)
    return _applied("topup", topup, action, refund=partial(topups.topup_refund_unapplied_payment, topup_id=topup_id))


def _order(action: str, order_id: uuid.UUID, session: CheckoutSession) -> Outcome:
    from orders import services
    from orders.models import Order

    if not Order.objects.filter(pk=order_id).exists():
        return Outcome(False, f"no order {order_id}")
    if action == SUCCEEDED:
        order = services.order_gateway_payment_succeeded(
            order_id=order_id, session_id=session.id, payment_intent_id=session.payment_intent_id
        )
    elif action == FAILED:
        order = services.order_gateway_payment_failed(order_id=order_id, reason="The card payment failed.")
    else:
        order = services.order_gateway_session_expired(order_id=order_id)
    return _applied("order", order, action, refund=partial(services.order_refund_unapplied_payment, order_id=order_id))


def _applied(kind: str, target, action: str, *, refund: Callable[[], Any]) -> Outcome:
    """The outcome of an event applied to a top-up or an order (`target`, as its service
    returned it under its row lock). A payment it could not apply left it
    `refund_required`: the Stripe `refund` is then run by the caller after the commit, with
    no lock held, and the event is PROCESSED only once it succeeded."""
    if target.refund_required:
        note = f"{kind} {target.pk} {action}: now {target.status}, payment not applied: refunding"
        return Outcome(True, note, [refund])
    return Outcome(True, f"{kind} {target.pk} {action}: now {target.status}")
