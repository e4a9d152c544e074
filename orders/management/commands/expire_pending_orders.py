"""`manage.py expire_pending_orders`: cancel PENDING card orders older than
PENDING_ORDER_TIMEOUT_MINUTES and release their stock (cron, every few minutes).

Each order's Checkout Session is expired at Stripe first (no lock held); if Stripe says it
was paid meanwhile, the payment is applied instead. Safe when two runs overlap: every
release re-checks the order under its row lock, so an order is cancelled once. Exits 1 when
some order could not be handled (e.g. Stripe unreachable); the next run retries it.
"""

from django.core.management.base import BaseCommand

from orders import services
from paymentflow.sweeps import run_sweep


class Command(BaseCommand):
    help = "Cancel PENDING orders older than PENDING_ORDER_TIMEOUT_MINUTES, expiring their Checkout Sessions."

    def handle(self, *args, **options):
        run_sweep(
            self,
            ids=services.pending_orders_to_expire(),
            settle=lambda order_id: services.order_expire(order_id=order_id),
            noun="order",
        )
