import uuid
from decimal import Decimal

import pytest
from django.db import IntegrityError, connection, transaction

from accounts.tests.factories import MerchantFactory, UserFactory
from catalog import selectors, services
from catalog.demo import DEMO_MERCHANT_EMAIL, DEMO_PRODUCTS, seed_demo_products
from catalog.exceptions import (
    InvalidStockAdjustment,
    NotAMerchant,
    ProductNotFound,
    ProductOutOfStock,
    ProductUnavailable,
    UnauthorizedProductAccess,
)
from catalog.models import MAX_UNITS, Product, StockAdjustment
from catalog.tests.factories import ProductFactory
from paymentflow.testing.concurrency import run_at_once


@pytest.mark.django_db
class TestCreateAndUpdate:
    def test_create_sets_initial_units_and_currency(self, merchant, settings):
        product = services.product_create(merchant=merchant, name="A", price=Decimal("1.50"), available_units=7)
        product.refresh_from_db()
        assert (product.initial_units, product.available_units, product.currency) == (7, 7, settings.CURRENCY)
        assert not product.stock_adjustments.exists()

    def test_only_merchants_create(self, buyer):
        with pytest.raises(NotAMerchant):
            services.product_create(merchant=buyer, name="A", price=Decimal("1.00"), available_units=1)

    def test_update_refuses_non_owner(self, product, other_merchant):
        with pytest.raises(UnauthorizedProductAccess):
            services.product_update(product_id=product.pk, actor=other_merchant, changes={"name": "x"})

    def test_update_refuses_unknown_fields(self, product, merchant):
        with pytest.raises(ValueError):
            services.product_update(product_id=product.pk, actor=merchant, changes={"initial_units": 1})

    def test_unknown_product(self, merchant):
        import uuid

        with pytest.raises(ProductNotFound):
            services.product_update(product_id=uuid.uuid4(), actor=merchant, changes={"name": "x"})

    def test_deactivate_keeps_the_row(self, product, merchant):
        services.product_deactivate(product_id=product.pk, actor=merchant)
        assert Product.objects.get(pk=product.pk).is_active is False


@pytest.mark.django_db
class TestStockAdjustments:
    def test_adjust_records_who_why_and_the_chain(self, product):
        staff = UserFactory(is_staff=True)
        first = services.product_adjust_stock(product_id=product.pk, delta=5, reason=" restock ", actor=staff)
        second = services.product_adjust_stock(product_id=product.pk, delta=-3, reason="damaged", actor=staff)
        product.refresh_from_db()
        assert product.available_units == 12
        assert (first.units_before, first.units_after, first.reason, first.actor) == (10, 15, "restock", staff)
        assert (second.units_before, second.units_after) == (15, 12)
        assert first.source == StockAdjustment.Source.ADMIN

    @pytest.mark.parametrize(
        ("delta", "reason"), [(-11, "too many"), (0, "nothing"), (1, "  "), (MAX_UNITS, "too high"), (True, "bool")]
    )
    def test_refused_adjustments_change_nothing(self, product, merchant, delta, reason):
        with pytest.raises(InvalidStockAdjustment):
            services.product_adjust_stock(product_id=product.pk, delta=delta, reason=reason, actor=merchant)
        product.refresh_from_db()
        assert product.available_units == 10
        assert not StockAdjustment.objects.exists()

    def test_removing_all_stock_is_allowed(self, product, merchant):
        services.product_adjust_stock(product_id=product.pk, delta=-10, reason="recall", actor=merchant)
        assert Product.objects.get(pk=product.pk).available_units == 0

    def test_merchant_patch_of_units_is_a_recorded_difference(self, product, merchant):
        services.product_take_units(product_id=product.pk, quantity=4)  # an order holds 4
        services.product_update(product_id=product.pk, actor=merchant, changes={"available_units": 20})
        adjustment = StockAdjustment.objects.get()
        assert (adjustment.delta, adjustment.units_before, adjustment.units_after) == (14, 6, 20)
        assert selectors.stock_drift(held_units_by_product={product.pk: 4}) == []


