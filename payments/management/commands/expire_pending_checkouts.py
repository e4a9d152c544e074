"""`manage.py expire_pending_checkouts` (every few minutes): `payments.sweeps.expire_pending_checkouts`."""

from django.core.management.base import BaseCommand, CommandError

from payments.sweeps import expire_pending_checkouts


class Command(BaseCommand):
    help = "Close card checkouts (orders and top-ups) whose Checkout Session expired without our hearing of it."

    def handle(self, *args, **options):
        summary = expire_pending_checkouts()
        self.stdout.write(f"Expired card checkouts: {summary}")
        if summary.failed:
            raise CommandError(f"Not settled (retried next run): {', '.join(summary.failed)}")
