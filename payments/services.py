"""Every write on card payments: a Checkout payment from its session to its refund.

Callers (orders, top-ups, the webhook dispatcher, the sweeps, the admin) go through these;
what a payment pays for moves through the hooks it registered (`payments.hooks`).

- One transaction shape: each change is `atomic_with_retry` around `_lock(payment_id)`
  (`SELECT ... FOR UPDATE` of the payment), then the owner's hook (which locks its own
  row), then `_change`, the one place a payment's status or refund status changes. Lock
  order, everywhere: payment -> owner (order / top-up) -> product -> wallets.
- Stripe is never called while a lock is held: the services that call it do so between
  their transactions.
- Paid means paid to the cent: a paid session applies only if its id, amount and
  currency are the ones we created (`_mismatch`); otherwise nothing is credited and the
  payment is refunded.
- Refunds never pay twice (docs/decisions/0001-card-refunds.md): money goes back to the
  merchant only when Stripe says, to the one process allowed to ask it at that moment (the
  refund lease), that no refund exists for the payment. The lease is a fence: an attempt's
  outcome is written only while its token (`refund_attempt`) is still the payment's, so a
  holder that was taken over writes nothing. An unknown outcome leaves the refund PENDING,
  the money held, for a retry or the sweep.
"""

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from enum import StrEnum

from django.conf import settings
from django.db import connection, transaction
from django.db.transaction import TransactionManagementError
from django.utils import timezone

from accounts.models import User
from paymentflow.api.exceptions import ApplicationError
from paymentflow.db import atomic_with_retry
from payments import gateway
from payments.exceptions import PaymentNotRefundable, RefundInProgress, TooManyPendingCheckouts
from payments.hooks import CheckoutLine, hooks_for, registered_kinds
from payments.models import CheckoutPayment

logger = logging.getLogger("paymentflow.payments")

Status = CheckoutPayment.Status
RefundStatus = CheckoutPayment.RefundStatus

#: Sessions live CHECKOUT_EXPIRES_MINUTES plus this margin, so the request that creates one
#: is never refused for landing a few seconds under Stripe's 30 minutes.
CHECKOUT_EXPIRY_MARGIN = timedelta(minutes=1)

EXPIRED_REASON = "The checkout session expired unpaid."
PAYMENT_FAILED_REASON = "The card payment failed."
SESSION_NOT_CREATED_REASON = "The payment gateway could not create the checkout session."


class Closed(StrEnum):
    """How a PENDING payment ended when its session was closed (`payment_close`)."""

    EXPIRED = "expired"  # released: nothing was paid
    FAILED = "failed"  # the delayed payment failed: released
    PAID = "paid"  # paid meanwhile, and applied
    PAID_NOT_APPLIED = "paid_not_applied"  # paid meanwhile, could not be applied: refunded
    PROCESSING = "processing"  # a delayed payment is still on its way: left PENDING
    SETTLED = "settled"  # it was no longer PENDING


@dataclass(frozen=True)
class SessionOutcome:
    """What a Checkout Session's event did to its payment (for the webhook's record)."""

    payment: CheckoutPayment | None
    note: str
    #: Why the event was refused (its session, amount or currency is not ours): recorded
    #: FAILED with this reason, and what Stripe took refunded.
    rejected: str = ""

    @property
    def refund_due(self) -> bool:
        """A payment that was never applied must go back to the card (after the commit)."""
        p = self.payment
        return p is not None and p.refund_in_progress and p.status != Status.SUCCEEDED


# --- the one transaction shape -------------------------------------------------------------


def _lock(payment_id) -> CheckoutPayment:
    return CheckoutPayment.objects.select_for_update().get(pk=payment_id)


