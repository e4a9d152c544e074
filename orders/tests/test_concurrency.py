"""Real concurrency on real PostgreSQL through the HTTP API: threads hit the live server
(each server thread has its own connection), released together by a barrier. No mocks."""

from collections import Counter
from decimal import Decimal

import pytest

from accounts.services import user_issue_tokens
from accounts.tests.factories import MerchantFactory
from catalog.tests.factories import ProductFactory
from orders import services
from orders.models import Order
from orders.tests.factories import funded_buyer
from orders.tests.utils import balance, books, stock
from paymentflow.testing.concurrency import Post, post_at_once, run_at_once
from payments.gateway import CheckoutSession
from payments.services import payment_paid
from payments.testing.fake_stripe import FakeStripe
from wallets.models import LedgerEntry, Wallet
from wallets.services import wallet_set_locked
from wallets.tests.factories import funded_wallet

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.concurrency]
D = Decimal
BUSINESS_ERRORS = {"PRODUCT_OUT_OF_STOCK", "INSUFFICIENT_FUNDS", "IDEMPOTENCY_REQUEST_IN_PROGRESS"}


def fire(live_server, calls, *, workers=20):
    """POST /orders for every (user, body, headers) in `calls`, `workers` at a time, each
    wave released together; return the responses in order."""
    tokens = {}
    for user, _, _ in calls:
        if user.pk not in tokens:
            tokens[user.pk] = user_issue_tokens(user=user)["access_token"]
    posts = [
        Post("/api/v1/orders", json=body, headers={"Authorization": f"Bearer {tokens[user.pk]}", **headers})
        for user, body, headers in calls
    ]
    return post_at_once(live_server, posts, workers=workers)


def wallet_order(product, quantity=1):
    return {"productId": str(product.pk), "paymentMethod": "WALLET", "quantity": quantity}


def codes(responses):
    return Counter(r.json().get("code", r.status_code) if r.status_code != 201 else 201 for r in responses)


def test_no_oversell_10_units_40_buyers(live_server, merchant, reconcile):
    funded_wallet(user=merchant, amount="0")
    product = ProductFactory(merchant=merchant, price=D("12.50"), available_units=10)
    buyers = [funded_buyer("100.00") for _ in range(40)]

    responses = fire(live_server, [(b, wallet_order(product), {}) for b in buyers])

    assert codes(responses) == {201: 10, "PRODUCT_OUT_OF_STOCK": 30}
    assert all(r.status_code in (201, 400) for r in responses)
    assert Order.objects.filter(status="COMPLETED").count() == 10 and Order.objects.count() == 10
    assert stock(product) == 0
    assert balance(merchant) == 10 * D("12.50")
    assert sum(balance(b) for b in buyers) == 40 * D("100.00") - 10 * D("12.50")
    reconcile()


def test_no_overdraft_money_for_3_buying_10_products(live_server, reconcile):
    buyer = funded_buyer("30.00")
    products = [ProductFactory(price=D("10.00"), available_units=5) for _ in range(10)]
    for product in products:
        funded_wallet(user=product.merchant, amount="0")

    responses = fire(live_server, [(buyer, wallet_order(p), {}) for p in products])

    assert codes(responses) == {201: 3, "INSUFFICIENT_FUNDS": 7}
    assert balance(buyer) == D("0.00")
    assert sum(stock(p) for p in products) == 50 - 3
    assert Order.objects.count() == 3
    reconcile()


def test_no_deadlock_two_merchants_buying_from_each_other(live_server, reconcile):
    a, b = MerchantFactory(), MerchantFactory()
    funded_wallet(user=a, amount="1000.00")
    funded_wallet(user=b, amount="1000.00")
    product_a = ProductFactory(merchant=a, price=D("5.00"), available_units=1000)
    product_b = ProductFactory(merchant=b, price=D("7.00"), available_units=1000)
    calls = []
    for _ in range(10):
        calls += [(a, wallet_order(product_b), {}), (b, wallet_order(product_a), {})]

    for _ in range(3):  # many times: 60 purchases, 30 in each direction
        responses = fire(live_server, calls)
        for r in responses:  # success or a business error; never a database error, 500 or 503
            assert r.status_code == 201 or (r.status_code == 400 and r.json()["code"] in BUSINESS_ERRORS), r.text

    ok_a = Order.objects.filter(user=a, status="COMPLETED").count()
    ok_b = Order.objects.filter(user=b, status="COMPLETED").count()
    assert ok_a == ok_b == 30
    assert balance(a) == D("1000.00") - 30 * D("7.00") + 30 * D("5.00")
    assert balance(b) == D("1000.00") - 30 * D("5.00") + 30 * D("7.00")
    assert stock(product_a) == stock(product_b) == 970
    reconcile()


def test_all_or_nothing_when_the_merchant_wallet_is_locked(live_server, merchant, reconcile):
    merchant_wallet = funded_wallet(user=merchant, amount="0")
    product = ProductFactory(merchant=merchant, price=D("10.00"), available_units=10)
    buyers = [funded_buyer("50.00") for _ in range(5)]
    wallet_set_locked(wallet_ids=[merchant_wallet.pk], locked=True)
    before = books()

    responses = fire(live_server, [(b, wallet_order(product, 2), {}) for b in buyers])

    assert codes(responses) == {"WALLET_LOCKED": 5} and {r.status_code for r in responses} == {403}
    assert books() == before
    reconcile()


def test_one_idempotency_key_10_times_at_once_is_one_order(live_server, merchant, reconcile):
    funded_wallet(user=merchant, amount="0")
    product = ProductFactory(merchant=merchant, price=D("10.00"), available_units=10)
    buyer = funded_buyer("100.00")

    responses = fire(live_server, [(buyer, wallet_order(product), {"Idempotency-Key": "same"})] * 10)

    statuses = Counter(r.status_code for r in responses)
    assert set(statuses) <= {201, 409} and statuses[201] >= 1, statuses
    assert {r.json()["code"] for r in responses if r.status_code == 409} <= {"IDEMPOTENCY_REQUEST_IN_PROGRESS"}
    assert len({r.content for r in responses if r.status_code == 201}) == 1
    assert Order.objects.count() == 1 and balance(buyer) == D("90.00") and stock(product) == 9
    assert LedgerEntry.objects.filter(wallet__user=buyer, type="PAYMENT").count() == 1
    reconcile()


def test_the_same_payment_applied_concurrently_credits_once(fake_stripe: FakeStripe, buyer, merchant, reconcile):
    """The webhook may apply one paid session in several threads at once (the same event
    delivered twice, or its two events): one completion, one credit."""
    funded_wallet(user=merchant, amount="0")
    product = ProductFactory(merchant=merchant, price=D("10.00"), available_units=10)
    order = services.order_purchase_with_gateway(buyer=buyer, product_id=product.pk, quantity=2)
    session = CheckoutSession.from_stripe(fake_stripe.mark_paid(order.payment.stripe_session_id))

    def apply():
        return payment_paid(payment_id=order.payment_id, session=session).payment.status

    assert set(run_at_once([apply] * 8)) == {"SUCCEEDED"}
    assert Order.objects.get(pk=order.pk).status == "COMPLETED"

    assert balance(merchant) == D("20.00") and stock(product) == 8
    assert LedgerEntry.objects.filter(wallet__user=merchant, type="REVENUE").count() == 1
    assert Wallet.objects.filter(user=merchant).count() == 1
    reconcile()
