import pytest
from django.test import Client
from django.urls import reverse

from accounts.models import User
from accounts.tests.factories import MerchantFactory
from catalog.models import Product, StockAdjustment
from catalog.tests.factories import ProductFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def superuser():
    return User.objects.create_superuser("staff@example.com", "StaffPass123!")


@pytest.fixture
def staff_client(superuser):
    client = Client()
    client.force_login(superuser)
    return client


def changelist(**query):
    return reverse("admin:catalog_product_changelist"), query


class TestProductAdmin:
    def test_changelist_search_and_filters(self, staff_client):
        alice = MerchantFactory(email="alice@shop.example")
        ProductFactory(merchant=alice, name="Red chair")
        ProductFactory(name="Blue table", is_active=False)
        url = reverse("admin:catalog_product_changelist")

        page = staff_client.get(url).content.decode()
        assert "Red chair" in page and "Blue table" in page

        page = staff_client.get(url, {"q": "alice@shop"}).content.decode()
        assert "Red chair" in page and "Blue table" not in page

        page = staff_client.get(url, {"q": "table"}).content.decode()
        assert "Blue table" in page and "Red chair" not in page

        page = staff_client.get(url, {"is_active__exact": "0"}).content.decode()
        assert "Blue table" in page and "Red chair" not in page

        page = staff_client.get(url, {"merchant__id__exact": str(alice.pk)}).content.decode()
        assert "Red chair" in page and "Blue table" not in page

    def test_stock_is_not_editable_on_the_product_form(self, staff_client, product):
        response = staff_client.get(reverse("admin:catalog_product_change", args=[product.pk]))
        assert response.status_code == 200
        page = response.content.decode()
        assert 'name="name"' in page
        assert 'name="available_units"' not in page
        assert reverse("admin:catalog_product_adjust_stock", args=[product.pk]) in page

    def test_posting_units_on_the_product_form_is_ignored(self, staff_client, product):
        url = reverse("admin:catalog_product_change", args=[product.pk])
        data = {
            "name": "Renamed",
            "description": product.description,
            "price": "11.00",
            "is_active": "on",
            "available_units": "999",
            "stock_adjustments-TOTAL_FORMS": "0",
            "stock_adjustments-INITIAL_FORMS": "0",
            "stock_adjustments-MIN_NUM_FORMS": "0",
            "stock_adjustments-MAX_NUM_FORMS": "1000",
        }
        response = staff_client.post(url, data)
        assert response.status_code == 302, response.content.decode()[:2000]
        product.refresh_from_db()
        assert (product.name, str(product.price), product.available_units) == ("Renamed", "11.00", 10)

    def test_adding_and_deleting_are_not_offered(self, staff_client, product):
        assert staff_client.get(reverse("admin:catalog_product_add")).status_code == 403
        assert staff_client.get(reverse("admin:catalog_product_delete", args=[product.pk])).status_code == 403

    def test_deactivate_action(self, staff_client, product):
        response = staff_client.post(
            reverse("admin:catalog_product_changelist"),
            {"action": "deactivate_selected", "_selected_action": [str(product.pk)]},
        )
        assert response.status_code == 302
        product.refresh_from_db()
        assert product.is_active is False

    def test_anonymous_is_sent_to_login(self, product):
        response = Client().get(reverse("admin:catalog_product_adjust_stock", args=[product.pk]))
        assert response.status_code == 302
        assert "/admin/login/" in response["Location"]


class TestAdjustStock:
    def url(self, product):
        return reverse("admin:catalog_product_adjust_stock", args=[product.pk])

    def test_form_page(self, staff_client, product):
        response = staff_client.get(self.url(product))
        assert response.status_code == 200
        page = response.content.decode()
        assert 'name="delta"' in page and 'name="reason"' in page

    def test_adjustment_goes_through_the_service_and_records_the_staff_user(self, staff_client, superuser, product):
        response = staff_client.post(self.url(product), {"delta": "5", "reason": "Supplier delivery"})
        assert response.status_code == 302
        assert response["Location"] == reverse("admin:catalog_product_change", args=[product.pk])
        product.refresh_from_db()
        assert product.available_units == 15
        adjustment = StockAdjustment.objects.get()
        assert (adjustment.delta, adjustment.reason, adjustment.actor) == (5, "Supplier delivery", superuser)
        assert adjustment.source == StockAdjustment.Source.ADMIN

    @pytest.mark.parametrize(
        "data", [{"delta": "-11", "reason": "too many"}, {"delta": "0", "reason": "x"}, {"delta": "3", "reason": ""}]
    )
    def test_refusals_redisplay_the_form(self, staff_client, product, data):
        response = staff_client.post(self.url(product), data)
        assert response.status_code == 200
        assert "errornote" in response.content.decode() or "errorlist" in response.content.decode()
        product.refresh_from_db()
        assert product.available_units == 10
        assert not StockAdjustment.objects.exists()

    def test_unknown_product(self, staff_client):
        import uuid

        response = staff_client.get(reverse("admin:catalog_product_adjust_stock", args=[uuid.uuid4()]))
        assert response.status_code == 404


class TestStockAdjustmentAdmin:
    def test_visible_and_read_only(self, staff_client, product, superuser):
        from catalog import services

        adjustment = services.product_adjust_stock(product_id=product.pk, delta=2, reason="recount", actor=superuser)
        assert "recount" in staff_client.get(reverse("admin:catalog_stockadjustment_changelist")).content.decode()
        change = staff_client.get(reverse("admin:catalog_stockadjustment_change", args=[adjustment.pk]))
        assert change.status_code == 200
        assert 'name="delta"' not in change.content.decode()
        assert staff_client.get(reverse("admin:catalog_stockadjustment_add")).status_code == 403
        delete_url = reverse("admin:catalog_stockadjustment_delete", args=[adjustment.pk])
        assert staff_client.post(delete_url, {"post": "yes"}).status_code == 403
        assert StockAdjustment.objects.filter(pk=adjustment.pk).exists()
        assert Product.objects.get(pk=product.pk).available_units == 12
