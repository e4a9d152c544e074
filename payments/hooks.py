"""How `payments` tells what a payment pays for that the payment moved, without knowing it.

`payments` sits below `orders` and `wallets` and imports neither. Each kind of Checkout
payment registers its hooks once, from its app's `ready()`:

    payments.hooks.register("order", CheckoutHooks(paid=..., released=..., ...))

Every hook runs inside the payment's transaction, after `payments` locked the payment
row, so the lock order is always payment -> the owner's row -> the rows it locks (product,
wallets). A hook locks its own row, re-checks it, moves its own money and stock, and never
calls Stripe. A hook that refuses raises an `ApplicationError`; `payments` runs the ones
that may refuse in a savepoint, so a refusal leaves nothing of theirs behind.
"""

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from payments.models import CheckoutPayment

Hook = Callable[[CheckoutPayment], None]


@dataclass(frozen=True)
class CheckoutLine:
    """What a payment's Checkout Session is created for (`payment_open_session`): the owner's
    id (the session's `client_reference_id` and metadata `reference_id`) and its one line."""

    payment_id: object
    reference_id: str
    name: str
    unit_amount: Decimal
    quantity: int


@dataclass(frozen=True)
class CheckoutHooks:
    #: The payment succeeded at Stripe while PENDING: apply it (complete the order, credit
    #: the wallet). Returns None, or why it could not be applied, having then released
    #: itself (failed, stock back): the payment is refunded.
    paid: Callable[[CheckoutPayment], str | None]
    #: The payment will never succeed (`payment.status` FAILED or EXPIRED, `reason`): release.
    released: Callable[[CheckoutPayment, str], None]
    #: Stripe refunded an applied payment. `held`: the money was already taken back when the
    #: refund was asked for (`hold_refund`); otherwise (a refund made at Stripe without us)
    #: take it back now, or raise an ApplicationError saying whose wallet cannot cover it.
    refunded: Callable[[CheckoutPayment, bool], None]
    #: Before asking Stripe to refund an applied payment: take the money back (the merchant's
    #: revenue), or raise (INSUFFICIENT_FUNDS...). None: this kind cannot be refunded by us.
    hold_refund: Callable[[CheckoutPayment, str], None] | None = None
    #: Stripe says no refund exists after all: give the held money back.
    release_refund: Hook | None = None
    #: The line of the owner whose id is `reference_id` (what its session was created with),
    #: or None when there is no such owner: to ask Stripe whether a paid session we never
    #: recorded is the one our creation made (`payment_claim_lost_session`).
    checkout_line: Callable[[str], CheckoutLine | None] | None = None


_HOOKS: dict[str, CheckoutHooks] = {}
_clearing_balance: Callable[[], Decimal] | None = None


def register(kind: str, hooks: CheckoutHooks) -> None:
    if len(kind) > CheckoutPayment._meta.get_field("kind").max_length:
        raise ValueError(f"payment kind {kind!r} is too long")
    _HOOKS[kind] = hooks


def hooks_for(kind: str) -> CheckoutHooks:
    try:
        return _HOOKS[kind]
    except KeyError:
        raise LookupError(f"no hooks registered for payments of kind {kind!r}") from None


def registered_kinds() -> frozenset[str]:
    return frozenset(_HOOKS)


def register_clearing_balance(balance: Callable[[], Decimal]) -> None:
    """The ledger's balance of `stripe:clearing` (wallets registers it), for reconcile_stripe."""
    global _clearing_balance
    _clearing_balance = balance


def clearing_balance() -> Decimal:
    if _clearing_balance is None:
        raise LookupError("no ledger registered the stripe:clearing balance")
    return _clearing_balance()
