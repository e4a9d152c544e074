"""The ledger's invariants, as a list of checks that `manage.py reconcile_ledger` runs.

A check is a function `check(*, progress) -> list[Problem]`; register one with
`@reconciliation_check("name")`. Other apps add their own (orders: stock + units sold =
initial stock) by decorating a function in a module their AppConfig.ready() imports.

Every check reads with aggregate SQL, in batches of wallets, so a large ledger costs a few
scans, not a query per leg; `progress(done, total)` is called after each batch.
"""

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from django.db import connection
from django.db.models import Count, Q, Sum

from wallets.models import JournalEntry, LedgerEntry, SystemAccount, TopUp, Wallet

BATCH_SIZE = 1000
ZERO = Decimal("0.00")


@dataclass(frozen=True)
class Problem:
    check: str
    message: str
    wallet_id: str | None = None


Progress = Callable[[int, int], None]
CHECKS: list[tuple[str, Callable[..., list[Problem]]]] = []


def reconciliation_check(name: str):
    def register(func):
        CHECKS.append((name, func))
        return func

    return register


def _no_progress(done: int, total: int) -> None:
    pass


def _user_wallet_batches(progress: Progress):
    """User wallet ids in primary-key batches, reporting progress after each."""
    total = Wallet.objects.filter(kind=Wallet.Kind.USER).count()
    done, last_pk = 0, None
    while True:
        qs = Wallet.objects.filter(kind=Wallet.Kind.USER).order_by("pk")
        if last_pk is not None:
            qs = qs.filter(pk__gt=last_pk)
        batch = list(qs.values_list("pk", flat=True)[:BATCH_SIZE])
        if not batch:
            return
        yield batch
        done += len(batch)
        last_pk = batch[-1]
        progress(done, total)


@reconciliation_check("balances")
def check_balances(*, progress: Progress = _no_progress) -> list[Problem]:
    """Each user wallet's balance equals the sum of its legs; a system account keeps 0 in
    its (unused) balance column, its balance being the sum of its legs."""
    problems = []
    for batch in _user_wallet_batches(progress):
        rows = (
            Wallet.objects.filter(pk__in=batch)
            .annotate(legs_total=Sum("entries__delta"), legs=Count("entries"))
            .values_list("pk", "balance", "legs_total", "last_sequence", "legs")
        )
        for pk, balance, legs_total, last_sequence, legs in rows:
            legs_total = legs_total or ZERO
            if balance != legs_total:
                problems.append(
                    Problem("balances", f"wallet {pk}: balance {balance} != sum of its entries {legs_total}", str(pk))
                )
            if last_sequence != legs:
                problems.append(
                    Problem("balances", f"wallet {pk}: last_sequence {last_sequence} but {legs} entries", str(pk))
                )
    for pk, balance in Wallet.objects.filter(kind=Wallet.Kind.SYSTEM).exclude(balance=0).values_list("pk", "balance"):
        problems.append(Problem("balances", f"system wallet {pk}: balance column is {balance}, expected 0", str(pk)))
    return problems


_CHAIN_SQL = """
SELECT wallet_id, sequence, balance_before, prev_sequence, prev_after FROM (
    SELECT e.wallet_id, e.sequence, e.balance_before,
           LAG(e.sequence) OVER w AS prev_sequence,
           LAG(e.balance_after) OVER w AS prev_after
    FROM {legs} e
    WHERE e.wallet_id IN ({placeholders})
    WINDOW w AS (PARTITION BY e.wallet_id ORDER BY e.sequence)
) chain
WHERE (prev_sequence IS NULL AND (sequence <> 1 OR balance_before <> 0))
   OR (prev_sequence IS NOT NULL AND (sequence <> prev_sequence + 1 OR balance_before <> prev_after))
"""


