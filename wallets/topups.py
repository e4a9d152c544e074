"""Wallet top-ups by card (Stripe Checkout): every write on `TopUp`, in one place.

`payments` runs the Checkout payment (session, paid / failed / expired, refunds, expiry);
this module writes the top-up and its one credit, through the hooks it registers for
payments of kind "topup" (`TOPUP_HOOKS`, from `WalletsConfig.ready()`). Each hook runs in
the payment's transaction and locks the top-up row; none calls Stripe.

- `topup_create`: the PENDING top-up and its payment in one short transaction (at most
  MAX_PENDING_CHECKOUTS open checkouts per user: 409), then the Checkout Session with no
  lock held. Stripe failing: the top-up FAILED, 502.
- paid: PENDING -> COMPLETED and one DEPOSIT from `stripe:clearing` (reference
  ("topup", id)). A payment that cannot be credited (the wallet locked by staff meanwhile,
  the deposit limit lowered) fails the top-up instead and is refunded to the card by
  `payments`: a lock is usually a fraud or compliance freeze, and money goes back the way
  it came.
- failed / expired: PENDING -> FAILED / EXPIRED.
- refunded (a refund made at Stripe without us): the deposit is taken back (REFUND), or,
  when the wallet cannot cover it, `payments` flags the payment for staff.
"""

import logging
import uuid
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import User
from paymentflow.api.exceptions import ApplicationError
from payments import gateway
from payments import services as payments
from payments.hooks import CheckoutHooks, CheckoutLine
from payments.models import CheckoutPayment
from wallets.exceptions import InvalidDepositAmount, WalletLocked
from wallets.models import LedgerEntry, SystemAccount, TopUp
from wallets.services import _require_amount, wallet_deposit, wallet_get_or_create, wallet_settle

logger = logging.getLogger("paymentflow.topups")

REFERENCE_TYPE = "topup"
#: The card payments of top-ups (`payments.hooks`).
PAYMENT_KIND = "topup"
CHECKOUT_ITEM_NAME = "Wallet top-up"


def topup_create(*, user: User, amount: Decimal) -> TopUp:
    """`POST /wallet/top-ups`: a PENDING top-up with an open Checkout Session.

    Raises GatewayNotConfigured (503), InvalidDepositAmount (400), WalletLocked (403),
    TooManyPendingCheckouts (409), or GatewayError (502, the top-up is then FAILED).
    """
    if not gateway.is_configured():
        raise gateway.GatewayNotConfigured()
    _require_amount(amount, InvalidDepositAmount)
    if amount > settings.MAXIMUM_DEPOSIT:
        raise InvalidDepositAmount(f"The maximum deposit is {settings.MAXIMUM_DEPOSIT:.2f}.")
    wallet = wallet_get_or_create(user=user)
    if wallet.is_locked:
        raise WalletLocked()
    with transaction.atomic():
        payment = payments.payment_create(kind=PAYMENT_KIND, payer=user, amount=amount, currency=wallet.currency)
        topup = TopUp.objects.create(user=user, wallet=wallet, amount=amount, currency=wallet.currency, payment=payment)
    payments.payment_open_session(
        payment=payment, reference_id=str(topup.pk), name=CHECKOUT_ITEM_NAME, unit_amount=amount, quantity=1
    )
    return topup


# --- the hooks of its card payment ------------------------------------------------------------


def _locked_topup(payment: CheckoutPayment) -> TopUp:
    return TopUp.objects.select_for_update(of=("self",)).select_related("user").get(payment=payment)


def _set(topup: TopUp, **fields) -> None:
    fields["updated_at"] = timezone.now()
    for name, value in fields.items():
        setattr(topup, name, value)
    topup.save(update_fields=list(fields))


def _on_paid(payment: CheckoutPayment) -> str | None:
    topup = _locked_topup(payment)
    if topup.status != TopUp.Status.PENDING:
        return f"The top-up is {topup.status}."
    try:
        wallet_deposit(
            wallet=topup.wallet,
            amount=topup.amount,
            description=CHECKOUT_ITEM_NAME + " by card",
            source=SystemAccount.STRIPE_CLEARING,
            reference_type=REFERENCE_TYPE,
            reference_id=str(topup.pk),
        )
    except (WalletLocked, InvalidDepositAmount) as exc:  # rolled back to wallet_deposit's savepoint
        reason = f"Paid but not credited ({exc.code}); the payment is refunded."
        _set(topup, status=TopUp.Status.FAILED, failure_reason=reason)
        return reason
    _set(topup, status=TopUp.Status.COMPLETED, completed_at=timezone.now(), failure_reason="")
    return None


def _on_released(payment: CheckoutPayment, reason: str) -> None:
    topup = _locked_topup(payment)
    if topup.status == TopUp.Status.PENDING:
        to = TopUp.Status.FAILED if payment.status == CheckoutPayment.Status.FAILED else TopUp.Status.EXPIRED
        _set(topup, status=to, failure_reason=reason[:255])


def _on_refunded(payment: CheckoutPayment, held: bool) -> None:
    """A refund made at Stripe (top-ups are never refunded by us): the deposit back, from
    the wallet, or the refusal naming the wallet (the payment is then flagged for staff)."""
    topup = _locked_topup(payment)
    if topup.status == TopUp.Status.REFUNDED:
        return
    try:
        wallet_settle(
            wallet=topup.wallet,
            account=SystemAccount.STRIPE_CLEARING,
            delta=-topup.amount,
            type=LedgerEntry.Type.REFUND,
            reference_type=REFERENCE_TYPE,
            reference_id=str(topup.pk),
            description="Card top-up refunded",
        )
    except ApplicationError as exc:
        raise ApplicationError(f"The wallet of {topup.user.email} refused: {exc.message}") from exc
    _set(topup, status=TopUp.Status.REFUNDED)


def _checkout_line(reference_id: str) -> CheckoutLine | None:
    """The top-up `reference_id` as `topup_create` sent it to Stripe."""
    try:
        topup_id = uuid.UUID(reference_id)
    except ValueError:
        return None
    topup = TopUp.objects.filter(pk=topup_id, payment__isnull=False).first()
    if topup is None:
        return None
    return CheckoutLine(topup.payment_id, str(topup.pk), CHECKOUT_ITEM_NAME, topup.amount, 1)


TOPUP_HOOKS = CheckoutHooks(paid=_on_paid, released=_on_released, refunded=_on_refunded, checkout_line=_checkout_line)