def _change(payment: CheckoutPayment, **fields) -> CheckoutPayment:
    """The one place a (locked) payment changes: checks `status` and `refund_status` against
    their maps, then writes the given columns."""
    if "status" in fields and fields["status"] != payment.status:
        allowed = CheckoutPayment.ALLOWED_TRANSITIONS.get(payment.status, frozenset())
        if fields["status"] not in allowed:
            raise ValueError(f"A payment cannot go from {payment.status} to {fields['status']}.")
    if "refund_status" in fields and fields["refund_status"] != payment.refund_status:
        allowed = CheckoutPayment.ALLOWED_REFUND_TRANSITIONS.get(payment.refund_status, frozenset())
        if fields["refund_status"] not in allowed:
            raise ValueError(f"A refund cannot go from {payment.refund_status} to {fields['refund_status']}.")
    fields["updated_at"] = timezone.now()
    for name, value in fields.items():
        setattr(payment, name, value)
    payment.save(update_fields=list(fields))
    return payment


def _refund_fields(*, now=None) -> dict:
    """A refund that starts (PENDING, no money held by this step itself)."""
    return {"refund_status": RefundStatus.PENDING, "refund_requested_at": now or timezone.now()}


def _flag(payment: CheckoutPayment, reason: str) -> CheckoutPayment:
    logger.error("Card payment %s needs staff: %s", payment.pk, reason)
    return _change(payment, needs_attention=True, attention_reason=reason[:500])


# --- creating a checkout --------------------------------------------------------------------


def payment_create(*, kind: str, payer: User, amount: Decimal, currency: str) -> CheckoutPayment:
    """A PENDING payment, in the caller's transaction (the one that writes the order or the
    top-up), refused with 409 TOO_MANY_PENDING_CHECKOUTS when the payer already holds
    MAX_PENDING_CHECKOUTS open ones (card orders and top-ups together). The payer's row is
    locked for that count (`FOR NO KEY UPDATE`: nothing else waits on it), so concurrent
    checkouts of one payer are counted one after the other."""
    if not connection.in_atomic_block:
        raise TransactionManagementError("payment_create runs in the transaction that writes what it pays for.")
    hooks_for(kind)  # a kind nobody registered would never be applied
    now = timezone.now()
    list(User.objects.select_for_update(no_key=True).filter(pk=payer.pk).values_list("pk", flat=True))
    open_checkouts = CheckoutPayment.objects.filter(payer=payer, status=Status.PENDING, expires_at__gt=now).count()
    if open_checkouts >= settings.MAX_PENDING_CHECKOUTS:
        raise TooManyPendingCheckouts(limit=settings.MAX_PENDING_CHECKOUTS)
    expires_at = now + timedelta(minutes=settings.CHECKOUT_EXPIRES_MINUTES) + CHECKOUT_EXPIRY_MARGIN
    return CheckoutPayment.objects.create(
        kind=kind, payer=payer, amount=amount, currency=currency, expires_at=expires_at
    )


def payment_open_session(
    *, payment: CheckoutPayment, reference_id: str, name: str, unit_amount: Decimal, quantity: int
) -> CheckoutPayment:
    """Create the payment's Checkout Session (no transaction open: Stripe is called) and
    record it. The idempotency key `checkout-<payment id>` and the stored `expires_at` make
    a retried creation find the same session. A GatewayError fails the payment, releases
    what it pays for (`released` hook) and is re-raised (502).

    The payment may be ended while Stripe creates the session (the buyer's cancel): that
    wins. The session is still recorded, since it is ours (a payment through it would be
    a late one, refunded), but not its URL, and it is expired at Stripe at once. `payment`
    is updated in place; its `status` tells the caller whether it is still open."""
    line = CheckoutLine(payment.pk, reference_id, name, unit_amount, quantity)
    try:
        session = _create_session(payment, line)
    except gateway.GatewayError:
        if payment_release(payment_id=payment.pk, status=Status.FAILED, reason=SESSION_NOT_CREATED_REASON):
            raise
        payment.refresh_from_db()  # ended meanwhile (cancelled): that is the answer, not the 502
        return payment
    _record_session(payment=payment, session=session)
    if payment.status != Status.PENDING:
        _expire_unwanted_session(payment)
    return payment


