"""Delete Idempotency-Key records older than the retention window (24 h by default).

Run it from cron (e.g. hourly): `manage.py purge_idempotency_keys`.
"""

from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from paymentflow.api.models import IdempotencyKey

RETENTION_HOURS = 24


class Command(BaseCommand):
    help = "Delete Idempotency-Key records older than --hours (default 24)."

    def add_arguments(self, parser):
        parser.add_argument("--hours", type=int, default=RETENTION_HOURS, help="Keep records younger than this.")

    def handle(self, *args, hours: int, **options):
        if hours < RETENTION_HOURS:
            raise CommandError(f"The contract keeps keys at least {RETENTION_HOURS} hours; --hours must be >= that.")
        cutoff = timezone.now() - timedelta(hours=hours)
        deleted, _ = IdempotencyKey.objects.filter(created_at__lt=cutoff).delete()
        self.stdout.write(f"Purged {deleted} idempotency key(s) older than {hours} h.")
