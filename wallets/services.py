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
A caller that locked the wallets itself (`wallets_lock_for_users`, one statement for both
wallets of a purchase) passes them on (`wallet_transfer(locked_by_caller=True)`): no
second lock, no savepoint.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.transaction import TransactionManagementError
from django.utils import timezone

from accounts.models import User
from paymentflow import metrics, sql
from paymentflow.db import atomic_with_retry
from wallets.exceptions import (
    BalanceLimitExceeded,
    DirectDepositsDisabled,
    InsufficientFunds,
    InvalidDepositAmount,
    InvalidTransfer,
    InvalidWithdrawalAmount,
    WalletLocked,
)
from wallets.models import JournalEntry, LedgerEntry, StaffNote, SystemAccount, Wallet

CENT = Decimal("0.01")
#: The most a balance column (Decimal(14, 2)) holds.
MAX_BALANCE = Decimal("999999999999.99")


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
    """The user's wallet; made when `accounts` says a user registered (`wallets.receivers`),
    in the registration's transaction."""
    return Wallet.objects.create(user=user, kind=Wallet.Kind.USER, currency=settings.CURRENCY)


def wallet_get_or_create(*, user: User) -> Wallet:
    """The user's wallet, created on first use for users made outside registration (staff)."""
    wallet, _ = Wallet.objects.get_or_create(
        user=user, defaults={"kind": Wallet.Kind.USER, "currency": settings.CURRENCY}
    )
    return wallet


#: `wallets_lock_for_users`, written out (paymentflow/sql.py says why). The ORDER BY runs
#: before the row locks, so every transaction locks the wallets in primary-key order.
_LOCK_USER_WALLETS_SQL = "SELECT {columns} FROM wallets_wallet WHERE user_id IN ({users}) AND kind = %s ORDER BY id"