def _create_session(payment: CheckoutPayment, line: CheckoutLine) -> gateway.CheckoutSession:
    """The one request that creates a payment's session, so that a replay (the same key and
    the same parameters) gets Stripe's first answer back (`payment_claim_lost_session`)."""
    return gateway.create_checkout_session(
        kind=payment.kind,
        reference_id=line.reference_id,
        name=line.name,
        unit_amount=line.unit_amount,
        quantity=line.quantity,
        currency=payment.currency,
        customer_email=payment.payer.email,
        idempotency_key=f"checkout-{payment.pk}",
        expires_at=payment.expires_at,
    )


@atomic_with_retry
def _record_session(*, payment: CheckoutPayment, session: gateway.CheckoutSession) -> bool:
    """Under the payment lock: the session id (unless another is recorded: False); its URL
    only while the payment is open. `payment` gets the row's state."""
    locked = _lock(payment.pk)
    recorded = locked.stripe_session_id in (None, session.id)
    if recorded:
        fields = {"stripe_session_id": session.id}
        if locked.status == Status.PENDING:
            fields["checkout_url"] = session.url
        _change(locked, **fields)
    for name in ("status", "stripe_session_id", "checkout_url", "updated_at"):
        setattr(payment, name, getattr(locked, name))
    return recorded


def _expire_unwanted_session(payment: CheckoutPayment) -> None:
    """Expire the session of a payment that ended while Stripe created it (no lock held).
    Its URL was never given out; if Stripe cannot be asked now, it expires by itself."""
    try:
        session = gateway.expire_checkout_session(session_id=payment.stripe_session_id)
    except gateway.GatewayError as exc:
        logger.warning(
            "Could not expire session %s of ended card payment %s (%s); it expires at %s",
            payment.stripe_session_id,
            payment.pk,
            exc.stripe_code or exc.http_status,
            payment.expires_at,
        )
        return
    if session.is_paid:  # cannot happen without its URL; if it did, it is a late payment
        _apply_paid(payment_id=payment.pk, session=session)


# --- what Stripe says about a session ---------------------------------------------------------


def same_money(payment: CheckoutPayment, session: gateway.CheckoutSession) -> bool:
    """The session charges what the payment is: its amount, in its currency."""
    return session.amount_total == payment.amount and (session.currency or "").upper() == payment.currency.upper()


def _mismatch(payment: CheckoutPayment, session: gateway.CheckoutSession) -> str:
    """Why a paid session is not this payment ("" when it is: id, amount and currency)."""
    if session.id != payment.stripe_session_id:
        return f"session {session.id} is not {payment.stripe_session_id}, the one created for this payment"
    if session.amount_total != payment.amount:
        return f"session {session.id} paid an amount of {session.amount_total}, not {payment.amount}"
    if (session.currency or "").upper() != payment.currency.upper():
        return f"session {session.id} was paid in {session.currency}, not {payment.currency}"
    return ""


@atomic_with_retry
def payment_paid(*, payment_id, session: gateway.CheckoutSession) -> SessionOutcome:
    """The payment's session was paid (checkout.session.completed with payment_status paid,
    async_payment_succeeded, or what the sweep read at Stripe). Database only.

    - PENDING, and the session is exactly ours: the owner applies it (`paid` hook) ->
      SUCCEEDED; if the owner cannot (a locked merchant wallet...), it released itself and
      the payment is FAILED with its refund PENDING.
    - PENDING, but another amount or currency: nothing is applied; the owner is released,
      the payment FAILED, its refund PENDING, and the outcome `rejected`.
    - FAILED / EXPIRED (a late payment: the stock is gone): refund PENDING.
    - SUCCEEDED, or a refund already decided: nothing (a duplicate).

    A refund left PENDING here (`SessionOutcome.refund_due`) is then made, with no lock
    held, by `payment_refund_resume`.
    """
    payment = _lock(payment_id)
    rejected = _mismatch(payment, session)
    if payment.status == Status.SUCCEEDED or payment.refund_status is not None:
        return SessionOutcome(payment, f"{payment.kind} payment already {payment.status}", rejected=rejected)
    now = timezone.now()
    fields = {"stripe_payment_intent_id": payment.stripe_payment_intent_id or session.payment_intent_id}
    if not fields["stripe_payment_intent_id"]:
        return SessionOutcome(payment, "", rejected=f"paid session {session.id} carries no payment intent")
    hooks = hooks_for(payment.kind)
    if payment.status == Status.PENDING:
        reason = f"Paid, but refused: {rejected}." if rejected else None
        if reason is None:
            reason = hooks.paid(payment)
            if reason is None:
                payment = _change(payment, status=Status.SUCCEEDED, paid_at=now, **fields)
                return SessionOutcome(payment, f"{payment.kind} payment succeeded")
        else:
            hooks.released(_change(payment, status=Status.FAILED, **fields), reason)
        logger.warning("Card payment %s was paid but not applied (%s): refunding it", payment.pk, reason)
        payment = _change(payment, status=Status.FAILED, **fields, **_refund_fields(now=now))
        return SessionOutcome(payment, f"{payment.kind} payment not applied: refunding", rejected=rejected)
    logger.warning("Late payment of %s card payment %s: refunding it", payment.status, payment.pk)
    payment = _change(payment, **fields, **_refund_fields(now=now))
    return SessionOutcome(payment, f"late payment of a {payment.status} {payment.kind}: refunding", rejected=rejected)


