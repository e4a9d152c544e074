"""Every write on wallets and the ledger. Other apps move money only through these.

Each movement is one `JournalEntry` whose legs sum to zero, posted by `_post` under one
rule: lock, then check, then write.

- Lock: the user wallets involved are locked with `SELECT ... FOR UPDATE`, always in
  primary-key order, so two movements touching the same two wallets never deadlock.
  System accounts are never locked and never updated: their legs carry no running
  balance, and their balance is the sum of their legs, so concurrent deposits from many
  users do not queue on one `external:deposits` row.
- Check: locked, and enough funds, on the row just locked (nobody can change it now).
- Write: the balance moves with an `F()` expression (`balance = balance + delta`), the
  legs record the before/after the lock guarantees, plus the next per-wallet `sequence`.
  The `CheckConstraint(balance >= 0)` is the last line of defence.

Every service runs in `atomic_with_retry`: on its own it is one transaction retried on
deadlock / serialization failure; called inside a caller's `transaction.atomic` (an order
purchase that already locked its product row) it joins that transaction as a savepoint.
"""

from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.db.models import F
from django.utils import timezone

from accounts.models import User
from paymentflow.db import atomic_with_retry
from wallets.exceptions import (
    DirectDepositsDisabled,
    InsufficientFunds,
    InvalidDepositAmount,
    InvalidTransfer,
    InvalidWithdrawalAmount,
    WalletLocked,
)
from wallets.models import JournalEntry, LedgerEntry, SystemAccount, Wallet

CENT = Decimal("0.01")


@dataclass(frozen=True)
class Leg:
    """One side of a movement: `delta` is signed (+credit / -debit), never zero."""

    wallet_id: object
    type: str
    delta: Decimal


@dataclass(frozen=True)
class Movement:
    """What a service returns: the journal entry, and per user wallet its leg and fresh state."""

    journal: JournalEntry
    legs: dict  # wallet id -> LedgerEntry (user wallets only)
    wallets: dict  # wallet id -> Wallet as it is after the movement (user wallets only)

    def leg_for(self, wallet: Wallet) -> LedgerEntry:
        return self.legs[wallet.pk]

    def wallet_for(self, wallet: Wallet) -> Wallet:
        return self.wallets[wallet.pk]


# --- wallets --------------------------------------------------------------------------------


def wallet_create(*, user: User) -> Wallet:
    """The user's wallet; called by `accounts.services.user_register` in its transaction."""
    return Wallet.objects.create(user=user, kind=Wallet.Kind.USER, currency=settings.CURRENCY)


def wallet_get_or_create(*, user: User) -> Wallet:
    """The user's wallet, created on first use for users made outside registration (staff)."""
    wallet, _ = Wallet.objects.get_or_create(
        user=user, defaults={"kind": Wallet.Kind.USER, "currency": settings.CURRENCY}
    )
    return wallet


def system_wallet(code: SystemAccount | str) -> Wallet:
    """A system account, created on first use (concurrent first uses are safe: unique code)."""
    wallet, _ = Wallet.objects.get_or_create(
        code=str(code), defaults={"kind": Wallet.Kind.SYSTEM, "currency": settings.CURRENCY}
    )
    return wallet


def wallet_set_locked(*, wallet_ids, locked: bool) -> int:
    """Staff lock / unlock: a locked wallet refuses every debit and credit (403 WALLET_LOCKED)."""
    return (
        Wallet.objects.filter(pk__in=list(wallet_ids), kind=Wallet.Kind.USER)
        .exclude(is_locked=locked)
        .update(is_locked=locked, updated_at=timezone.now())
    )


# --- money movements ------------------------------------------------------------------------


def _require_amount(amount: Decimal, error_class) -> Decimal:
    if not isinstance(amount, Decimal) or not amount.is_finite() or amount <= 0 or amount != amount.quantize(CENT):
        raise error_class("The amount must be a positive amount with at most two decimal places.")
    return amount


def wallet_direct_deposit(*, wallet: Wallet, amount: Decimal, description: str = "") -> Movement:
    """`POST /wallet/deposit`: a deposit the user asks for, unless the operator turned it off."""
    if not settings.WALLET_DIRECT_DEPOSITS:
        raise DirectDepositsDisabled()
    return wallet_deposit(wallet=wallet, amount=amount, description=description)


