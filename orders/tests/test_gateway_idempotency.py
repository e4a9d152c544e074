"""An idempotent gateway purchase holds no database lock while it waits for Stripe.

`@idempotent(multi_step=...)` claims the key in its own short transaction, then lets the
purchase run its reserve / Stripe / record steps. These tests stall the fake Stripe in
the middle of a keyed gateway purchase and check, from other threads, that the product
can still be bought and that a duplicate is told 409 at once.
"""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from django.db import connection

from orders.models import Order
from orders.tests.utils import stock
from wallets.tests.factories import funded_wallet

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.concurrency]

ORDERS = "/api/v1/orders"


def _in_stripe(fake_stripe) -> bool:
    return bool(fake_stripe.calls("POST", "/v1/checkout/sessions"))


def test_keyed_gateway_purchase_holds_no_lock_during_the_stripe_call(
    live_server, fake_stripe, buyer, client_for, product, settings
):
    from accounts.services import user_issue_tokens
    from accounts.tests.factories import UserFactory

    other = UserFactory()
    funded_wallet(user=other, amount="100.00")
    headers_buyer = {"Authorization": f"Bearer {user_issue_tokens(user=buyer)['access_token']}"}
    headers_other = {"Authorization": f"Bearer {user_issue_tokens(user=other)['access_token']}"}
    body = {"productId": str(product.pk), "paymentMethod": "GATEWAY"}
    fake_stripe.stall_next(1, seconds=2.0)  # shorter than the client's timeout: it succeeds late

    def keyed_gateway_purchase():
        try:
            return requests.post(
                live_server.url + ORDERS, json=body, headers={**headers_buyer, "Idempotency-Key": "slow"}, timeout=30
            )
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=1) as pool:
        slow = pool.submit(keyed_gateway_purchase)
        waited = threading.Event()
        for _ in range(200):  # until the request reached the fake Stripe (bounded)
            if _in_stripe(fake_stripe):
                break
            waited.wait(0.02)
        assert _in_stripe(fake_stripe) and not slow.done()

        # While the first request is inside Stripe: the product row is free...
        bought = requests.post(
            live_server.url + ORDERS,
            json={"productId": str(product.pk), "paymentMethod": "WALLET"},
            headers=headers_other,
            timeout=30,
        )
        # ...and the same key is refused at once instead of queueing behind it.
        duplicate = requests.post(
            live_server.url + ORDERS, json=body, headers={**headers_buyer, "Idempotency-Key": "slow"}, timeout=30
        )
        still_in_stripe = not slow.done()
        first = slow.result(timeout=30)

    assert bought.status_code == 201, bought.text
    assert duplicate.status_code == 409 and duplicate.json()["code"] == "IDEMPOTENCY_REQUEST_IN_PROGRESS"
    assert still_in_stripe
    assert first.status_code == 201, first.text
    assert first.json()["status"] == "PENDING" and first.json()["checkoutUrl"]
    assert stock(product) == 10 - 1 - 1
    assert Order.objects.filter(payment_method="GATEWAY").count() == 1

    replay = requests.post(
        live_server.url + ORDERS, json=body, headers={**headers_buyer, "Idempotency-Key": "slow"}, timeout=30
    )
    assert replay.status_code == 201 and replay.content == first.content
    assert len(fake_stripe.calls("POST", "/v1/checkout/sessions")) == 1