@reconciliation_check("chains")
def check_chains(*, progress: Progress = _no_progress) -> list[Problem]:
    """Each user wallet's legs, in `sequence` order, run 1, 2, 3, ... from a zero balance,
    each leg's balance_before being the previous leg's balance_after."""
    problems = []
    misplaced = LedgerEntry.objects.filter(
        Q(wallet__kind=Wallet.Kind.USER, sequence__isnull=True)
        | Q(wallet__kind=Wallet.Kind.SYSTEM, sequence__isnull=False)
    ).values_list("wallet_id", "id")
    for wallet_id, leg_id in misplaced:
        message = f"wallet {wallet_id}: entry {leg_id} has the wrong kind of leg"
        problems.append(Problem("chains", message, str(wallet_id)))
    legs_table = connection.ops.quote_name(LedgerEntry._meta.db_table)
    for batch in _user_wallet_batches(progress):
        sql = _CHAIN_SQL.format(legs=legs_table, placeholders=", ".join(["%s"] * len(batch)))
        with connection.cursor() as cursor:
            cursor.execute(sql, [Wallet._meta.pk.get_db_prep_value(pk, connection) for pk in batch])
            for wallet_id, sequence, before, prev_sequence, prev_after in cursor.fetchall():
                problems.append(
                    Problem(
                        "chains",
                        f"wallet {Wallet._meta.pk.to_python(wallet_id)}: chain broken at sequence {sequence} "
                        f"(balance_before {before}, previous sequence {prev_sequence} ended at {prev_after})",
                        str(Wallet._meta.pk.to_python(wallet_id)),
                    )
                )
    return problems


@reconciliation_check("journals")
def check_journals(*, progress: Progress = _no_progress) -> list[Problem]:
    """Every journal entry has at least two legs and they sum to zero."""
    unbalanced = (
        JournalEntry.objects.annotate(total=Sum("legs__delta"), legs_count=Count("legs"))
        .filter(Q(total__isnull=True) | ~Q(total=0) | Q(legs_count__lt=2))
        .values_list("pk", "total", "legs_count")
    )
    problems = []
    for pk, total, legs_count in unbalanced:
        legs = LedgerEntry.objects.filter(journal_id=pk).values_list("wallet_id", flat=True)
        wallets = ", ".join(str(wallet_id) for wallet_id in legs)
        problems.append(
            Problem("journals", f"journal {pk}: {legs_count} leg(s) summing to {total or ZERO} (wallets: {wallets})")
        )
    return problems


@reconciliation_check("zero-sum")
def check_zero_sum(*, progress: Progress = _no_progress) -> list[Problem]:
    """User balances plus the system accounts' derived balances sum to zero."""
    users = Wallet.objects.filter(kind=Wallet.Kind.USER).aggregate(total=Sum("balance"))["total"] or ZERO
    systems = LedgerEntry.objects.filter(wallet__kind=Wallet.Kind.SYSTEM).aggregate(total=Sum("delta"))["total"] or ZERO
    if users + systems != 0:
        return [Problem("zero-sum", f"user balances {users} + system balances {systems} = {users + systems}, not 0")]
    return []


@reconciliation_check("topups")
def check_topups(*, progress: Progress = _no_progress) -> list[Problem]:
    """Each COMPLETED card top-up has exactly one DEPOSIT of its amount into its wallet from
    `stripe:clearing` (reference ("topup", id)), a REFUNDED one that DEPOSIT and one REFUND
    of it; no other top-up moved money."""
    moved = {}
    for reference_id, wallet_id, leg_type, amount in LedgerEntry.objects.filter(
        journal__reference_type="topup", wallet__kind=Wallet.Kind.USER
    ).values_list("journal__reference_id", "wallet_id", "type", "amount"):
        moved.setdefault(reference_id, []).append((wallet_id, leg_type, amount))
    clearing_legs = LedgerEntry.objects.filter(journal__reference_type="topup").exclude(
        Q(wallet__kind=Wallet.Kind.USER) | Q(wallet__code=SystemAccount.STRIPE_CLEARING)
    )
    problems = [
        Problem("topups", f"journal {journal_id}: a top-up leg on {code}, not {SystemAccount.STRIPE_CLEARING}")
        for journal_id, code in clearing_legs.values_list("journal_id", "wallet__code")
    ]
    deposit, refund = LedgerEntry.Type.DEPOSIT, LedgerEntry.Type.REFUND
    for pk, wallet_id, amount, status in TopUp.objects.values_list("pk", "wallet_id", "amount", "status").iterator():
        legs = sorted(moved.pop(str(pk), []))
        expected = {
            TopUp.Status.COMPLETED: [(wallet_id, deposit, amount)],
            TopUp.Status.REFUNDED: sorted([(wallet_id, deposit, amount), (wallet_id, refund, amount)]),
        }.get(status, [])
        if legs != expected:
            problems.append(Problem("topups", f"top-up {pk} is {status} but moved {legs}", str(wallet_id)))
    for reference_id, legs in moved.items():
        problems.append(Problem("topups", f"movements {legs} refer to top-up {reference_id}, which does not exist"))
    return problems


def run_checks(*, progress: Progress = _no_progress) -> dict[str, list[Problem]]:
    """Every registered check's problems, by check name (an empty list: it passed)."""
    return {name: check(progress=progress) for name, check in CHECKS}