def wallet_deposit(
    *,
    wallet: Wallet,
    amount: Decimal,
    description: str = "",
    source: SystemAccount = SystemAccount.EXTERNAL_DEPOSITS,
    reference_type: str | None = None,
    reference_id: str | None = None,
) -> Movement:
    """Credit `wallet` with money entering the platform from `source` (a DEPOSIT).

    Stripe top-ups call this with `source=SystemAccount.STRIPE_CLEARING` and a reference.
    """
    _require_amount(amount, InvalidDepositAmount)
    if amount > settings.MAXIMUM_DEPOSIT:
        raise InvalidDepositAmount(f"The maximum deposit is {settings.MAXIMUM_DEPOSIT:.2f}.")
    return _post(
        legs=[
            Leg(wallet.pk, LedgerEntry.Type.DEPOSIT, amount),
            Leg(system_wallet(source).pk, LedgerEntry.Type.DEPOSIT, -amount),
        ],
        description=description or "Deposit",
        reference_type=reference_type,
        reference_id=reference_id,
    )


def wallet_withdraw(
    *,
    wallet: Wallet,
    amount: Decimal,
    description: str = "",
    reference_type: str | None = None,
    reference_id: str | None = None,
) -> Movement:
    """Debit `wallet`: money leaves the platform to `external:withdrawals` (a WITHDRAWAL)."""
    _require_amount(amount, InvalidWithdrawalAmount)
    if amount < settings.MINIMUM_WITHDRAWAL:
        raise InvalidWithdrawalAmount(f"The minimum withdrawal is {settings.MINIMUM_WITHDRAWAL:.2f}.")
    return _post(
        legs=[
            Leg(wallet.pk, LedgerEntry.Type.WITHDRAWAL, -amount),
            Leg(system_wallet(SystemAccount.EXTERNAL_WITHDRAWALS).pk, LedgerEntry.Type.WITHDRAWAL, amount),
        ],
        description=description or "Withdrawal",
        reference_type=reference_type,
        reference_id=reference_id,
    )


def wallet_transfer(
    *,
    source: Wallet,
    destination: Wallet,
    amount: Decimal,
    source_type: str = LedgerEntry.Type.PAYMENT,
    destination_type: str = LedgerEntry.Type.REVENUE,
    reference_type: str | None = None,
    reference_id: str | None = None,
    description: str = "",
) -> Movement:
    """Move `amount` from one user wallet to another in one journal entry.

    A wallet purchase: `source=buyer, destination=merchant` (PAYMENT / REVENUE, reference
    `("order", order.id)`); its refund: `source=merchant, destination=buyer` with both
    types REFUND. Both wallets are locked in primary-key order.
    """
    _require_amount(amount, InvalidTransfer)
    if source.pk == destination.pk:
        raise InvalidTransfer("A wallet cannot transfer to itself.")
    return _post(
        legs=[Leg(source.pk, source_type, -amount), Leg(destination.pk, destination_type, amount)],
        description=description,
        reference_type=reference_type,
        reference_id=reference_id,
        user_wallets_only=True,
    )


def wallet_settle(
    *,
    wallet: Wallet,
    account: SystemAccount,
    delta: Decimal,
    type: str,  # noqa: A002 - the ledger's field name
    reference_type: str | None = None,
    reference_id: str | None = None,
    description: str = "",
) -> Movement:
    """Credit (`delta > 0`) or debit (`delta < 0`) a user wallet against a system account,
    with the given ledger `type` on both legs, in one journal entry.

    Card payments settle through `stripe:clearing`: a paid gateway order credits the
    merchant `REVENUE` (delta +amount), its refund debits it back (`REFUND`, delta -amount;
    INSUFFICIENT_FUNDS when the merchant is short). Refuses a locked wallet.
    """
    if not isinstance(delta, Decimal) or delta == 0:
        raise InvalidTransfer("A settlement is a non-zero amount with at most two decimal places.")
    _require_amount(abs(delta), InvalidTransfer)
    return _post(
        legs=[Leg(wallet.pk, type, delta), Leg(system_wallet(account).pk, type, -delta)],
        description=description,
        reference_type=reference_type,
        reference_id=reference_id,
    )


