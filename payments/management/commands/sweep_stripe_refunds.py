"""`manage.py sweep_stripe_refunds` (every few minutes): `payments.sweeps.sweep_stripe_refunds`."""

from django.core.management.base import BaseCommand, CommandError

from payments.sweeps import sweep_stripe_refunds


class Command(BaseCommand):
    help = "Settle card refunds whose outcome is unknown, and apply refunds made at Stripe without us."

    def handle(self, *args, **options):
        summary = sweep_stripe_refunds()
        self.stdout.write(f"Card refunds: {summary}")
        if summary.failed:
            problems = "; ".join(f"{payment}: {why}" for payment, why in summary.failed.items())
            raise CommandError(f"Not settled (retried next run, or flagged for staff): {problems}")
