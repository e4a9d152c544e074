"""`manage.py expire_pending_orders`: cancel PENDING card orders older than
PENDING_ORDER_TIMEOUT_MINUTES and release their stock (cron, every few minutes).

Each order's Checkout Session is expired at Stripe first (no lock held); if Stripe says it
was paid meanwhile, the payment is applied instead. Safe when two runs overlap: every
release re-checks the order under its row lock, so an order is cancelled once. Exits 1 when
some order could not be handled (e.g. Stripe unreachable); the next run retries it.
"""

import logging

from django.core.management.base import BaseCommand, CommandError

from orders import services
from paymentflow.api.exceptions import ApplicationError

logger = logging.getLogger("paymentflow.orders")


class Command(BaseCommand):
    help = "Cancel PENDING orders older than PENDING_ORDER_TIMEOUT_MINUTES, expiring their Checkout Sessions."

    def handle(self, *args, **options):
        order_ids = services.pending_orders_to_expire()
        outcomes: dict[str, int] = {}
        failed = []
        for order_id in order_ids:
            try:
                order = services.order_expire(order_id=order_id)
            except ApplicationError as exc:
                logger.warning("Could not expire order %s: %s (%s)", order_id, exc.code, exc.message)
                failed.append(str(order_id))
                continue
            outcomes[order.status] = outcomes.get(order.status, 0) + 1
        summary = ", ".join(f"{status}: {count}" for status, count in sorted(outcomes.items())) or "nothing to do"
        self.stdout.write(f"Expired pending orders ({len(order_ids)} found): {summary}")
        if failed:
            raise CommandError(f"{len(failed)} order(s) could not be expired: {', '.join(failed)}")
