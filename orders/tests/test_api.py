"""The Orders endpoints: shapes, validation, access rules (IDOR), idempotency, query budgets."""

import uuid
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from orders import services
from orders.models import Order
from orders.tests.factories import OrderFactory, funded_buyer
from orders.tests.utils import ORDER_KEYS, balance, books, error, stock
from wallets.models import LedgerEntry

pytestmark = pytest.mark.django_db
D = Decimal
ORDERS = "/api/v1/orders"
SALES = "/api/v1/orders/merchant/sales"


def buy(client, product, key=None, **extra):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
    return client.post(ORDERS, {"productId": str(product.pk), "paymentMethod": "WALLET", **extra}, **headers)


class TestPurchase:
    def test_wallet_purchase_201(self, buyer, buyer_client, funded_buyer_wallet, product, merchant, reconcile):
        response = buy(buyer_client, product, quantity=2)

        assert response.status_code == 201, response.content
        body = response.json()
        assert set(body) == ORDER_KEYS
        assert body["userId"] == str(buyer.pk) and body["merchantId"] == str(merchant.pk)
        assert body["productId"] == str(product.pk)
        assert body["product"] == {"id": str(product.pk), "name": product.name, "price": "25.00"}
        assert (body["quantity"], body["unitPrice"], body["amount"], body["currency"]) == (2, "25.00", "50.00", "USD")
        assert (body["status"], body["paymentMethod"]) == ("COMPLETED", "WALLET")
        assert body["stripeSessionId"] is None and body["checkoutUrl"] is None and body["failureReason"] is None
        assert body["completedAt"].endswith("Z") and body["createdAt"]
        assert balance(buyer) == D("450.00") and balance(merchant) == D("50.00") and stock(product) == 8
        reconcile()

    def test_quantity_defaults_to_one(self, buyer_client, funded_buyer_wallet, product):
        assert buy(buyer_client, product).json()["quantity"] == 1

    @pytest.mark.parametrize("quantity", [0, 101, -1, "2", 2.5, True, None])
    def test_quantity_must_be_an_integral_json_number_1_to_100(
        self, buyer_client, funded_buyer_wallet, product, quantity
    ):
        body = error(buy(buyer_client, product, quantity=quantity), 400, "VALIDATION_ERROR")
        assert "quantity" in body["details"]

    def test_malformed_product_id_is_400_naming_it(self, buyer_client):
        response = buyer_client.post(ORDERS, {"productId": "not-a-uuid", "paymentMethod": "WALLET"})
        assert "productId" in error(response, 400, "VALIDATION_ERROR")["details"]

    def test_unknown_product_is_404(self, buyer_client, funded_buyer_wallet):
        response = buyer_client.post(ORDERS, {"productId": str(uuid.uuid4()), "paymentMethod": "WALLET"})
        error(response, 404, "PRODUCT_NOT_FOUND")

    @pytest.mark.parametrize("method", ["CASH", "wallet", "", None, 1])
    def test_bad_payment_method(self, buyer_client, product, method):
        response = buyer_client.post(ORDERS, {"productId": str(product.pk), "paymentMethod": method})
        assert "paymentMethod" in error(response, 400, "VALIDATION_ERROR")["details"]

    def test_missing_fields_and_unknown_fields(self, buyer_client):
        details = error(buyer_client.post(ORDERS, {"price": "1.00"}), 400, "VALIDATION_ERROR")["details"]
        assert {"productId", "paymentMethod"} <= set(details)

    def test_business_refusals(self, buyer_client, funded_buyer_wallet, product, merchant_client):
        error(buy(buyer_client, product, quantity=11), 400, "PRODUCT_OUT_OF_STOCK")
        error(buy(merchant_client, product), 400, "OWN_PRODUCT")
        error(buy(buyer_client, product, quantity=100), 400, "PRODUCT_OUT_OF_STOCK")
        product.__class__.objects.filter(pk=product.pk).update(is_active=False)
        error(buy(buyer_client, product), 400, "PRODUCT_UNAVAILABLE")

    def test_insufficient_funds_message(self, client_for, product):
        poor = funded_buyer("10.00")
        body = error(buy(client_for(poor), product), 400, "INSUFFICIENT_FUNDS")
        assert body["message"] == "Insufficient funds. Required: $25.00, Available: $10.00"

    def test_anonymous_is_401(self, api_client, product):
        error(buy(api_client, product), 401, "NOT_AUTHENTICATED")

    def test_idempotency_key_replays_and_moves_money_once(self, buyer, buyer_client, funded_buyer_wallet, product):
        first = buy(buyer_client, product, key="order-1")
        replays = [buy(buyer_client, product, key="order-1") for _ in range(9)]

        assert first.status_code == 201
        assert all(r.status_code == 201 and r.content == first.content for r in replays)
        assert all(r["Idempotent-Replayed"] == "true" for r in replays)
        assert Order.objects.count() == 1 and balance(buyer) == D("475.00") and stock(product) == 9
        assert LedgerEntry.objects.filter(type="PAYMENT").count() == 1
        error(buy(buyer_client, product, quantity=2, key="order-1"), 400, "IDEMPOTENCY_KEY_REUSED")

    def test_a_refusal_is_replayed_too(self, buyer_client, product):
        first = buy(buyer_client, product, key="k")
        error(first, 400, "INSUFFICIENT_FUNDS")
        assert buy(buyer_client, product, key="k").content == first.content


