"""`manage.py expire_pending_topups`: settle PENDING card top-ups whose Checkout Session's
`expires_at` has passed, for when Stripe's `checkout.session.expired` never arrived (cron,
every few minutes).

Each top-up's session is expired at Stripe first (no lock held); if Stripe says it was paid
meanwhile, the top-up is credited (once) instead; a delayed payment still processing is
left alone. Safe when two runs overlap, or a run and a webhook: every change re-checks the
top-up under its row lock. Exits 1 when some top-up could not be handled (e.g. Stripe
unreachable); the next run retries it.
"""

from django.core.management.base import BaseCommand

from paymentflow.sweeps import run_sweep
from wallets import topups


class Command(BaseCommand):
    help = "Settle PENDING card top-ups whose Checkout Session has expired, expiring the session at Stripe."

    def handle(self, *args, **options):
        run_sweep(
            self,
            ids=topups.pending_topups_to_expire(),
            settle=lambda topup_id: topups.topup_expire(topup_id=topup_id),
            noun="top-up",
            also_failing=(topups.TopUpPaymentMismatch,),  # a paid session that does not match: never credited
        )
