"""Stock is never held hostage (issue 11, defect 3): a buyer holds at most
MAX_PENDING_CHECKOUTS open Checkout Sessions, card orders and top-ups together; one more is
409 TOO_MANY_PENDING_CHECKOUTS, also when they all arrive at once."""

from collections import Counter
from decimal import Decimal

import pytest
from django.test import override_settings

from accounts.services import user_issue_tokens
from orders.models import Order
from orders.tests.utils import ORDERS, books, card_order, error, merchant_product, stock
from paymentflow.testing.concurrency import Post, post_at_once

D = Decimal


@pytest.fixture
def product(merchant):
    return merchant_product(merchant, price="1.00", units=1000)


def card(product, quantity=1) -> dict:
    return {"productId": str(product.pk), "paymentMethod": "GATEWAY", "quantity": quantity}


@pytest.mark.django_db
def test_the_fourth_open_checkout_is_409_and_reserves_nothing(fake_stripe, buyer_client, product):
    for _ in range(3):
        card_order(buyer_client, product, quantity=100)
    before, sessions = books(), len(fake_stripe.sessions)

    refused = error(buyer_client.post(ORDERS, card(product, 100)), 409, "TOO_MANY_PENDING_CHECKOUTS")

    assert "3" in refused["message"]
    assert books() == before and len(fake_stripe.sessions) == sessions  # Stripe was not even asked
    assert stock(product) == 700


@pytest.mark.django_db
def test_orders_and_top_ups_count_together_and_closing_one_frees_a_slot(fake_stripe, buyer_client, product):
    first = card_order(buyer_client, product)
    card_order(buyer_client, product)
    assert buyer_client.post("/api/v1/wallet/top-ups", {"amount": "5.00"}).status_code == 201

    error(buyer_client.post("/api/v1/wallet/top-ups", {"amount": "5.00"}), 409, "TOO_MANY_PENDING_CHECKOUTS")
    error(buyer_client.post(ORDERS, card(product)), 409, "TOO_MANY_PENDING_CHECKOUTS")

    assert buyer_client.post(f"{ORDERS}/{first['id']}/cancel").status_code == 200
    card_order(buyer_client, product)


@pytest.mark.django_db
def test_other_buyers_and_wallet_orders_are_not_limited(fake_stripe, buyer_client, client_for, product):
    from orders.tests.factories import funded_buyer

    for _ in range(3):
        card_order(buyer_client, product)
    other = client_for(funded_buyer("10.00"))
    card_order(other, product)
    assert other.post(ORDERS, {**card(product), "paymentMethod": "WALLET"}).status_code == 201


@pytest.mark.django_db
@override_settings(MAX_PENDING_CHECKOUTS=1)
def test_the_limit_is_a_setting(fake_stripe, buyer_client, product):
    card_order(buyer_client, product)
    error(buyer_client.post(ORDERS, card(product)), 409, "TOO_MANY_PENDING_CHECKOUTS")


@pytest.mark.django_db(transaction=True)
@pytest.mark.concurrency
def test_ten_card_orders_at_once_open_at_most_three(fake_stripe, live_server, buyer, product, reconcile):
    """The review's reproduction: a buyer with 0.00 sends 10 card orders of 100 units at
    once; without the limit the 1000 units were out of stock for everyone for 31 minutes."""
    token = user_issue_tokens(user=buyer)["access_token"]
    posts = [Post(ORDERS, json=card(product, 100), headers={"Authorization": f"Bearer {token}"})] * 10

    responses = post_at_once(live_server, posts)

    codes = Counter(r.status_code if r.status_code == 201 else r.json()["code"] for r in responses)
    assert codes == {201: 3, "TOO_MANY_PENDING_CHECKOUTS": 7}, codes
    assert all(r.status_code in (201, 409) for r in responses)
    assert Order.objects.filter(status="PENDING").count() == 3 and Order.objects.count() == 3
    assert stock(product) == 700 and len(fake_stripe.sessions) == 3
    reconcile()