class TestReading:
    def test_list_is_the_callers_newest_first_with_filters(self, buyer, buyer_client, funded_buyer_wallet, product):
        first = services.order_purchase_with_wallet(buyer=buyer, product_id=product.pk)
        second = services.order_purchase_with_wallet(buyer=buyer, product_id=product.pk)
        services.order_refund(order_id=first.pk, merchant=product.merchant)
        OrderFactory()  # someone else's

        body = buyer_client.get(ORDERS).json()
        assert [o["id"] for o in body["data"]] == [str(second.pk), str(first.pk)]
        assert body["meta"] == {"total": 2, "page": 1, "limit": 20, "totalPages": 1}
        assert [o["id"] for o in buyer_client.get(ORDERS, {"status": "REFUNDED"}).json()["data"]] == [str(first.pk)]
        assert buyer_client.get(ORDERS, {"paymentMethod": "GATEWAY"}).json()["data"] == []
        assert len(buyer_client.get(ORDERS, {"paymentMethod": "WALLET", "limit": 1}).json()["data"]) == 1

    @pytest.mark.parametrize("query", [{"status": "DONE"}, {"paymentMethod": "CARD"}, {"page": "0"}, {"limit": "x"}])
    def test_bad_filter_is_400(self, buyer_client, query):
        error(buyer_client.get(ORDERS, query), 400, "VALIDATION_ERROR")

    def test_detail_to_buyer_and_merchant_only(self, client_for, merchant_client):
        order = OrderFactory()
        assert client_for(order.user).get(f"{ORDERS}/{order.pk}").json()["id"] == str(order.pk)
        assert client_for(order.merchant).get(f"{ORDERS}/{order.pk}").status_code == 200
        error(merchant_client.get(f"{ORDERS}/{order.pk}"), 404, "NOT_FOUND")  # another merchant
        error(client_for(funded_buyer()).get(f"{ORDERS}/{order.pk}"), 404, "NOT_FOUND")
        error(merchant_client.get(f"{ORDERS}/{uuid.uuid4()}"), 404, "NOT_FOUND")
        error(merchant_client.get(f"{ORDERS}/not-a-uuid"), 404, "NOT_FOUND")

    def test_sales_are_the_merchants_with_status_filter(self, merchant, merchant_client, buyer_client):
        mine = OrderFactory(product__merchant=merchant)
        done = OrderFactory(product__merchant=merchant, status="COMPLETED")
        OrderFactory()
        body = merchant_client.get(SALES).json()
        assert [o["id"] for o in body["data"]] == [str(done.pk), str(mine.pk)] and body["meta"]["total"] == 2
        assert [o["id"] for o in merchant_client.get(SALES, {"status": "COMPLETED"}).json()["data"]] == [str(done.pk)]
        error(merchant_client.get(SALES, {"status": "nope"}), 400, "VALIDATION_ERROR")
        error(buyer_client.get(SALES), 403, "PERMISSION_DENIED")


