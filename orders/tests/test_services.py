"""The wallet purchase, refunds and the status machine, through the services, on PostgreSQL."""

from decimal import Decimal

import pytest

from accounts.tests.factories import MerchantFactory
from catalog.exceptions import ProductNotFound, ProductOutOfStock, ProductUnavailable
from catalog.tests.factories import ProductFactory
from orders import services
from orders.exceptions import (
    InvalidOrderTransition,
    OrderActionForbidden,
    OrderNotCancellable,
    OrderNotFound,
    OrderNotRefundable,
    OwnProduct,
)
from orders.models import Order
from orders.tests.factories import OrderFactory, funded_buyer
from orders.tests.utils import balance, books, order_legs, stock
from wallets.exceptions import InsufficientFunds, WalletLocked
from wallets.models import Wallet
from wallets.services import wallet_set_locked, wallet_withdraw

pytestmark = pytest.mark.django_db
D = Decimal


class TestWalletPurchase:
    def test_moves_money_takes_stock_and_completes(self, buyer, funded_buyer_wallet, product, merchant, reconcile):
        order = services.order_purchase_with_wallet(buyer=buyer, product_id=product.pk, quantity=3)

        order.refresh_from_db()
        assert order.status == Order.Status.COMPLETED and order.payment_method == Order.PaymentMethod.WALLET
        assert (order.quantity, order.unit_price, order.amount) == (3, D("25.00"), D("75.00"))
        assert order.merchant == merchant and order.user == buyer and order.completed_at is not None
        assert balance(buyer) == D("425.00") and balance(merchant) == D("75.00")
        assert stock(product) == 7
        assert order_legs(order) == {(buyer.email, "PAYMENT"): D("-75.00"), (merchant.email, "REVENUE"): D("75.00")}
        reconcile()

    @pytest.mark.parametrize(
        "setup, exc",
        [
            (lambda p: ProductFactory._meta.model.objects.filter(pk=p.pk).update(is_active=False), ProductUnavailable),
            (lambda p: None, ProductOutOfStock),  # quantity 11 of 10
        ],
    )
    def test_product_refusals_change_nothing(self, buyer, funded_buyer_wallet, product, setup, exc, reconcile):
        setup(product)
        before = books()
        with pytest.raises(exc):
            services.order_purchase_with_wallet(buyer=buyer, product_id=product.pk, quantity=11)
        assert books() == before
        reconcile()

    def test_unknown_product(self, buyer, funded_buyer_wallet):
        import uuid

        with pytest.raises(ProductNotFound):
            services.order_purchase_with_wallet(buyer=buyer, product_id=uuid.uuid4())

    def test_own_product(self, merchant, product):
        before = books()
        with pytest.raises(OwnProduct):
            services.order_purchase_with_wallet(buyer=merchant, product_id=product.pk)
        assert books() == before

    def test_insufficient_funds_changes_nothing(self, product, reconcile):
        poor = funded_buyer("24.99")
        before = books()
        with pytest.raises(InsufficientFunds):
            services.order_purchase_with_wallet(buyer=poor, product_id=product.pk)
        assert books() == before
        reconcile()

    def test_buyer_without_wallet_is_short_of_funds(self, product):
        from accounts.tests.factories import UserFactory

        with pytest.raises(InsufficientFunds):
            services.order_purchase_with_wallet(buyer=UserFactory(), product_id=product.pk)
        assert stock(product) == 10

    def test_all_or_nothing_when_the_merchant_wallet_is_locked(self, buyer, funded_buyer_wallet, product, reconcile):
        """The buyer's debit is computed before the merchant's lock is found: still nothing changes."""
        wallet_set_locked(wallet_ids=[Wallet.objects.get(user=product.merchant).pk], locked=True)
        before = books()
        with pytest.raises(WalletLocked):
            services.order_purchase_with_wallet(buyer=buyer, product_id=product.pk, quantity=2)
        assert books() == before
        assert balance(buyer) == D("500.00") and stock(product) == 10
        reconcile()


class TestTransitions:
    def test_allowed_map(self):
        allowed = {src: set(dst) for src, dst in Order.ALLOWED_TRANSITIONS.items()}
        assert allowed == {"PENDING": {"COMPLETED", "FAILED", "CANCELLED"}, "COMPLETED": {"REFUNDED"}}

    @pytest.mark.parametrize("status", ["COMPLETED", "FAILED", "CANCELLED", "REFUNDED"])
    def test_refused_transitions_raise(self, status):
        order = OrderFactory(status=status)
        with pytest.raises(InvalidOrderTransition):
            services._transition(order, Order.Status.PENDING)
        order.refresh_from_db()
        assert order.status == status


