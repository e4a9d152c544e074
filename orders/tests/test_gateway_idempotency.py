"""An idempotent gateway purchase holds no database lock while it waits for Stripe.

`@idempotent(multi_step=...)` claims the key in its own short transaction, then lets the
purchase run its reserve / Stripe / record steps. These tests stall the fake Stripe in
the middle of a keyed gateway purchase and check, from other threads, that the product
can still be bought and that a duplicate is told 409 at once; and that a claim left by a
killed process blocks the key only until it is stale.
"""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from django.db import connection

from orders.models import Order
from orders.tests.utils import stock
from wallets.tests.factories import funded_wallet

ORDERS = "/api/v1/orders"


def _in_stripe(fake_stripe) -> bool:
    return bool(fake_stripe.calls("POST", "/v1/checkout/sessions"))


@pytest.mark.django_db(transaction=True)
@pytest.mark.concurrency
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


def _claim_left_by_a_killed_process(user, product, *, age_seconds: int):
    """The record a multi-step request claims before calling Stripe, as a process killed
    mid-request leaves it: no response stored."""
    import hashlib
    import json
    from datetime import timedelta

    from django.utils import timezone

    from paymentflow.api.models import IdempotencyKey

    body = json.dumps(
        {"payment_method": "GATEWAY", "product_id": str(product.pk)}, sort_keys=True, separators=(",", ":")
    )
    fingerprint = hashlib.sha256(f"POST\n{ORDERS}\n{body}".encode()).hexdigest()
    claim = IdempotencyKey.objects.create(user=user, key="crashed", fingerprint=fingerprint, method="POST", path=ORDERS)
    IdempotencyKey.objects.filter(pk=claim.pk).update(created_at=timezone.now() - timedelta(seconds=age_seconds))


@pytest.mark.django_db
@pytest.mark.parametrize(("age_seconds", "expected_status"), [(5, 409), (10 * 60, 201)])
def test_a_claim_left_by_a_killed_process_is_taken_over_once_stale(
    fake_stripe, buyer, buyer_client, product, age_seconds, expected_status
):
    _claim_left_by_a_killed_process(buyer, product, age_seconds=age_seconds)
    body = {"productId": str(product.pk), "paymentMethod": "GATEWAY"}

    response = buyer_client.post(ORDERS, body, format="json", HTTP_IDEMPOTENCY_KEY="crashed")

    assert response.status_code == expected_status, response.content
    if expected_status == 201:  # taken over: the response is now stored and replayed
        replay = buyer_client.post(ORDERS, body, format="json", HTTP_IDEMPOTENCY_KEY="crashed")
        assert replay.content == response.content and replay["Idempotent-Replayed"] == "true"
    else:
        assert response.json()["code"] == "IDEMPOTENCY_REQUEST_IN_PROGRESS"
        assert not Order.objects.exists()