class TestRefundAndCancelAccess:
    def test_refund_by_the_merchant(self, buyer, buyer_client, funded_buyer_wallet, product, merchant, client_for):
        order = buy(buyer_client, product).json()
        response = client_for(merchant).post(f"{ORDERS}/{order['id']}/refund", {"reason": "Sorry"})
        assert response.status_code == 200 and response.json()["status"] == "REFUNDED"
        assert balance(buyer) == D("500.00")
        error(client_for(merchant).post(f"{ORDERS}/{order['id']}/refund"), 409, "ORDER_NOT_REFUNDABLE")

    def test_refund_by_the_buyer_is_403_and_by_anyone_else_404(
        self, buyer_client, funded_buyer_wallet, product, client_for, merchant_client
    ):
        """The buyer sees the order, so it is no secret: 403 saying who may refund (issue 12.8).
        Users who cannot see it get 404, which confirms nothing."""
        order = buy(buyer_client, product).json()
        from accounts.tests.factories import MerchantFactory

        strangers = (client_for(MerchantFactory()), client_for(funded_buyer()))
        before = books()
        refused = error(buyer_client.post(f"{ORDERS}/{order['id']}/refund"), 403, "PERMISSION_DENIED")
        assert "merchant" in refused["message"]
        for client in strangers:
            error(client.post(f"{ORDERS}/{order['id']}/refund"), 404, "NOT_FOUND")
        error(merchant_client.post(f"{ORDERS}/{uuid.uuid4()}/refund"), 404, "NOT_FOUND")
        assert books() == before

    def test_refund_idempotency_key(self, buyer_client, funded_buyer_wallet, product, merchant_client, buyer):
        order = buy(buyer_client, product).json()
        url = f"{ORDERS}/{order['id']}/refund"
        first = merchant_client.post(url, {}, HTTP_IDEMPOTENCY_KEY="r1")
        again = merchant_client.post(url, {}, HTTP_IDEMPOTENCY_KEY="r1")
        assert first.status_code == again.status_code == 200 and first.content == again.content
        assert balance(buyer) == D("500.00") and LedgerEntry.objects.filter(type="REFUND").count() == 2

    def test_refund_reason_is_validated(self, buyer_client, funded_buyer_wallet, product, merchant_client):
        order = buy(buyer_client, product).json()
        error(merchant_client.post(f"{ORDERS}/{order['id']}/refund", {"reason": "x" * 501}), 400, "VALIDATION_ERROR")
        error(merchant_client.post(f"{ORDERS}/{order['id']}/refund", {"why": "x"}), 400, "VALIDATION_ERROR")

    def test_cancel_by_the_buyer_only(self, client_for, merchant_client):
        order = OrderFactory()
        stranger = client_for(funded_buyer())
        before = books()
        refused = error(client_for(order.merchant).post(f"{ORDERS}/{order.pk}/cancel"), 403, "PERMISSION_DENIED")
        assert "buyer" in refused["message"]
        error(stranger.post(f"{ORDERS}/{order.pk}/cancel"), 404, "NOT_FOUND")
        assert books() == before
        response = client_for(order.user).post(f"{ORDERS}/{order.pk}/cancel")
        assert response.status_code == 200 and response.json()["status"] == "CANCELLED"
        assert response.json()["failureReason"] == "Cancelled by the buyer."
        error(client_for(order.user).post(f"{ORDERS}/{order.pk}/cancel"), 409, "ORDER_NOT_CANCELLABLE")

    def test_completed_order_cannot_be_cancelled(self, buyer_client, funded_buyer_wallet, product):
        order = buy(buyer_client, product).json()
        error(buyer_client.post(f"{ORDERS}/{order['id']}/cancel"), 409, "ORDER_NOT_CANCELLABLE")


