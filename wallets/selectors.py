"""Reads of wallets and the ledger."""

from decimal import Decimal

from django.db.models import QuerySet, Sum

from accounts.models import User
from wallets.models import LedgerEntry, SystemAccount, TopUp, Wallet


def money(value) -> Decimal:
    """An amount read back from the database, as money (two places). SQLite returns sums
    and annotations without the column's scale ("-1000", "-120.400000000000"); the API
    and the back office both show balances through this."""
    return (value or Decimal("0")).quantize(Decimal("0.01"))


def ledger_entries_for(*, user: User) -> QuerySet[LedgerEntry]:
    """The user's wallet history, newest first (by the wallet's own sequence), with the
    journal joined in (reference and description) so a page is one query."""
    return (
        LedgerEntry.objects.filter(wallet__user=user, wallet__kind=Wallet.Kind.USER)
        .select_related("journal")
        .order_by("-sequence")
    )


def wallet_balance(*, wallet: Wallet) -> Decimal:
    """A wallet's balance: the running column for a user wallet, the sum of legs for a
    system account (which keeps no running balance, so it is never a hot row)."""
    if not wallet.is_system:
        return wallet.balance
    return money(wallet.entries.aggregate(total=Sum("delta"))["total"])


def system_wallet_balances() -> dict[str, Decimal]:
    """Every system account's derived balance, by code (zero for one never used)."""
    rows = (
        LedgerEntry.objects.filter(wallet__kind=Wallet.Kind.SYSTEM)
        .values("wallet__code")
        .annotate(total=Sum("delta"))
        .order_by()
    )
    balances = {code.value: Decimal("0.00") for code in SystemAccount}
    balances.update({row["wallet__code"]: money(row["total"]) for row in rows})
    return balances


def topups_for(*, user: User) -> QuerySet[TopUp]:
    """The user's card top-ups, newest first, their card payment joined (one query per page)."""
    return TopUp.objects.filter(user=user).select_related("payment").order_by("-created_at", "-pk")