@atomic_with_retry
def payment_release(*, payment_id, status: str, reason: str) -> bool:
    """PENDING -> FAILED or EXPIRED, the owner released with `reason`. False (and nothing
    changes) when the payment had already left PENDING."""
    payment = _lock(payment_id)
    if payment.status != Status.PENDING:
        return False
    hooks_for(payment.kind).released(_change(payment, status=status), reason)
    return True


# --- closing a session: the buyer's cancel and the expiry sweep --------------------------------


def payment_close(*, payment: CheckoutPayment, reason: str) -> Closed:
    """End a PENDING payment (as read, unlocked): expire its session at Stripe (no lock
    held), then settle what Stripe answers under the payment's lock. Raises GatewayError /
    GatewayNotConfigured when Stripe cannot be asked, or would not expire the session (the
    payment stays PENDING)."""
    if payment.status != Status.PENDING:
        return Closed.SETTLED
    if not payment.stripe_session_id:  # no session was recorded: nothing to expire at Stripe
        return (
            Closed.EXPIRED
            if payment_release(payment_id=payment.pk, status=Status.EXPIRED, reason=reason)
            else (Closed.SETTLED)
        )
    session = gateway.expire_checkout_session(session_id=payment.stripe_session_id)
    if session.status == "expired":
        released = payment_release(payment_id=payment.pk, status=Status.EXPIRED, reason=reason)
        return Closed.EXPIRED if released else Closed.SETTLED
    if session.status != "complete":
        raise gateway.GatewayError(f"Stripe did not expire checkout session {session.id} (status {session.status}).")
    if not session.is_paid:
        # Complete but unpaid: a delayed payment. Its PaymentIntent says how it ended, so a
        # lost `async_payment_failed` event does not leave the payment PENDING for ever.
        intent = gateway.retrieve_payment_intent(payment_intent_id=session.payment_intent_id)
        if intent.status in ("requires_payment_method", "canceled"):
            released = payment_release(payment_id=payment.pk, status=Status.FAILED, reason=PAYMENT_FAILED_REASON)
            return Closed.FAILED if released else Closed.SETTLED
        if intent.status != "succeeded":
            return Closed.PROCESSING
    outcome = _apply_paid(payment_id=payment.pk, session=session)
    return Closed.PAID if outcome.payment.status == Status.SUCCEEDED else Closed.PAID_NOT_APPLIED


def _apply_paid(*, payment_id, session: gateway.CheckoutSession) -> SessionOutcome:
    """A paid session applied (`payment_paid`), and what Stripe took refunded if it is due."""
    outcome = payment_paid(payment_id=payment_id, session=session)
    if outcome.refund_due:
        _refund_now_or_later(outcome.payment)
    return outcome


def _refund_now_or_later(payment: CheckoutPayment) -> None:
    """Refund an unapplied payment now; if Stripe fails, it stays PENDING for the paid
    session's webhook (which Stripe delivers, and retries) or the refund sweep."""
    try:
        payment_refund_resume(payment_id=payment.pk, busy_ok=True)
    except ApplicationError as exc:
        logger.warning("Refund of card payment %s left for later: %s", payment.pk, exc.message)


