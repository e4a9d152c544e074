"""Merchant webhooks delivered by real worker processes (`manage.py run_worker`, what
`make worker` runs) to a local receiver: a sale arrives within seconds and shows SUCCEEDED;
a worker SIGKILLed in the middle of a burst loses nothing; two workers at once never send
one event twice."""

import socket

import pytest
import requests

from catalog.tests.factories import ProductFactory
from orders import services
from orders.tests.factories import funded_buyer
from paymentflow.testing.worker import wait_until, worker_processes
from wallets.tests.factories import WalletFactory
from webhooks.models import WebhookDelivery
from webhooks.tests.factories import WebhookEndpointFactory

pytestmark = [pytest.mark.concurrency, pytest.mark.usefixtures("private_urls_allowed")]


@pytest.fixture
def shop(transactional_db, receiver):
    """A merchant with an endpoint at the receiver, a product, and a funded buyer."""
    endpoint = WebhookEndpointFactory(url=receiver.url)
    WalletFactory(user=endpoint.merchant)
    product = ProductFactory(merchant=endpoint.merchant, price="1.00", available_units=1000)
    return endpoint, product, funded_buyer("1000.00")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def scrape(port: int) -> str:
    return requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text


def sell(shop, count: int) -> list:
    _, product, buyer = shop
    return [services.order_purchase_with_wallet(buyer=buyer, product_id=product.pk) for _ in range(count)]


def all_succeeded(expected: int):
    return lambda: WebhookDelivery.objects.filter(status="SUCCEEDED").count() == expected


def test_make_worker_delivers_a_sale_within_seconds(shop, receiver, client_for, tmp_path):
    endpoint, _, _ = shop
    port = free_port()
    with worker_processes(1, tmp_dir=tmp_path, WORKER_METRICS_PORT=str(port)) as workers:
        (order,) = sell(shop, 1)
        wait_until(all_succeeded(1), workers=workers, what="the sale's delivery")
        counted = 'paymentflow_webhook_deliveries_total{outcome="succeeded"} 1.0'
        wait_until(lambda: counted in scrape(port), workers=workers, what="the worker's metrics")

    (request,) = receiver.requests
    event = request.verified(endpoint.secret)
    assert (event["type"], event["data"]["order"]["id"]) == ("order.completed", str(order.pk))
    deliveries = client_for(endpoint.merchant).get(f"/api/v1/webhook-endpoints/{endpoint.pk}/deliveries").json()
    assert [(d["eventId"], d["status"], d["attempts"], d["lastStatusCode"]) for d in deliveries["data"]] == [
        (event["id"], "SUCCEEDED", 1, 200)
    ]


def test_a_worker_killed_mid_burst_loses_nothing(shop, receiver, tmp_path):
    """Worker A is SIGKILLed while a request is in flight; worker B, started after, makes the
    cut-short attempt again once A's lease expires (kick job every second here), and every
    event arrives (at least once)."""
    receiver.delay = 0.3
    fast = {
        # The lease is never shorter than the lookup + the attempt + 5 s: here 7 s.
        **{"WEBHOOK_LEASE_SECONDS": "2", "WEBHOOK_TIMEOUT_SECONDS": "1", "WEBHOOK_DNS_TIMEOUT_SECONDS": "1"},
        "SCHEDULE_KICK_DUE_WEBHOOK_DELIVERIES_SECONDS": "1",
    }
    with worker_processes(1, tmp_dir=tmp_path, **fast) as (first,):
        orders = sell(shop, 12)
        wait_until(lambda: len(receiver.requests) >= 3, workers=[first], what="a few deliveries")
        wait_until(lambda: receiver.requests[-1].ended is None, workers=[first], what="a request in flight")
        first.kill()
    cut_short = WebhookDelivery.objects.filter(locked_until__isnull=False, status="PENDING").count()
    assert cut_short == 1  # the attempt in flight when the worker died

    with worker_processes(1, tmp_dir=tmp_path, **fast) as second:
        wait_until(all_succeeded(12), workers=second, what="every delivery after the kill")

    event_ids = {str(d.event_id) for d in WebhookDelivery.objects.all()}
    assert len(event_ids) == len(orders) == 12
    assert set(receiver.ids()) == event_ids  # every event arrived
    assert len(receiver.requests) >= 12


def test_two_workers_never_send_one_event_twice(shop, receiver, tmp_path):
    receiver.delay = 0.1
    with worker_processes(2, tmp_dir=tmp_path) as workers:
        sell(shop, 30)
        wait_until(all_succeeded(30), workers=workers, what="30 deliveries by two workers")

    ids = receiver.ids()
    assert len(ids) == len(set(ids)) == 30  # each event once: no failure, no kill, so exactly once
    assert WebhookDelivery.objects.filter(attempts=1).count() == 30
    # Both workers took part (the claim, not luck, kept them apart).
    tasks_by_worker = _workers_of_delivery_tasks()
    assert len(tasks_by_worker) == 2, tasks_by_worker


def _workers_of_delivery_tasks() -> dict:
    from django_tasks_db.models import DBTaskResult

    counts: dict = {}
    for worker_ids in DBTaskResult.objects.filter(task_path="webhooks.tasks.deliver_webhook").values_list(
        "worker_ids", flat=True
    ):
        for worker_id in worker_ids:
            counts[worker_id] = counts.get(worker_id, 0) + 1
    return counts


def test_another_merchants_endpoint_receives_nothing(shop, receiver, tmp_path):
    from webhooks.tests.receiver import Receiver

    other = Receiver()
    try:
        WebhookEndpointFactory(url=other.url)  # another merchant's endpoint
        with worker_processes(1, tmp_dir=tmp_path) as workers:
            sell(shop, 3)
            wait_until(all_succeeded(3), workers=workers, what="the first merchant's deliveries")
        assert len(receiver.requests) == 3 and other.requests == []
    finally:
        other.stop()