@pytest.mark.django_db
class TestOrderStockServices:
    def test_take_and_return(self, product):
        assert services.product_take_units(product_id=product.pk, quantity=3).available_units == 7
        assert Product.objects.get(pk=product.pk).available_units == 7
        assert services.product_return_units(product_id=product.pk, quantity=2).available_units == 9
        assert Product.objects.get(pk=product.pk).available_units == 9
        assert not StockAdjustment.objects.exists()

    def test_out_of_stock(self, product):
        with pytest.raises(ProductOutOfStock) as info:
            services.product_take_units(product_id=product.pk, quantity=11)
        assert info.value.details == {"available_units": 10, "requested": 11}
        assert Product.objects.get(pk=product.pk).available_units == 10

    def test_inactive_is_unavailable(self):
        product = ProductFactory(is_active=False)
        with pytest.raises(ProductUnavailable):
            services.product_take_units(product_id=product.pk, quantity=1)

    def test_unknown_product_is_not_found(self):
        with pytest.raises(ProductNotFound):
            services.product_take_units(product_id=uuid.uuid4(), quantity=1)

    def test_take_is_one_statement_and_returns_the_updated_row(self, product, django_assert_num_queries):
        with transaction.atomic(), django_assert_num_queries(1) as captured:  # no savepoint, no SELECT
            taken = services.product_take_units(product_id=str(product.pk), quantity=4)
        assert captured.captured_queries[0]["sql"].split()[0] == "UPDATE"
        fresh = Product.objects.get(pk=product.pk)
        assert (taken.pk, taken.available_units, taken.updated_at) == (fresh.pk, 6, fresh.updated_at)
        assert (taken.price, taken.merchant_id, taken.is_active) == (fresh.price, fresh.merchant_id, True)

    def test_a_refusal_leaves_the_callers_transaction_usable(self, product):
        """No savepoint is needed: a refused take wrote nothing, so the caller may carry on."""
        other = ProductFactory(available_units=1)
        with transaction.atomic():
            with pytest.raises(ProductOutOfStock):
                services.product_take_units(product_id=other.pk, quantity=2)
            services.product_take_units(product_id=product.pk, quantity=1)
        assert Product.objects.get(pk=product.pk).available_units == 9
        assert Product.objects.get(pk=other.pk).available_units == 1

    def test_units_return_to_an_inactive_product(self):
        product = ProductFactory(is_active=False, available_units=0)
        assert services.product_return_units(product_id=product.pk, quantity=2).available_units == 2

    @pytest.mark.parametrize("quantity", [0, -1, 1.5, True])
    def test_quantity_must_be_a_positive_integer(self, product, quantity):
        with pytest.raises(ValueError):
            services.product_take_units(product_id=product.pk, quantity=quantity)

    def test_exception_codes(self):
        assert (ProductOutOfStock.status_code, ProductOutOfStock.code) == (400, "PRODUCT_OUT_OF_STOCK")
        assert (ProductUnavailable.status_code, ProductUnavailable.code) == (400, "PRODUCT_UNAVAILABLE")