# --- refunds ------------------------------------------------------------------------------------


class _LeaseLost(Exception):
    """The attempt's refund lease was taken over: its outcome is not this attempt's to write."""

    def __init__(self, payment: CheckoutPayment):
        super().__init__(payment.pk)
        self.payment = payment


def refund_lease() -> timedelta:
    """How long a refund attempt holds the payment before another may start: REFUND_LEASE_SECONDS,
    longer than the attempt may talk to Stripe (paymentflow.timeouts.refund_lease_seconds)."""
    return timedelta(seconds=settings.REFUND_LEASE_SECONDS)


def _lease_is_held(payment: CheckoutPayment, now) -> bool:
    started = payment.refund_attempt_started_at
    return started is not None and now - started < refund_lease()


def _new_lease(payment: CheckoutPayment, now) -> dict:
    """The fields of a lease taken now: its start, and its token (the next attempt number)."""
    return {"refund_attempt_started_at": now, "refund_attempt": payment.refund_attempt + 1}


def _holds_lease(payment: CheckoutPayment, lease: int) -> bool:
    """Attempt `lease` is still the payment's current one, and nobody ended it (a refund
    settled without us clears the lease): an expired lease that nobody took is still held."""
    return payment.refund_attempt == lease and payment.refund_attempt_started_at is not None


@atomic_with_retry
def _begin_refund(*, payment_id, reason: str) -> CheckoutPayment:
    """Under the payment lock: the owner's money is held (once) and the lease taken."""
    payment = _lock(payment_id)
    now = timezone.now()
    if payment.status != Status.SUCCEEDED or payment.refund_status == RefundStatus.SUCCEEDED:
        raise PaymentNotRefundable()
    if not payment.stripe_payment_intent_id:  # nothing Stripe could refund: checked before anything is held
        raise PaymentNotRefundable("This card payment has no recorded payment intent to refund.")
    if _lease_is_held(payment, now):
        raise RefundInProgress()
    fields = {}
    if payment.refund_status is None:
        hold = hooks_for(payment.kind).hold_refund
        if hold is None:
            raise PaymentNotRefundable(f"A {payment.kind} payment cannot be refunded here.")
        hold(payment, reason)  # INSUFFICIENT_FUNDS, WALLET_LOCKED...: everything rolls back
        fields = _refund_fields(now=now)
    return _change(payment, **_new_lease(payment, now), **fields)


@atomic_with_retry
def _take_lease(*, payment_id) -> CheckoutPayment | None:
    payment = _lock(payment_id)
    now = timezone.now()
    if not payment.refund_in_progress or _lease_is_held(payment, now):
        return None
    return _change(payment, **_new_lease(payment, now))


def payment_refund(*, payment_id, reason: str = "") -> CheckoutPayment:
    """Refund a SUCCEEDED payment in full (a merchant's refund of a card order).

    1. One transaction: the owner holds the money back (`hold_refund`: the merchant debited;
       INSUFFICIENT_FUNDS changes nothing, Stripe is not called), refund PENDING, lease taken.
       A refund already PENDING is resumed; one being made right now is 409.
    2. No lock held: `_refund_at_stripe`.
    Raises GatewayError (502) when the outcome is unknown (the refund stays PENDING, the
    money held) or Stripe refused and no refund exists (the money went back).
    """
    if not gateway.is_configured():
        raise gateway.GatewayNotConfigured()  # before holding anything
    return _refund_at_stripe(_begin_refund(payment_id=payment_id, reason=reason))


def payment_refund_resume(*, payment_id, busy_ok: bool = False) -> CheckoutPayment:
    """Make a PENDING refund (an unapplied payment's, or one whose outcome is unknown) at
    Stripe. A refund being made right now by someone else: RefundInProgress, or, with
    `busy_ok`, the payment as it is (that attempt, or the sweep, settles it)."""
    if not gateway.is_configured():
        raise gateway.GatewayNotConfigured()  # before the lease is taken
    payment = _take_lease(payment_id=payment_id)
    if payment is None:
        current = CheckoutPayment.objects.get(pk=payment_id)
        if current.refund_in_progress and not busy_ok:
            raise RefundInProgress()
        return current
    return _refund_at_stripe(payment, busy_ok=busy_ok)