class TestQueryBudgets:
    """Counted with the token's user and, in tests, the savepoints standing for BEGIN/COMMIT."""

    def test_wallet_purchase(self, buyer_client, funded_buyer_wallet, product, django_assert_max_num_queries):
        with django_assert_max_num_queries(8):
            assert buy(buyer_client, product).status_code == 201

    def test_wallet_purchase_queries_are_the_documented_ones(self, buyer_client, funded_buyer_wallet, product):
        """docs/ARCHITECTURE.md, "The wallet purchase": one transaction (here a savepoint of the
        test's transaction), the product locked first, then both wallets in primary-key order,
        then the writes of both apps, each building its own, in one statement, then the
        merchant webhook event (one INSERT ... SELECT, which writes nothing when the merchant
        has no endpoint)."""
        with CaptureQueriesContext(connection) as ctx:
            assert buy(buyer_client, product).status_code == 201
        sql = [" ".join(q["sql"].replace('"', "").split()) for q in ctx.captured_queries]
        shapes = [
            ("SELECT", "accounts_user", ""),  # the token's user
            ("SAVEPOINT", "", ""),  # BEGIN in production
            ("SELECT set_config", "lock_timeout", ""),  # for this transaction only
            ("UPDATE catalog_product", "available_units >=", "RETURNING"),  # stock taken and row locked, or nothing
            ("SELECT", "wallets_wallet", "ORDER BY id FOR UPDATE"),  # both wallets, in primary-key order
            ("WITH", "INSERT INTO orders_order", "INSERT INTO wallets_ledgerentry"),  # + journal, balances
            ("INSERT INTO webhooks_webhookdelivery", "SELECT", ""),  # the merchant webhook event
            ("RELEASE SAVEPOINT", "", ""),  # COMMIT in production
        ]
        assert len(sql) == len(shapes), sql
        for statement, (start, inside, end) in zip(sql, shapes, strict=True):
            assert statement.startswith(start) and inside in statement and end in statement, statement
        assert "INSERT INTO wallets_journalentry" in sql[5]
        assert "UPDATE wallets_wallet SET balance = balance +" in sql[5]  # last: its row count is checked

    def test_wallet_refund(
        self, buyer_client, funded_buyer_wallet, product, merchant_client, django_assert_max_num_queries
    ):
        order = buy(buyer_client, product).json()
        with django_assert_max_num_queries(13):  # 12 + the merchant webhook event
            assert merchant_client.post(f"{ORDERS}/{order['id']}/refund").status_code == 200

    def test_wallet_purchase_with_idempotency_key(
        self, buyer_client, funded_buyer_wallet, product, django_assert_max_num_queries
    ):
        # the 8 of a purchase (its savepoint pair stands for BEGIN/COMMIT) + transaction,
        # advisory lock, key lookup, the view's savepoint pair, key insert
        with django_assert_max_num_queries(15):
            assert buy(buyer_client, product, key="q").status_code == 201
        with django_assert_max_num_queries(5):
            assert buy(buyer_client, product, key="q").status_code == 201

    @pytest.mark.parametrize("path", [ORDERS, SALES])
    def test_lists_do_not_grow_with_the_page(self, merchant, merchant_client, path, django_assert_max_num_queries):
        for _ in range(30):
            OrderFactory(user=merchant, product__merchant=merchant) if path == ORDERS else OrderFactory(
                product__merchant=merchant
            )
        for limit in (1, 50):
            with django_assert_max_num_queries(3):  # user, count, page (product joined)
                body = merchant_client.get(path, {"limit": limit}).json()
            assert len(body["data"]) == min(limit, 30)

    def test_detail(self, client_for, django_assert_max_num_queries):
        order = OrderFactory()
        client = client_for(order.user)
        with django_assert_max_num_queries(2):
            assert client.get(f"{ORDERS}/{order.pk}").status_code == 200

    def test_refund_and_cancel(self, buyer_client, funded_buyer_wallet, product, merchant_client, client_for):
        order = buy(buyer_client, product).json()
        with CaptureQueriesContext(connection) as refund:
            assert merchant_client.post(f"{ORDERS}/{order['id']}/refund").status_code == 200
        pending = OrderFactory()
        with CaptureQueriesContext(connection) as cancel:
            assert client_for(pending.user).post(f"{ORDERS}/{pending.pk}/cancel").status_code == 200
        # cancel: the payment's lock and update, the order read back after its hook moved it, the webhook event
        assert len(refund) <= 13 and len(cancel) <= 15, (len(refund), len(cancel))


def test_the_schema_says_who_may_refund_and_cancel(api_client):
    """Issue 12.8: the OpenAPI descriptions name who may refund and who may cancel."""
    paths = api_client.get("/api/schema/", HTTP_ACCEPT="application/json").json()["paths"]
    refund = paths["/api/v1/orders/{id}/refund"]["post"]["description"]
    cancel = paths["/api/v1/orders/{id}/cancel"]["post"]["description"]
    assert "may refund it: its buyer gets 403 `PERMISSION_DENIED`" in refund
    assert "Only the order's buyer may cancel it: its merchant gets 403 `PERMISSION_DENIED`" in cancel
