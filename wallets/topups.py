"""Wallet top-ups by card (Stripe Checkout): every write on `TopUp`, in one place.

`wallets.services` moves money; this module drives a top-up through its states and calls
`wallets.services.wallet_deposit` for the one credit. The webhook dispatcher
(`webhooks.dispatch`) calls the three `topup_*` event services; the API calls
`topup_create`.

- `topup_create`: the PENDING top-up is written first (committed before Stripe is called
  when the request runs in autocommit), then the Checkout Session is created with no row
  lock held, with the idempotency key `topup-<id>` and an `expires_at` computed once and
  stored, so a retried creation finds the same session. A Stripe failure marks the top-up
  FAILED and answers 502.
- `topup_payment_succeeded`: under the top-up's row lock, PENDING -> COMPLETED and one
  DEPOSIT from `stripe:clearing` (reference ("topup", id)). Called again (a duplicate or a
  second event for the same session) it is a no-op.
- A paid session that cannot be credited is refunded, never credited twice and never kept:
  the wallet was locked by staff after the top-up was created (a locked wallet refuses
  every credit), the deposit limit was lowered meanwhile, or the top-up was no longer
  PENDING. The decision (`refund_required`) is taken under the lock; the Stripe refund
  itself (`topup_refund_unapplied_payment`) is made afterwards with no lock held, with the
  idempotency key `topup-refund-<id>`, so retrying it never refunds twice.
- `topup_expire` (`manage.py expire_pending_topups`, for when Stripe's
  `checkout.session.expired` never arrives): the session is expired at Stripe with no lock
  held, then the outcome goes through the webhook services above: expired ->
  `topup_session_expired`, paid -> `topup_payment_succeeded` (credited once), a delayed
  payment still processing -> left PENDING.
"""

import logging
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import User
from paymentflow.api.exceptions import ApplicationError
from payments import gateway
from wallets.exceptions import InvalidDepositAmount, WalletLocked
from wallets.models import SystemAccount, TopUp
from wallets.services import _require_amount, wallet_deposit, wallet_get_or_create

logger = logging.getLogger("paymentflow.topups")

REFERENCE_TYPE = "topup"
CHECKOUT_ITEM_NAME = "Wallet top-up"


class TopUpPaymentMismatch(Exception):
    """A paid session does not match its top-up (other session, amount or currency).

    Not an `ApplicationError`: it is never a client's fault. The webhook is answered 500
    and the event kept FAILED for staff to look at; nothing is credited.
    """


def topup_checkout_idempotency_key(topup: TopUp) -> str:
    return f"topup-{topup.pk}"


def topup_refund_idempotency_key(topup: TopUp) -> str:
    return f"topup-refund-{topup.pk}"


# --- creation -------------------------------------------------------------------------------


def topup_create(*, user: User, amount: Decimal) -> TopUp:
    """`POST /wallet/top-ups`: a PENDING top-up with an open Checkout Session.

    Raises GatewayNotConfigured (503), InvalidDepositAmount (400), WalletLocked (403), or
    GatewayError (502, the top-up is then FAILED).
    """
    if not gateway.is_configured():
        raise gateway.GatewayNotConfigured()
    _require_amount(amount, InvalidDepositAmount)
    if amount > settings.MAXIMUM_DEPOSIT:
        raise InvalidDepositAmount(f"The maximum deposit is {settings.MAXIMUM_DEPOSIT:.2f}.")
    wallet = wallet_get_or_create(user=user)
    if wallet.is_locked:
        raise WalletLocked()

    expires_at = timezone.now() + timedelta(minutes=settings.CHECKOUT_EXPIRES_MINUTES)
    topup = TopUp.objects.create(
        user=user,
        wallet=wallet,
        amount=amount,
        currency=wallet.currency,
        checkout_expires_at=expires_at,
    )
    try:
        session = gateway.create_checkout_session(
            reference_id=str(topup.pk),
            kind="topup",
            name=CHECKOUT_ITEM_NAME,
            unit_amount=amount,
            quantity=1,
            currency=topup.currency,
            customer_email=user.email,
            idempotency_key=topup_checkout_idempotency_key(topup),
            expires_at=expires_at,
        )
    except gateway.GatewayError:
        TopUp.objects.filter(pk=topup.pk, status=TopUp.Status.PENDING).update(
            status=TopUp.Status.FAILED,
            failure_reason="The payment gateway could not create the checkout session.",
            updated_at=timezone.now(),
        )
        raise
    # A webhook may already have moved it on (it cannot be paid before we return the URL,
    # but it can expire); record the session whatever the status.
    TopUp.objects.filter(pk=topup.pk).update(
        stripe_session_id=session.id, checkout_url=session.url or "", updated_at=timezone.now()
    )
    topup.refresh_from_db()
    return topup