def _refund_at_stripe(payment: CheckoutPayment, *, busy_ok: bool = False) -> CheckoutPayment:
    """Holding the lease (`payment.refund_attempt`, as just taken), no lock: ask Stripe to
    refund all it took for the payment.

    The idempotency key `refund-<payment id>` makes a retry within Stripe's 24 hours return
    the first refund. Beyond them, or when Stripe refuses for any reason, Stripe is asked
    what refunds exist for the payment before anything is decided (`_settle_refunds`): a
    refund already made finishes ours; none at all gives the merchant's money back.

    If the lease was taken over meanwhile (this attempt outlived it), nothing is written:
    the payment as it now is is returned when its refund is done (or with `busy_ok`),
    otherwise RefundInProgress (the other attempt, or the sweep, settles it).
    """
    lease = payment.refund_attempt
    try:
        # All of the attempt's Stripe calls fit in one call's time (within the request's
        # deadline, if any), so the lease, derived from it, outlasts them.
        with gateway.deadline(gateway.longest_call_seconds()):
            return _ask_stripe_to_refund(payment, lease)
    except _LeaseLost as lost:
        current = lost.payment
        logger.warning(
            "Refund attempt %s of card payment %s was taken over (now attempt %s): it writes nothing",
            lease,
            payment.pk,
            current.refund_attempt,
        )
        if busy_ok or current.refund_status == RefundStatus.SUCCEEDED:
            return current
        raise RefundInProgress() from None


def _ask_stripe_to_refund(payment: CheckoutPayment, lease: int) -> CheckoutPayment:
    try:
        refund = gateway.create_refund(  # no amount: all that is left (what was paid, to the cent, once)
            payment_intent_id=payment.stripe_payment_intent_id,
            idempotency_key=f"refund-{payment.pk}",
            reason="requested_by_customer",
            metadata={"payment_id": str(payment.pk), "kind": payment.kind},
        )
    except gateway.GatewayError as refused:
        if refused.transient:  # the outcome is unknown: keep the hold, retry later
            _end_attempt(payment_id=payment.pk, lease=lease)
            raise
        try:
            refunds = gateway.list_refunds(payment_intent_id=payment.stripe_payment_intent_id)
            paid = _paid_at_stripe(payment)
        except gateway.GatewayError:
            _end_attempt(payment_id=payment.pk, lease=lease)
            raise refused from None
        payment = _settle_refunds(payment_id=payment.pk, refunds=refunds, paid=paid, lease=lease, refused=refused)
        if payment.refund_status != RefundStatus.SUCCEEDED:
            raise refused from None
        return payment
    return _settle_refunds(payment_id=payment.pk, refunds=[refund], paid=refund.amount, lease=lease)


@atomic_with_retry
def _end_attempt(*, payment_id, lease: int) -> None:
    """Give the lease back (the outcome is unknown), if it is still this attempt's."""
    payment = _lock(payment_id)
    if _holds_lease(payment, lease):
        _change(payment, refund_attempt_started_at=None)


def payment_refund_sync(*, payment_id) -> CheckoutPayment:
    """Ask Stripe which refunds exist for the payment (no lock held) and apply them: a
    refund made at Stripe without us (an event, the sweep, staff's "settle") refunds the
    owner, or is flagged for staff when the owner cannot cover it."""
    payment = CheckoutPayment.objects.get(pk=payment_id)
    if not payment.stripe_payment_intent_id:
        return payment
    refunds = gateway.list_refunds(payment_intent_id=payment.stripe_payment_intent_id)
    return _settle_refunds(payment_id=payment_id, refunds=refunds, paid=_paid_at_stripe(payment))


def _paid_at_stripe(payment: CheckoutPayment) -> Decimal:
    """What Stripe took: the payment's amount once applied (checked to the cent), else what
    its PaymentIntent received (a refused payment may have paid another amount)."""
    if payment.status == Status.SUCCEEDED:
        return payment.amount
    return gateway.retrieve_payment_intent(payment_intent_id=payment.stripe_payment_intent_id).amount_received