def wallets_lock_for_users(*user_ids) -> dict:
    """{user id: Wallet} for these users' wallets, locked `SELECT ... FOR UPDATE` in
    primary-key order, in one statement. Call inside a transaction; the locks last until it
    ends. A missing wallet (a user made outside registration) is created, then locked.

    Pass the wallets on with `locked_by_caller=True` (`wallet_transfer`): they are not
    read and locked a second time.
    """
    statement = _LOCK_USER_WALLETS_SQL.format(columns=sql.columns(Wallet), users=", ".join(["%s"] * len(user_ids)))
    if connection.features.has_select_for_update:
        statement += " FOR UPDATE"
    user_pk = Wallet._meta.get_field("user").target_field
    params = [*(user_pk.get_db_prep_value(user_id, connection) for user_id in user_ids), Wallet.Kind.USER.value]
    for _ in range(2):
        with connection.cursor() as cursor:
            cursor.execute(statement, params)
            found = {wallet.user_id: wallet for wallet in (sql.load(Wallet, row) for row in cursor.fetchall())}
        missing = [user_id for user_id in user_ids if user_id not in found]
        if not missing:
            return found
        for user_id in missing:
            wallet_get_or_create(user=User(pk=user_id))
    raise AssertionError("unreachable: the missing wallets were just created")  # pragma: no cover


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
    locked_by_caller: bool = False,
    written_with: Sequence[sql.Statement] = (),
) -> Movement:
    """Move `amount` from one user wallet to another in one journal entry.

    A wallet purchase: `source=buyer, destination=merchant` (PAYMENT / REVENUE, reference
    `("order", order.id)`); its refund: `source=merchant, destination=buyer` with both
    types REFUND. Both wallets are locked in primary-key order.

    `locked_by_caller=True`: the caller already locked both in its open transaction
    (`wallets_lock_for_users`) and passes those very instances; the transfer then checks
    and writes in that transaction, without locking again and without a savepoint (see
    `_post`): a refusal raised by it leaves nothing written, any later error dooms the
    caller's transaction, as a purchase or a refund wants.

    `written_with`: statements of the caller's own tables that must commit with this
    entry (the purchase's order row), built by the caller's app and sent in the same
    statement as the entry's writes (`paymentflow.sql.execute_together`), after the
    checks: one round trip fewer while the caller holds its locks.
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
        locked={source.pk: source, destination.pk: destination} if locked_by_caller else None,
        written_with=written_with,
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


@atomic_with_retry
def wallet_adjust(
    *, wallet: Wallet, amount: Decimal, description: str, internal_note: str, staff_user: User
) -> Movement:
    """A staff correction (ADJUSTMENT), signed: +credit / -debit, against `platform:adjustments`.

    `description` is what the customer sees on the transaction; `internal_note` (why, for
    staff) is recorded beside it (`StaffNote`, same transaction) and never shown to the
    customer. Records who posted it. Never makes the balance negative (INSUFFICIENT_FUNDS).
    Allowed on a locked wallet: correcting a frozen account is exactly what staff do.
    """
    if not isinstance(amount, Decimal) or not amount.is_finite() or amount == 0 or amount != amount.quantize(CENT):
        raise InvalidTransfer("An adjustment is a non-zero amount with at most two decimal places.")
    if not (description or "").strip() or not (internal_note or "").strip():
        raise InvalidTransfer("An adjustment needs a description for the customer and an internal note.")
    if not (staff_user and staff_user.is_staff):
        raise InvalidTransfer("Only staff can post an adjustment.")
    movement = _post(
        legs=[
            Leg(wallet.pk, LedgerEntry.Type.ADJUSTMENT, amount),
            Leg(system_wallet(SystemAccount.ADJUSTMENTS).pk, LedgerEntry.Type.ADJUSTMENT, -amount),
        ],
        description=description.strip()[:255],
        reference_type="adjustment",
        created_by=staff_user,
        allow_locked=True,
    )
    StaffNote.objects.create(journal=movement.journal, note=internal_note.strip(), created_by=staff_user)
    return movement


def _post(
    *,
    legs: list[Leg],
    description: str = "",
    reference_type: str | None = None,
    reference_id: str | None = None,
    created_by: User | None = None,
    allow_locked: bool = False,
    user_wallets_only: bool = False,
    locked: dict | None = None,
    written_with: Sequence[sql.Statement] = (),
) -> Movement:
    """Post one balanced journal entry: lock the user wallets (pk order), check, write.

    `locked`: {wallet id: Wallet} the caller already locked in its open transaction (every
    user wallet of the legs). Then nothing is locked again and no savepoint is opened: the
    checks raise before anything is written, and the writes join the caller's transaction.
    """
    # Guards of the ledger's shape: explicit, so that they hold under `python -O` too.
    if sum(leg.delta for leg in legs) != 0 or any(leg.delta == 0 for leg in legs):
        raise ValueError("a journal entry's legs are non-zero and sum to zero")
    wallet_ids = [leg.wallet_id for leg in legs]
    if len(set(wallet_ids)) != len(wallet_ids):
        raise ValueError("a journal entry has one leg per wallet")
    entry = {
        "legs": legs,
        "description": description,
        "reference_type": reference_type,
        "reference_id": reference_id,
        "created_by": created_by,
        "written_with": written_with,
    }
    if locked is None:
        return _lock_and_post(**entry, allow_locked=allow_locked, user_wallets_only=user_wallets_only)
    if not connection.in_atomic_block:
        raise TransactionManagementError("Wallets locked by the caller need the caller's transaction.")
    _check(legs, locked, allow_locked=allow_locked, user_wallets_only=user_wallets_only)
    with transaction.atomic(savepoint=False):
        return _write(**entry, locked=locked)


@atomic_with_retry
def _lock_and_post(*, legs: list[Leg], allow_locked: bool, user_wallets_only: bool, **entry) -> Movement:
    """`_post` on its own: one transaction (a savepoint inside a caller's) that locks the
    user wallets, checks and writes; a refusal leaves nothing behind, not even the locks."""
    # User wallets are locked, in primary-key order (the ORDER BY runs before the row locks).
    # System accounts are neither locked nor updated: their legs carry no running balance.
    locked = {
        w.pk: w
        for w in Wallet.objects.select_for_update()
        .filter(pk__in=[leg.wallet_id for leg in legs], kind=Wallet.Kind.USER)
        .order_by("pk")
    }
    _check(legs, locked, allow_locked=allow_locked, user_wallets_only=user_wallets_only)
    return _write(legs=legs, locked=locked, **entry)


def _check(legs: list[Leg], locked: dict, *, allow_locked: bool, user_wallets_only: bool) -> None:
    """Everything is checked before anything is written, on rows locked by this transaction."""
    if user_wallets_only and (len(locked) != len(legs) or any(w.kind != Wallet.Kind.USER for w in locked.values())):
        raise InvalidTransfer("A transfer moves money between two user wallets.")
    for wallet in locked.values():
        if wallet.is_locked and not allow_locked:
            raise WalletLocked()
    for leg in legs:
        wallet = locked.get(leg.wallet_id)
        if wallet is not None and wallet.balance + leg.delta < 0:
            raise InsufficientFunds(required=-leg.delta, available=wallet.balance, currency=wallet.currency)
        if wallet is not None and wallet.balance + leg.delta > MAX_BALANCE:  # beyond the money column
            raise BalanceLimitExceeded(maximum=MAX_BALANCE)


def _write(
    *,
    legs: list[Leg],
    locked: dict,
    description: str,
    reference_type: str | None,
    reference_id: str | None,
    created_by: User | None,
    written_with: Sequence[sql.Statement],
) -> Movement:
    """The journal entry, its legs and every user wallet's new balance (and the caller's
    `written_with`), in one statement (`paymentflow.sql.execute_together`): the legs'
    before/after and sequences are computed here from the locked rows, the balances move
    in the database."""
    now = timezone.now()  # after the locks: a wallet's legs are in time order as in sequence order
    journal = JournalEntry(
        reference_type=reference_type,
        reference_id=None if reference_id is None else str(reference_id),
        description=description,
        created_by=created_by,
        created_at=now,
    )
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
            created_at=now,
        )
        if wallet is not None:
            # The row is locked: what we read is what the database holds until we commit.
            entry.sequence = wallet.last_sequence + 1
            entry.balance_before = wallet.balance
            entry.balance_after = wallet.balance + leg.delta
            user_legs[wallet.pk] = entry
        entries.append(entry)
    statements = [*written_with, sql.insert(journal), sql.insert(*entries)]
    if user_legs:
        statements.append(_move_balances(user_legs, now))  # last: its row count is checked
    written = sql.execute_together(statements)
    if written != (len(user_legs) or len(entries)):
        raise DatabaseError(f"Journal {journal.pk}: {written} rows written where the locks promised more.")
    for wallet_id, entry in user_legs.items():
        wallet = locked[wallet_id]
        wallet.balance, wallet.last_sequence, wallet.updated_at = entry.balance_after, entry.sequence, now
    metrics.ledger_legs_written((entry.type, entry.amount) for entry in user_legs.values())
    return Movement(journal=journal, legs=user_legs, wallets=locked)


#: `_move_balances`: one UPDATE for every user wallet of an entry. The ORM can say it too
#: (`update(balance=F("balance") + Case(When(pk=..., then=...), ...))`), but building that
#: expression costs as much Python as two UPDATEs, so this one statement, on the hottest
#: path of every movement, is written out (portable SQL).
_MOVE_BALANCES_SQL = """
    UPDATE wallets_wallet
       SET balance = balance + CASE id {cases} END,
           last_sequence = last_sequence + 1,
           updated_at = %s
     WHERE id IN ({ids})
"""


def _move_balances(user_legs: dict, now) -> sql.Statement:
    """`balance = balance + delta` in the database (never a value computed here) and the
    next `last_sequence`, for every user wallet of the entry (all locked by this
    transaction): the statement, whose row count must be the number of wallets."""
    pk, balance, updated_at = (Wallet._meta.get_field(name) for name in ("id", "balance", "updated_at"))
    ids = [pk.get_db_prep_value(wallet_id, connection) for wallet_id in user_legs]
    deltas = [balance.get_db_prep_value(entry.delta, connection) for entry in user_legs.values()]
    statement = _MOVE_BALANCES_SQL.format(
        cases=" ".join(["WHEN %s THEN %s"] * len(ids)), ids=", ".join(["%s"] * len(ids))
    )
    params = [value for pair in zip(ids, deltas, strict=True) for value in pair]
    return statement, [*params, updated_at.get_db_prep_value(now, connection), *ids]
