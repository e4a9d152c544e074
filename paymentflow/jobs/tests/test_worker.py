"""The scheduled jobs run without cron: a real worker process (`manage.py run_worker`,
what `make worker` runs) fires the expiry sweep on its schedule, and a stale checkout is
expired at (the fake) Stripe and its order cancelled, its stock released."""

from datetime import timedelta

import pytest
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from catalog.tests.factories import ProductFactory
from orders import services
from orders.models import Order
from paymentflow.jobs.models import ScheduledJob
from paymentflow.testing.worker import wait_until, worker_processes
from payments.models import CheckoutPayment
from wallets.tests.factories import WalletFactory

pytestmark = pytest.mark.concurrency


def test_the_worker_expires_a_stale_checkout_on_its_schedule(transactional_db, fake_stripe, buyer, merchant, tmp_path):
    WalletFactory(user=merchant)
    product = ProductFactory(merchant=merchant, price="20.00", available_units=5)
    stale = services.order_purchase_with_gateway(buyer=buyer, product_id=product.pk, quantity=2)
    fresh = services.order_purchase_with_gateway(buyer=buyer, product_id=product.pk, quantity=1)
    CheckoutPayment.objects.filter(pk=stale.payment_id).update(expires_at=timezone.now() - timedelta(minutes=1))

    with worker_processes(
        1,
        tmp_dir=tmp_path,
        STRIPE_SECRET_KEY=fake_stripe.api_key,
        STRIPE_API_BASE=fake_stripe.url,
        SCHEDULE_EXPIRE_PENDING_CHECKOUTS_SECONDS="1",
    ) as workers:
        wait_until(
            lambda: Order.objects.get(pk=stale.pk).status == Order.Status.CANCELLED,
            workers=workers,
            what="the stale checkout to be expired",
        )
        wait_until(
            lambda: ScheduledJob.objects.filter(name="expire_pending_checkouts", last_succeeded=True).exists(),
            workers=workers,
            what="the job's outcome",
        )

    assert fake_stripe.calls("POST", f"/v1/checkout/sessions/{stale.payment.stripe_session_id}/expire")
    assert Order.objects.get(pk=fresh.pk).status == Order.Status.PENDING  # not stale: left alone
    product.refresh_from_db()
    assert product.available_units == 4  # the stale order's 2 units back, the fresh one's still held
    job = ScheduledJob.objects.get(name="expire_pending_checkouts")
    assert "1 found; expired: 1" in job.last_message
    runs = DBTaskResult.objects.filter(task_path="paymentflow.jobs.tasks.run_scheduled_job")
    assert runs.exists() and {r.args_kwargs["args"][0] for r in runs} == {"expire_pending_checkouts"}
