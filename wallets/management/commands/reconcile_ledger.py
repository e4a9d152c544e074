"""`manage.py reconcile_ledger`: prove the ledger's invariants; exit 1 naming what drifted.

Runs every check registered in `wallets.reconciliation` (balances = sum of entries,
unbroken balanceBefore/After chains, balanced journal entries, all balances summing to
zero, and whatever other apps register), prints a summary, and on any drift raises
CommandError (exit status 1) listing the problems and the wallets involved.
"""

from collections import Counter

from django.core.management.base import BaseCommand, CommandError

from paymentflow import metrics
from wallets import reconciliation
from wallets.models import JournalEntry, LedgerEntry, Wallet
from wallets.selectors import system_wallet_balances

MAX_LISTED = 50


class Command(BaseCommand):
    help = "Check that wallet balances, ledger chains and journal entries reconcile; exit 1 on drift."

    def add_arguments(self, parser):
        parser.add_argument("--no-progress", action="store_true", help="Do not print the progress indicator.")

    def handle(self, *args, no_progress: bool = False, **options):
        wallets = Wallet.objects.filter(kind=Wallet.Kind.USER).count()
        journals = JournalEntry.objects.count()
        legs = LedgerEntry.objects.count()
        self.stdout.write(f"Reconciling {wallets} user wallet(s), {journals} journal entries, {legs} ledger entries")
        show_progress = not no_progress and wallets > reconciliation.BATCH_SIZE

        problems = []
        for name, check in reconciliation.CHECKS:
            found = check(progress=self._progress(name) if show_progress else reconciliation._no_progress)
            if show_progress:
                self.stdout.write("")
            self.stdout.write(f"  {name:<12} {'OK' if not found else f'{len(found)} problem(s)'}")
            problems.extend(found)

        for code, balance in system_wallet_balances().items():
            self.stdout.write(f"  {code:<24} {balance:>16}")

        if not problems:
            self.stdout.write(self.style.SUCCESS("Ledger reconciles: no drift."))
            return
        for check, count in Counter(problem.check for problem in problems).items():
            metrics.reconcile_drift_found(check=check, count=count)
        for problem in problems[:MAX_LISTED]:
            self.stderr.write(f"  [{problem.check}] {problem.message}")
        if len(problems) > MAX_LISTED:
            self.stderr.write(f"  ... and {len(problems) - MAX_LISTED} more")
        drifted = sorted({p.wallet_id for p in problems if p.wallet_id})
        raise CommandError(
            f"Ledger drift: {len(problems)} problem(s)"
            + (f"; wallets: {', '.join(drifted[:MAX_LISTED])}" if drifted else "")
        )

    def _progress(self, name: str):
        def report(done: int, total: int) -> None:
            width = 30
            filled = width * done // max(total, 1)
            self.stdout.write(f"\r  {name:<12} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}", ending="")
            self.stdout.flush()

        return report