# --- webhook events ---------------------------------------------------------------------------


def _locked_topup(topup_id) -> TopUp:
    return TopUp.objects.select_for_update().get(pk=topup_id)


def _check_session(topup: TopUp, session_id: str) -> None:
    if topup.stripe_session_id and topup.stripe_session_id != session_id:
        raise TopUpPaymentMismatch(f"top-up {topup.pk} belongs to session {topup.stripe_session_id}, not {session_id}")


@transaction.atomic
def topup_payment_succeeded(
    *,
    topup_id,
    session_id: str,
    payment_intent_id: str | None,
    amount: Decimal | None = None,
    currency: str | None = None,
) -> TopUp:
    """The session was paid: credit the wallet once, or mark the payment for a refund.

    `amount` / `currency` (the session's `amount_total` and `currency`), when given, must
    match the top-up, else `TopUpPaymentMismatch` and nothing changes.
    """
    topup = _locked_topup(topup_id)
    _check_session(topup, session_id)
    if amount is not None and amount != topup.amount:
        raise TopUpPaymentMismatch(f"top-up {topup.pk} is {topup.amount} but session {session_id} paid {amount}")
    if currency is not None and currency.upper() != topup.currency.upper():
        raise TopUpPaymentMismatch(f"top-up {topup.pk} is in {topup.currency} but session paid in {currency}")

    if topup.status == TopUp.Status.COMPLETED or topup.refund_required or topup.stripe_refund_id:
        return topup  # already credited, or already being refunded: a duplicate
    now = timezone.now()
    topup.stripe_session_id = session_id
    topup.stripe_payment_intent_id = payment_intent_id or topup.stripe_payment_intent_id
    if topup.status == TopUp.Status.PENDING:
        try:
            wallet_deposit(
                wallet=topup.wallet,
                amount=topup.amount,
                description=CHECKOUT_ITEM_NAME + " by card",
                source=SystemAccount.STRIPE_CLEARING,
                reference_type=REFERENCE_TYPE,
                reference_id=str(topup.pk),
            )
        except (WalletLocked, InvalidDepositAmount) as exc:
            # Rolled back to wallet_deposit's savepoint; the top-up row is still locked.
            logger.warning("top-up %s paid but not creditable (%s): refunding", topup.pk, exc.code)
            topup.status = TopUp.Status.FAILED
            topup.failure_reason = f"Paid but not credited ({exc.code}); the payment is refunded."
            topup.refund_required = True
        else:
            topup.status = TopUp.Status.COMPLETED
            topup.completed_at = now
            topup.failure_reason = ""
    else:  # FAILED or EXPIRED, yet paid: the money goes back to the card
        logger.warning("top-up %s is %s but its session %s was paid: refunding", topup.pk, topup.status, session_id)
        topup.failure_reason = f"Paid after the top-up was {topup.status.lower()}; the payment is refunded."
        topup.refund_required = True
    topup.save()
    return topup


@transaction.atomic
def topup_payment_failed(*, topup_id, session_id: str | None = None, reason: str = "The payment failed.") -> TopUp:
    """An asynchronous payment failed: a PENDING top-up becomes FAILED (else a no-op)."""
    topup = _locked_topup(topup_id)
    if session_id:
        _check_session(topup, session_id)
    if topup.status == TopUp.Status.PENDING:
        topup.status = TopUp.Status.FAILED
        topup.failure_reason = reason[:255]
        topup.save(update_fields=["status", "failure_reason", "updated_at"])
    return topup


@transaction.atomic
def topup_session_expired(*, topup_id, session_id: str | None = None) -> TopUp:
    """The Checkout Session expired unpaid: a PENDING top-up becomes EXPIRED (else a no-op)."""
    topup = _locked_topup(topup_id)
    if session_id:
        _check_session(topup, session_id)
    if topup.status == TopUp.Status.PENDING:
        topup.status = TopUp.Status.EXPIRED
        topup.failure_reason = "The checkout session expired unpaid."
        topup.save(update_fields=["status", "failure_reason", "updated_at"])
    return topup