class TestWalletRefund:
    def test_money_and_stock_come_back(self, buyer, funded_buyer_wallet, product, merchant, reconcile):
        order = services.order_purchase_with_wallet(buyer=buyer, product_id=product.pk, quantity=2)

        refunded = services.order_refund(order_id=order.pk, merchant=merchant, reason="Damaged")

        assert refunded.status == Order.Status.REFUNDED and refunded.refunded_at is not None
        assert refunded.refund_reason == "Damaged"
        assert balance(buyer) == D("500.00") and balance(merchant) == D("0.00") and stock(product) == 10
        legs = order_legs(order)
        assert legs[(buyer.email, "REFUND")] == D("50.00") and legs[(merchant.email, "REFUND")] == D("-50.00")
        reconcile()

    def test_merchant_short_changes_nothing(self, buyer, funded_buyer_wallet, product, merchant, reconcile):
        order = services.order_purchase_with_wallet(buyer=buyer, product_id=product.pk)
        wallet_withdraw(wallet=Wallet.objects.get(user=merchant), amount=D("20.00"))
        before = books()
        with pytest.raises(InsufficientFunds):
            services.order_refund(order_id=order.pk, merchant=merchant)
        assert books() == before
        reconcile()

    def test_twice_is_refused(self, buyer, funded_buyer_wallet, product, merchant):
        order = services.order_purchase_with_wallet(buyer=buyer, product_id=product.pk)
        services.order_refund(order_id=order.pk, merchant=merchant)
        with pytest.raises(OrderNotRefundable):
            services.order_refund(order_id=order.pk, merchant=merchant)
        assert balance(buyer) == D("500.00")

    @pytest.mark.parametrize("status", ["PENDING", "FAILED", "CANCELLED", "REFUNDED"])
    def test_only_completed_orders(self, status):
        order = OrderFactory(status=status)
        with pytest.raises(OrderNotRefundable):
            services.order_refund(order_id=order.pk, merchant=order.merchant)

    def test_only_by_its_merchant(self, buyer, funded_buyer_wallet, product):
        order = services.order_purchase_with_wallet(buyer=buyer, product_id=product.pk)
        with pytest.raises(OrderActionForbidden):  # its buyer sees it: 403
            services.order_refund(order_id=order.pk, merchant=buyer)
        with pytest.raises(OrderNotFound):
            services.order_refund(order_id=order.pk, merchant=MerchantFactory())


class TestCancel:
    def test_pending_wallet_less_order_releases_stock(self, reconcile):
        order = OrderFactory(quantity=3)
        assert stock(order.product) == 9
        cancelled = services.order_cancel(order_id=order.pk, buyer=order.user)
        assert cancelled.status == Order.Status.CANCELLED and cancelled.cancelled_at is not None
        assert cancelled.failure_reason == "Cancelled by the buyer."
        assert stock(order.product) == 12
        reconcile()

    def test_completed_order_is_not_cancellable(self, buyer, funded_buyer_wallet, product):
        order = services.order_purchase_with_wallet(buyer=buyer, product_id=product.pk)
        with pytest.raises(OrderNotCancellable):
            services.order_cancel(order_id=order.pk, buyer=buyer)

    def test_only_by_its_buyer(self, merchant):
        order = OrderFactory()
        with pytest.raises(OrderActionForbidden):  # its merchant sees it: 403
            services.order_cancel(order_id=order.pk, buyer=order.merchant)
        with pytest.raises(OrderNotFound):
            services.order_cancel(order_id=order.pk, buyer=merchant)


class TestStockReconciliation:
    def test_units_held_by_orders_reconcile_and_drift_is_reported(self, buyer, funded_buyer_wallet, product, reconcile):
        from django.core.management import CommandError

        from catalog.models import Product

        services.order_purchase_with_wallet(buyer=buyer, product_id=product.pk, quantity=4)
        OrderFactory(quantity=2)  # PENDING, holding 2
        assert "stock" in reconcile()

        Product.objects.filter(pk=product.pk).update(available_units=7)  # 1 unit from nowhere
        with pytest.raises(CommandError):
            reconcile()