def wallet_adjust(*, wallet: Wallet, amount: Decimal, reason: str, staff_user: User) -> Movement:
    """A staff correction (ADJUSTMENT), signed: +credit / -debit, against `platform:adjustments`.

    Records who posted it and why. Never makes the balance negative (INSUFFICIENT_FUNDS).
    Allowed on a locked wallet: correcting a frozen account is exactly what staff do.
    """
    if not isinstance(amount, Decimal) or not amount.is_finite() or amount == 0 or amount != amount.quantize(CENT):
        raise InvalidTransfer("An adjustment is a non-zero amount with at most two decimal places.")
    if not reason or not reason.strip():
        raise InvalidTransfer("An adjustment needs a reason.")
    if not (staff_user and staff_user.is_staff):
        raise InvalidTransfer("Only staff can post an adjustment.")
    return _post(
        legs=[
            Leg(wallet.pk, LedgerEntry.Type.ADJUSTMENT, amount),
            Leg(system_wallet(SystemAccount.ADJUSTMENTS).pk, LedgerEntry.Type.ADJUSTMENT, -amount),
        ],
        description=reason.strip()[:255],
        reference_type="adjustment",
        created_by=staff_user,
        allow_locked=True,
    )


@atomic_with_retry
def _post(
    *,
    legs: list[Leg],
    description: str = "",
    reference_type: str | None = None,
    reference_id: str | None = None,
    created_by: User | None = None,
    allow_locked: bool = False,
    user_wallets_only: bool = False,
) -> Movement:
    """Post one balanced journal entry: lock the user wallets (pk order), check, write."""
    assert sum(leg.delta for leg in legs) == 0, "a journal entry's legs must sum to zero"
    assert all(leg.delta != 0 for leg in legs)

    wallet_ids = [leg.wallet_id for leg in legs]
    assert len(set(wallet_ids)) == len(wallet_ids), "one leg per wallet"
    # User wallets are locked, in primary-key order (the ORDER BY runs before the row locks).
    # System accounts are neither locked nor updated: their legs carry no running balance.
    locked = {
        w.pk: w
        for w in Wallet.objects.select_for_update().filter(pk__in=wallet_ids, kind=Wallet.Kind.USER).order_by("pk")
    }
    if user_wallets_only and len(locked) != len(wallet_ids):
        raise InvalidTransfer("A transfer moves money between two user wallets.")

    # Check everything before writing anything.
    for wallet in locked.values():
        if wallet.is_locked and not allow_locked:
            raise WalletLocked()
    for leg in legs:
        wallet = locked.get(leg.wallet_id)
        if wallet is not None and wallet.balance + leg.delta < 0:
            raise InsufficientFunds(required=-leg.delta, available=wallet.balance, currency=wallet.currency)

    journal = JournalEntry.objects.create(
        reference_type=reference_type,
        reference_id=None if reference_id is None else str(reference_id),
        description=description,
        created_by=created_by,
    )
    now = timezone.now()
    entries, user_legs = [], {}
    for leg in legs:
        wallet = locked.get(leg.wallet_id)
        entry = LedgerEntry(
            journal=journal,
            wallet_id=leg.wallet_id,
            type=leg.type,
            amount=abs(leg.delta),
            delta=leg.delta,
            currency=settings.CURRENCY if wallet is None else wallet.currency,
        )
        if wallet is not None:
            # The row is locked: what we read is what the database holds until we commit.
            entry.sequence = wallet.last_sequence + 1
            entry.balance_before = wallet.balance
            entry.balance_after = wallet.balance + leg.delta
            Wallet.objects.filter(pk=wallet.pk).update(
                balance=F("balance") + leg.delta, last_sequence=F("last_sequence") + 1, updated_at=now
            )
            wallet.balance, wallet.last_sequence, wallet.updated_at = entry.balance_after, entry.sequence, now
            user_legs[wallet.pk] = entry
        entries.append(entry)
    LedgerEntry.objects.bulk_create(entries)
    return Movement(journal=journal, legs=user_legs, wallets=locked)