@pytest.mark.django_db
class TestStockDrift:
    def test_books_balance_after_every_kind_of_change(self, product, merchant):
        other = ProductFactory(available_units=3)
        services.product_take_units(product_id=product.pk, quantity=4)
        services.product_return_units(product_id=product.pk, quantity=1)  # a cancel: the order holds 3
        services.product_adjust_stock(product_id=product.pk, delta=6, reason="restock", actor=merchant)
        services.product_update(product_id=product.pk, actor=merchant, changes={"available_units": 2})
        assert selectors.stock_drift(held_units_by_product={product.pk: 3, str(other.pk): 0}) == []

    def test_reports_units_changed_outside_the_services(self, product):
        other = ProductFactory()
        Product.objects.filter(pk=product.pk).update(available_units=13)
        [drift] = selectors.stock_drift()
        assert (drift.product_id, drift.drift) == (product.pk, 3)
        assert (drift.available_units, drift.initial_units, drift.adjustments, drift.held_units) == (13, 10, 0, 0)
        assert selectors.stock_drift(product_ids=[other.pk]) == []

    def test_reports_units_an_order_claims_but_stock_never_gave(self, product):
        [drift] = selectors.stock_drift(held_units_by_product={product.pk: 2})
        assert drift.drift == 2

    def test_one_query_whatever_the_number_of_products(self, django_assert_num_queries):
        ProductFactory.create_batch(5)
        with django_assert_num_queries(1):
            selectors.stock_drift()


@pytest.mark.django_db
class TestDatabaseConstraints:
    def test_stock_cannot_go_negative(self, product):
        with pytest.raises(IntegrityError), transaction.atomic():
            Product.objects.filter(pk=product.pk).update(available_units=-1)

    def test_price_must_be_positive(self, product):
        with pytest.raises(IntegrityError), transaction.atomic():
            Product.objects.filter(pk=product.pk).update(price=0)

    def test_adjustment_chain_is_enforced(self, product):
        with pytest.raises(IntegrityError), transaction.atomic():
            StockAdjustment.objects.create(
                product=product, delta=1, units_before=10, units_after=12, reason="x", source="ADMIN"
            )

    def test_public_list_index_leaves_stock_out(self, product):
        with connection.cursor() as cursor:
            cursor.execute("SELECT indexdef FROM pg_indexes WHERE tablename = 'catalog_product'")
            definitions = [row[0] for row in cursor.fetchall()]
        (public_list,) = [d for d in definitions if "product_public_list_idx" in d]
        assert "WHERE is_active" in public_list
        assert not any("available_units" in d for d in definitions)  # see test below

    def test_a_stock_take_is_a_hot_update(self, product):
        """Stock is in no index, so taking units rewrites the row in place (PostgreSQL's
        heap-only tuple update): no index of the table is written by a purchase."""

        def hot_updates() -> int:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_stat_get_xact_tuples_hot_updated('catalog_product'::regclass)")
                return cursor.fetchone()[0]

        before = hot_updates()
        services.product_take_units(product_id=product.pk, quantity=1)
        services.product_take_units(product_id=product.pk, quantity=2)
        assert hot_updates() == before + 2


@pytest.mark.django_db(transaction=True)
@pytest.mark.concurrency
class TestConcurrency:
    def test_no_oversell_and_books_balance(self):
        product = ProductFactory(available_units=5)
        merchant = product.merchant

        def buy():
            try:
                services.product_take_units(product_id=product.pk, quantity=1)
                return "ok"
            except ProductOutOfStock:
                return "out"

        def restock():
            services.product_adjust_stock(product_id=product.pk, delta=2, reason="restock", actor=merchant)
            return "restock"

        outcomes = run_at_once([buy] * 9 + [restock])

        sold = outcomes.count("ok")
        product.refresh_from_db()
        assert outcomes.count("restock") == 1
        assert sold + outcomes.count("out") == 9
        assert 5 <= sold <= 7
        assert product.available_units == 5 + 2 - sold
        assert selectors.stock_drift(held_units_by_product={product.pk: sold}) == []


@pytest.mark.django_db
class TestDemoData:
    def test_seed_is_idempotent(self):
        merchant = MerchantFactory(email=DEMO_MERCHANT_EMAIL)
        assert seed_demo_products() == len(DEMO_PRODUCTS)
        assert seed_demo_products() == 0
        assert Product.objects.filter(merchant=merchant, is_active=True).count() == len(DEMO_PRODUCTS)
        assert selectors.stock_drift() == []

    def test_without_the_demo_merchant_nothing_happens(self):
        assert seed_demo_products() == 0
        assert not Product.objects.exists()
