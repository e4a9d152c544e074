"""`manage.py reconcile_stripe` (daily): `payments.reconciliation.reconcile_stripe`; exits 1
naming every difference between our card payments and Stripe's records."""

from collections import Counter
from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError

from paymentflow import metrics
from payments.reconciliation import RECONCILE_WINDOW, reconcile_stripe


class Command(BaseCommand):
    help = "Compare our card payments, refunds and stripe:clearing with Stripe's records; exit 1 on any difference."

    def add_arguments(self, parser):
        parser.add_argument(
            "--days", type=int, default=RECONCILE_WINDOW.days, help="how far back to compare payments (default 30)"
        )

    def handle(self, *args, days, **options):
        ignored = []
        differences = reconcile_stripe(window=timedelta(days=days), ignored=ignored)
        for note in ignored:  # other integrations' sessions on the account: not ours, not a difference
            self.stdout.write(f"[ignored] {note}")
        for difference in differences:
            self.stdout.write(str(difference))
        for what, count in Counter(difference.what for difference in differences).items():
            metrics.reconcile_drift_found(check=f"stripe: {what}", count=count)
        if differences:
            raise CommandError(f"{len(differences)} difference(s) with Stripe over the last {days} day(s).")
        self.stdout.write(f"Card payments, refunds and stripe:clearing agree with Stripe (last {days} day(s)).")