def topup_refund_unapplied_payment(*, topup_id) -> TopUp:
    """Refund through Stripe a payment that was not credited (`refund_required`).

    Call with no transaction open: Stripe is called with no lock held. Safe to repeat and
    to run twice at once: the refund's idempotency key is derived from the top-up, and
    the refund id is recorded under the row lock. Raises GatewayError when Stripe fails
    (the top-up stays `refund_required`; a retry refunds it).
    """
    topup = TopUp.objects.get(pk=topup_id)
    if not topup.refund_required or topup.stripe_refund_id:
        return topup
    if not topup.stripe_payment_intent_id:
        raise ApplicationError(f"Top-up {topup.pk} needs a refund but has no payment intent.")
    refund = gateway.create_refund(
        payment_intent_id=topup.stripe_payment_intent_id,
        idempotency_key=topup_refund_idempotency_key(topup),
        metadata={"kind": REFERENCE_TYPE, "reference_id": str(topup.pk)},
    )
    with transaction.atomic():
        topup = _locked_topup(topup_id)
        if topup.refund_required and not topup.stripe_refund_id:
            topup.refund_required = False
            topup.stripe_refund_id = refund.id
            topup.save(update_fields=["refund_required", "stripe_refund_id", "updated_at"])
            logger.info("top-up %s: refunded payment %s (%s)", topup.pk, topup.stripe_payment_intent_id, refund.id)
    return topup


# --- expiry (the sweep for lost `checkout.session.expired` events) --------------------------


def pending_topups_to_expire(*, now=None) -> list:
    """Ids of PENDING top-ups whose Checkout Session's `expires_at` has passed (oldest first)."""
    return list(
        TopUp.objects.filter(status=TopUp.Status.PENDING, checkout_expires_at__lt=now or timezone.now())
        .order_by("checkout_expires_at")
        .values_list("pk", flat=True)
    )


def topup_expire(*, topup_id) -> TopUp:
    """Settle one PENDING top-up whose session should be over, as its webhooks would have.

    Call with no transaction open. The session is expired at Stripe first, with no lock
    held; what Stripe answers is then applied by the webhook services, each of which
    re-checks the top-up under its row lock (so two sweeps at once, or a sweep and a
    webhook, settle it once):

    - expired (by us, or already) -> `topup_session_expired`: EXPIRED;
    - complete and paid -> `topup_payment_succeeded`: COMPLETED and credited once (or
      `refund_required`, refunded here with no lock held; if that refund fails, the paid
      session's webhook finishes it);
    - complete, delayed payment still processing -> left PENDING (its async webhook settles it);
    - still open (Stripe would not expire it) -> left PENDING, GatewayError.

    A top-up no longer PENDING is returned unchanged. Raises GatewayError /
    GatewayNotConfigured when Stripe cannot be asked (the top-up stays PENDING), and
    TopUpPaymentMismatch when the paid session does not match the top-up.
    """
    topup = TopUp.objects.get(pk=topup_id)
    if topup.status != TopUp.Status.PENDING:
        return topup
    if not topup.stripe_session_id:
        # Never got a session recorded: nothing to expire at Stripe. Should one exist and be
        # paid, its webhook finds the top-up EXPIRED and refunds the payment.
        return topup_session_expired(topup_id=topup.pk)
    session = gateway.expire_checkout_session(session_id=topup.stripe_session_id)
    if session.status == "expired":
        return topup_session_expired(topup_id=topup.pk, session_id=session.id)
    if session.status != "complete":
        raise gateway.GatewayError(f"Stripe did not expire checkout session {session.id} (status {session.status}).")
    if not session.is_paid:
        logger.info("top-up %s: session %s complete, payment processing: left PENDING", topup.pk, session.id)
        return TopUp.objects.get(pk=topup.pk)  # as it is now (a webhook may have settled it)
    topup = topup_payment_succeeded(
        topup_id=topup.pk,
        session_id=session.id,
        payment_intent_id=session.payment_intent_id,
        amount=session.amount_total,
        currency=session.currency,
    )
    if topup.refund_required:
        try:
            topup = topup_refund_unapplied_payment(topup_id=topup.pk)
        except gateway.GatewayError as exc:
            logger.warning(
                "top-up %s: refunding the uncredited payment failed (%s); left to the webhook", topup.pk, exc
            )
    return topup