@atomic_with_retry
def _settle_refunds(
    *,
    payment_id,
    refunds: Iterable[gateway.Refund],
    paid: Decimal,
    lease: int | None = None,
    refused: gateway.GatewayError | None = None,
) -> CheckoutPayment:
    """Apply what Stripe says was refunded of the `paid` amount of the payment, under its lock.

    `lease`: the caller's attempt holds the refund lease with this token, and has just asked
    Stripe for a refund of all that was left, which was made (`refunds` is that refund), or
    `refused`. If the lease is no longer the caller's (taken over, or ended by a refund
    settled meanwhile), nothing is written: `_LeaseLost`. Only the lease holder, after a
    refusal, may conclude that no refund exists (no other attempt can be in flight): then
    the held money goes back to the owner. Anyone else who finds no refund changes nothing.
    """
    payment = _lock(payment_id)
    if lease is not None and not _holds_lease(payment, lease):
        raise _LeaseLost(payment)
    attempted = lease is not None and refused is None
    made = [r for r in refunds if r.is_made and r.payment_intent_id in (None, payment.stripe_payment_intent_id)]
    refunded = sum((r.amount for r in made), Decimal("0.00"))
    now = timezone.now()
    fields = {"refund_attempt_started_at": None} if lease is not None else {}
    hooks = hooks_for(payment.kind)
    if payment.refund_status == RefundStatus.SUCCEEDED and refunded < paid:
        # A refund we recorded that Stripe no longer counts (it failed, or was canceled, later):
        # the buyer may not have the money. Never dropped: staff decide.
        states = ", ".join(f"{r.id} {r.status}" for r in refunds) or "none"
        if not payment.needs_attention:
            return _flag(payment, f"Refund {payment.stripe_refund_id} was recorded, but Stripe shows: {states}.")
        return payment
    if refunded >= paid and refunded > 0:
        if payment.refund_status == RefundStatus.SUCCEEDED:
            return _change(payment, **fields) if fields else payment
        ours = next((r for r in made if r.metadata.get("payment_id") == str(payment.pk)), made[0])
        done = {
            "refund_status": RefundStatus.SUCCEEDED,
            "stripe_refund_id": ours.id,
            "refunded_at": now,
            "refund_attempt_started_at": None,
            "needs_attention": False,
            "attention_reason": "",
        }
        if payment.refund_status is None:
            done["refund_requested_at"] = now
        if payment.status == Status.SUCCEEDED:
            try:
                with transaction.atomic():
                    hooks.refunded(payment, payment.refund_in_progress)
            except ApplicationError as exc:  # a refund made without us that the owner cannot cover
                return _flag(_change(payment, **fields), f"Stripe refunded {refunded} ({ours.id}), but: {exc.message}")
        logger.info("Card payment %s refunded at Stripe: %s", payment.pk, ours.id)
        return _change(payment, **done)
    if refunded > 0:
        ids = ", ".join(r.id for r in made)
        return _flag(_change(payment, **fields), f"Stripe refunded {refunded} of {paid} ({ids}).")
    if refused is not None and payment.refund_in_progress:
        if payment.status != Status.SUCCEEDED:  # nothing was applied, so nothing to give back
            return _flag(_change(payment, **fields), f"Stripe refuses to refund this payment ({refused.stripe_code}).")
        try:
            with transaction.atomic():
                hooks.release_refund(payment)
        except ApplicationError as exc:
            return _flag(
                _change(payment, **fields), f"Stripe refused the refund, and giving it back failed: {exc.message}"
            )
        logger.warning("Stripe refused to refund card payment %s and holds no refund: hold released", payment.pk)
        return _change(payment, refund_status=None, refund_requested_at=None, **fields)
    if attempted and payment.refund_in_progress:
        return _flag(_change(payment, **fields), f"Stripe's refund is {', '.join(r.status or '?' for r in refunds)}.")
    return _change(payment, **fields) if fields else payment


# --- sessions we never recorded: foreign, or ours with the create's answer lost -----------------


def lost_session_line(session: gateway.CheckoutSession) -> CheckoutLine | str:
    """Could this session, recorded on none of our payments, be one our creation made whose
    answer never reached us (a timeout, a lost connection, a process killed)? Database only.

    Its line when it could: its metadata names an owner of a kind we registered, its
    `client_reference_id` is that same id (we always send both), the owner's payment has
    no session recorded (Stripe makes one session per idempotency key, so a payment that
    has one never made another), and the amount and currency are the payment's. Otherwise
    why it is not ours (a str): another integration's, the Dashboard's, a copy of our
    metadata. Even a line is no proof: only Stripe's replay of our create is
    (`payment_claim_lost_session`)."""
    kind, reference = session.metadata.get("kind"), session.metadata.get("reference_id")
    if kind not in registered_kinds() or not reference:
        return "its metadata names nothing of ours"
    if session.client_reference_id != reference:
        return f"its client_reference_id is not the {kind} {reference} its metadata names"
    lookup = hooks_for(kind).checkout_line
    line = lookup(reference) if lookup else None
    if line is None:
        return f"we have no {kind} {reference}"
    payment = CheckoutPayment.objects.get(pk=line.payment_id)
    if payment.stripe_session_id is not None:
        return f"{kind} {reference} has its own session, {payment.stripe_session_id}"
    if not same_money(payment, session):
        paid = f"{session.amount_total} {(session.currency or '').upper()}"
        return f"{kind} {reference} is {payment.amount} {payment.currency}, not {paid}"
    return line


def payment_claim_lost_session(*, line: CheckoutLine, session: gateway.CheckoutSession) -> SessionOutcome | None:
    """Ask Stripe whether a paid session that `lost_session_line` found possible is ours: our
    create is sent again, with the same key and parameters (`_create_session`), and within
    its 24 hours Stripe replays the session it made for it. Ours: recorded on the payment
    and applied as its paid session (`payment_paid`: a late payment is refunded, key
    `refund-<payment id>`); the outcome. Anything else (another session, or Stripe refusing
    the replay: parameters changed since, the key forgotten): not proven ours, None, and
    nothing is refunded by us. No lock held; a transient GatewayError is raised (ask
    again later)."""
    payment = CheckoutPayment.objects.select_related("payer").get(pk=line.payment_id)
    if payment.stripe_session_id not in (None, session.id):
        return None
    if payment.stripe_session_id is None:  # else claimed meanwhile (another event of the session)
        try:
            replayed = _create_session(payment, line)
        except gateway.GatewayError as exc:
            if exc.transient:
                raise
            logger.warning("Session %s names payment %s; Stripe refused the replay: not ours", session.id, payment.pk)
            return None
        if replayed.id != session.id:
            # Our key made another session (maybe just now, if the first create never reached
            # Stripe): that one is ours; it is recorded and, if the payment ended, expired.
            if _record_session(payment=payment, session=replayed) and payment.status != Status.PENDING:
                _expire_unwanted_session(payment)
            return None
        if not _record_session(payment=payment, session=session):
            return None
    logger.warning("Session %s of card payment %s was ours (its create's answer was lost)", session.id, payment.pk)
    outcome = payment_paid(payment_id=payment.pk, session=session)
    if outcome.refund_due:
        payment_refund_resume(payment_id=payment.pk, busy_ok=True)
    return outcome


def payment_settle_flagged(*, payment_id, staff_user=None) -> CheckoutPayment:
    """Staff's "settle": a refund in progress is made again; otherwise Stripe is asked what
    it refunded and that is applied. Clears the flag when it settles, naming `staff_user`
    (`settled_by`)."""
    payment = CheckoutPayment.objects.get(pk=payment_id)
    if payment.refund_in_progress:
        payment = payment_refund_resume(payment_id=payment_id)
    else:
        payment = payment_refund_sync(payment_id=payment_id)
    if staff_user is not None and not payment.needs_attention:
        CheckoutPayment.objects.filter(pk=payment_id).update(settled_by=staff_user)
        payment.settled_by = staff_user
    return payment
