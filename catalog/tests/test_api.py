import uuid
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import pytest

from catalog.models import MAX_UNITS, Product, StockAdjustment
from catalog.tests.factories import ProductFactory
from catalog.tests.utils import PRODUCT_KEYS, error, links
from paymentflow.testing.isolation import clear_cache

pytestmark = pytest.mark.django_db

LIST = "/api/v1/products"
MINE = "/api/v1/products/merchant/my-products"


def detail(product_or_id) -> str:
    return f"/api/v1/products/{getattr(product_or_id, 'pk', product_or_id)}"


VALID = {"name": "Widget", "description": "Useful.", "price": "19.99", "availableUnits": 5}


class TestCreate:
    def test_merchant_creates_a_product(self, merchant, merchant_client):
        response = merchant_client.post(LIST, VALID, format="json")
        assert response.status_code == 201, response.content
        body = response.json()
        assert set(body) == PRODUCT_KEYS
        assert body["merchantId"] == str(merchant.pk)
        assert (body["name"], body["description"], body["price"]) == ("Widget", "Useful.", "19.99")
        assert (body["currency"], body["availableUnits"], body["isActive"]) == ("USD", 5, True)
        assert body["createdAt"].endswith("Z")
        product = Product.objects.get(pk=body["id"])
        assert (product.initial_units, product.available_units, product.price) == (5, 5, Decimal("19.99"))
        assert merchant.email not in response.content.decode()

    def test_minimal_body_and_number_price(self, merchant_client):
        response = merchant_client.post(LIST, {"name": "A", "price": 7, "availableUnits": 0}, format="json")
        assert response.status_code == 201
        assert (response.json()["price"], response.json()["description"]) == ("7.00", "")

    def test_inactive_on_creation(self, merchant_client):
        response = merchant_client.post(LIST, {**VALID, "isActive": False}, format="json")
        assert response.status_code == 201
        assert response.json()["isActive"] is False

    def test_buyer_is_refused(self, buyer_client):
        error(buyer_client.post(LIST, VALID, format="json"), 403, "PERMISSION_DENIED")
        assert not Product.objects.exists()

    def test_anonymous_is_refused(self, api_client):
        error(api_client.post(LIST, VALID, format="json"), 401, "NOT_AUTHENTICATED")

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("availableUnits", -1),
            ("availableUnits", 1.5),
            ("availableUnits", "3"),
            ("availableUnits", True),
            ("availableUnits", MAX_UNITS + 1),
            ("availableUnits", None),
            ("price", 0),
            ("price", "0.00"),
            ("price", -5),
            ("price", "1.001"),
            ("price", "NaN"),
            ("price", "Infinity"),
            ("price", "abc"),
            ("price", 10**12),
            ("price", True),
            ("name", ""),
            ("name", "   "),
            ("name", "x" * 201),
            ("name", None),
            ("description", "x" * 5001),
            ("isActive", "yes"),
            ("isActive", 1),
        ],
    )
    def test_invalid_values(self, merchant_client, field, value):
        body = error(merchant_client.post(LIST, {**VALID, field: value}, format="json"), 400, "VALIDATION_ERROR")
        assert field in body["details"], body
        assert not Product.objects.exists()

    @pytest.mark.parametrize("missing", ["name", "price", "availableUnits"])
    def test_required_fields(self, merchant_client, missing):
        payload = {k: v for k, v in VALID.items() if k != missing}
        body = error(merchant_client.post(LIST, payload, format="json"), 400, "VALIDATION_ERROR")
        assert missing in body["details"]

    def test_unknown_fields_are_refused(self, merchant_client):
        response = merchant_client.post(LIST, {**VALID, "stock": 3, "merchantId": str(uuid.uuid4())}, format="json")
        body = error(response, 400, "VALIDATION_ERROR")
        assert {"stock", "merchantId"} <= set(body["details"])

    def test_malformed_json(self, merchant_client):
        response = merchant_client.post(LIST, data='{"name": ', content_type="application/json")
        error(response, 400, "PARSE_ERROR")


class TestPublicList:
    def test_plain_array_of_active_in_stock_products_newest_first(self, api_client):
        old = ProductFactory(name="old")
        new = ProductFactory(name="new")
        ProductFactory(name="inactive", is_active=False)
        ProductFactory(name="sold out", available_units=0)
        response = api_client.get(LIST)
        assert response.status_code == 200
        body = response.json()
        assert isinstance(body, list)
        assert [p["id"] for p in body] == [str(new.pk), str(old.pk)]
        assert set(body[0]) == PRODUCT_KEYS
        assert response["X-Total-Count"] == "2"

    def test_never_shows_merchant_email(self, api_client, product):
        assert product.merchant.email not in api_client.get(LIST).content.decode()

    def test_paging_headers(self, api_client):
        products = [ProductFactory() for _ in range(5)]
        response = api_client.get(LIST, {"page": 2, "limit": 2})
        assert response.status_code == 200
        assert [p["id"] for p in response.json()] == [str(products[2].pk), str(products[1].pk)]
        assert response["X-Total-Count"] == "5"
        rels = links(response)
        assert set(rels) == {"first", "prev", "next", "last"}
        pages = {rel: parse_qs(urlsplit(url).query) for rel, url in rels.items()}
        assert {rel: q["page"] for rel, q in pages.items()} == {
            "first": ["1"],
            "prev": ["1"],
            "next": ["3"],
            "last": ["3"],
        }
        assert all(q["limit"] == ["2"] for q in pages.values())
        assert urlsplit(rels["next"]).path == LIST
        assert urlsplit(rels["next"]).scheme == "http"

    def test_first_and_last_pages_omit_prev_and_next(self, api_client):
        ProductFactory.create_batch(3)
        assert set(links(api_client.get(LIST, {"limit": 2}))) == {"first", "next", "last"}
        assert set(links(api_client.get(LIST, {"limit": 2, "page": 2}))) == {"first", "prev", "last"}

    def test_page_past_the_end_is_empty(self, api_client):
        ProductFactory.create_batch(3)
        response = api_client.get(LIST, {"page": 9, "limit": 2})
        assert response.json() == []
        assert response["X-Total-Count"] == "3"
        assert parse_qs(urlsplit(links(response)["prev"]).query)["page"] == ["2"]

    def test_empty_catalog(self, api_client):
        response = api_client.get(LIST)
        assert response.json() == []
        assert response["X-Total-Count"] == "0"
        assert set(links(response)) == {"first", "last"}

    def test_limit_is_capped(self, api_client):
        ProductFactory.create_batch(3)
        response = api_client.get(LIST, {"limit": 1000})
        assert len(response.json()) == 3
        assert parse_qs(urlsplit(links(response)["first"]).query)["limit"] == ["100"]

    def test_filter_links_carry_camel_case_filters(self, api_client, merchant):
        ProductFactory.create_batch(3, merchant=merchant)
        response = api_client.get(LIST, {"merchantId": str(merchant.pk), "minPrice": "1", "limit": 1})
        query = parse_qs(urlsplit(links(response)["next"]).query)
        assert query["merchantId"] == [str(merchant.pk)]
        assert query["minPrice"] == ["1.00"]
        assert "merchant_id" not in query

    def test_search_in_name_and_description_case_insensitive(self, api_client):
        by_name = ProductFactory(name="Blue Kettle")
        by_description = ProductFactory(name="Teapot", description="Goes well with a KETTLE.")
        ProductFactory(name="Toaster")
        response = api_client.get(LIST, {"search": "kettle"})
        assert {p["id"] for p in response.json()} == {str(by_name.pk), str(by_description.pk)}
        assert response["X-Total-Count"] == "2"

    def test_filter_by_merchant(self, api_client, merchant):
        mine = ProductFactory(merchant=merchant)
        ProductFactory()
        response = api_client.get(LIST, {"merchantId": str(merchant.pk)})
        assert [p["id"] for p in response.json()] == [str(mine.pk)]

    def test_price_range_is_inclusive(self, api_client):
        for price in ("5.00", "10.00", "20.00", "20.01"):
            ProductFactory(price=Decimal(price))
        response = api_client.get(LIST, {"minPrice": "10", "maxPrice": "20.00"})
        assert sorted(p["price"] for p in response.json()) == ["10.00", "20.00"]

    @pytest.mark.parametrize(
        ("query", "field"),
        [
            ({"merchantId": "not-a-uuid"}, "merchantId"),
            ({"minPrice": "abc"}, "minPrice"),
            ({"maxPrice": "NaN"}, "maxPrice"),
            ({"minPrice": "-1"}, "minPrice"),
            ({"minPrice": "1.001"}, "minPrice"),
            ({"minPrice": "20", "maxPrice": "10"}, "maxPrice"),
            ({"page": "0"}, "page"),
            ({"limit": "x"}, "limit"),
        ],
    )
    def test_bad_query_values(self, api_client, query, field):
        body = error(api_client.get(LIST, query), 400, "VALIDATION_ERROR")
        assert field in body["details"]

    def test_unknown_query_parameters_are_ignored(self, api_client, product):
        assert len(api_client.get(LIST, {"foo": "bar"}).json()) == 1

    def test_a_stale_token_does_not_break_the_public_list(self, api_client, product):
        api_client.credentials(HTTP_AUTHORIZATION="Bearer not.a.token")
        assert api_client.get(LIST).status_code == 200


class TestRetrieve:
    def test_anyone_sees_an_active_product(self, api_client, product):
        response = api_client.get(detail(product))
        assert response.status_code == 200
        body = response.json()
        assert set(body) == PRODUCT_KEYS
        assert (body["id"], body["price"], body["availableUnits"]) == (str(product.pk), "10.00", 10)

    def test_an_out_of_stock_product_is_still_shown(self, api_client):
        product = ProductFactory(available_units=0)
        assert api_client.get(detail(product)).json()["availableUnits"] == 0

    def test_inactive_is_404_except_to_its_owner(
        self, api_client, buyer_client, other_merchant_client, merchant_client, merchant
    ):
        product = ProductFactory(merchant=merchant, is_active=False)
        for client in (api_client, buyer_client, other_merchant_client):
            error(client.get(detail(product)), 404, "PRODUCT_NOT_FOUND")
        response = merchant_client.get(detail(product))
        assert response.status_code == 200
        assert response.json()["isActive"] is False

    def test_unknown_id(self, api_client):
        error(api_client.get(detail(uuid.uuid4())), 404, "PRODUCT_NOT_FOUND")

    def test_malformed_id_is_404(self, api_client):
        error(api_client.get(detail("not-a-uuid")), 404, "NOT_FOUND")

    def test_an_invalid_token_is_401(self, api_client, product):
        api_client.credentials(HTTP_AUTHORIZATION="Bearer not.a.token")
        error(api_client.get(detail(product)), 401, "TOKEN_NOT_VALID")


class TestUpdate:
    def test_owner_updates_any_field(self, merchant_client, product, merchant):
        payload = {"name": "New", "description": "Better.", "price": "12.50", "availableUnits": 3, "isActive": False}
        response = merchant_client.patch(detail(product), payload, format="json")
        assert response.status_code == 200, response.content
        body = response.json()
        assert (body["name"], body["description"], body["price"]) == ("New", "Better.", "12.50")
        assert (body["availableUnits"], body["isActive"]) == (3, False)
        assert body["updatedAt"] > body["createdAt"]
        product.refresh_from_db()
        assert (product.name, product.price, product.available_units, product.is_active) == (
            "New",
            Decimal("12.50"),
            3,
            False,
        )
        assert product.initial_units == 10
        adjustment = StockAdjustment.objects.get(product=product)
        assert (adjustment.delta, adjustment.units_before, adjustment.units_after) == (-7, 10, 3)
        assert (adjustment.actor, adjustment.source) == (merchant, StockAdjustment.Source.MERCHANT)

    def test_partial_update_keeps_other_fields(self, merchant_client, product):
        response = merchant_client.patch(detail(product), {"price": 99}, format="json")
        assert (response.json()["price"], response.json()["name"]) == ("99.00", product.name)
        assert not StockAdjustment.objects.exists()

    def test_same_units_record_nothing(self, merchant_client, product):
        assert merchant_client.patch(detail(product), {"availableUnits": 10}, format="json").status_code == 200
        assert not StockAdjustment.objects.exists()

    def test_empty_body_changes_nothing(self, merchant_client, product):
        response = merchant_client.patch(detail(product), {}, format="json")
        assert response.status_code == 200
        assert response.json()["updatedAt"] == product.updated_at.isoformat().replace("+00:00", "Z")

    def test_owner_can_reactivate(self, merchant_client, merchant):
        product = ProductFactory(merchant=merchant, is_active=False)
        assert merchant_client.patch(detail(product), {"isActive": True}, format="json").json()["isActive"] is True

    def test_another_merchant_is_refused(self, other_merchant_client, product):
        response = other_merchant_client.patch(detail(product), {"name": "Hijacked"}, format="json")
        error(response, 403, "UNAUTHORIZED_PRODUCT_ACCESS")
        product.refresh_from_db()
        assert product.name != "Hijacked"

    def test_buyer_is_refused(self, buyer_client, product):
        error(buyer_client.patch(detail(product), {"name": "x"}, format="json"), 403, "PERMISSION_DENIED")

    def test_anonymous_is_refused(self, api_client, product):
        error(api_client.patch(detail(product), {"name": "x"}, format="json"), 401, "NOT_AUTHENTICATED")

    def test_unknown_product(self, merchant_client):
        error(merchant_client.patch(detail(uuid.uuid4()), {"name": "x"}, format="json"), 404, "PRODUCT_NOT_FOUND")

    @pytest.mark.parametrize(
        ("field", "value"),
        [("availableUnits", -1), ("availableUnits", 0.5), ("price", 0), ("price", "1.999"), ("name", " ")],
    )
    def test_invalid_values(self, merchant_client, product, field, value):
        body = error(merchant_client.patch(detail(product), {field: value}, format="json"), 400, "VALIDATION_ERROR")
        assert field in body["details"]

    def test_unknown_fields_are_refused(self, merchant_client, product):
        body = error(
            merchant_client.patch(detail(product), {"initialUnits": 1}, format="json"), 400, "VALIDATION_ERROR"
        )
        assert "initialUnits" in body["details"]

    def test_put_is_not_allowed(self, merchant_client, product):
        error(merchant_client.put(detail(product), VALID, format="json"), 405, "METHOD_NOT_ALLOWED")


class TestDelete:
    def test_owner_deactivates_never_erases(self, merchant_client, api_client, product):
        assert merchant_client.delete(detail(product)).status_code == 204
        product.refresh_from_db()
        assert product.is_active is False
        error(api_client.get(detail(product)), 404, "PRODUCT_NOT_FOUND")
        assert api_client.get(LIST).json() == []
        assert merchant_client.get(detail(product)).status_code == 200
        assert [p["id"] for p in merchant_client.get(MINE).json()["data"]] == [str(product.pk)]

    def test_deleting_twice_is_fine(self, merchant_client, product):
        assert merchant_client.delete(detail(product)).status_code == 204
        assert merchant_client.delete(detail(product)).status_code == 204

    def test_another_merchant_is_refused(self, other_merchant_client, product):
        error(other_merchant_client.delete(detail(product)), 403, "UNAUTHORIZED_PRODUCT_ACCESS")
        product.refresh_from_db()
        assert product.is_active is True

    def test_buyer_is_refused(self, buyer_client, product):
        error(buyer_client.delete(detail(product)), 403, "PERMISSION_DENIED")

    def test_anonymous_is_refused(self, api_client, product):
        error(api_client.delete(detail(product)), 401, "NOT_AUTHENTICATED")

    def test_unknown_product(self, merchant_client):
        error(merchant_client.delete(detail(uuid.uuid4())), 404, "PRODUCT_NOT_FOUND")


class TestMyProducts:
    def test_own_products_inactive_included_newest_first(self, merchant_client, merchant):
        first = ProductFactory(merchant=merchant)
        second = ProductFactory(merchant=merchant, is_active=False)
        third = ProductFactory(merchant=merchant, available_units=0)
        ProductFactory()  # someone else's
        response = merchant_client.get(MINE)
        assert response.status_code == 200
        body = response.json()
        assert [p["id"] for p in body["data"]] == [str(third.pk), str(second.pk), str(first.pk)]
        assert body["meta"] == {"total": 3, "page": 1, "limit": 20, "totalPages": 1}
        assert set(body["data"][0]) == PRODUCT_KEYS

    def test_paged(self, merchant_client, merchant):
        ProductFactory.create_batch(3, merchant=merchant)
        body = merchant_client.get(MINE, {"page": 2, "limit": 2}).json()
        assert len(body["data"]) == 1
        assert body["meta"] == {"total": 3, "page": 2, "limit": 2, "totalPages": 2}

    def test_buyer_is_refused(self, buyer_client):
        error(buyer_client.get(MINE), 403, "PERMISSION_DENIED")

    def test_anonymous_is_refused(self, api_client):
        error(api_client.get(MINE), 401, "NOT_AUTHENTICATED")

    def test_not_swallowed_by_the_id_route(self, merchant_client):
        assert "data" in merchant_client.get(MINE).json()


class TestQueryBudget:
    def _count(self, client, url, **params):
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        with CaptureQueriesContext(connection) as queries:
            response = client.get(url, params)
        assert response.status_code == 200
        return len(queries)

    def test_public_list_is_two_queries_whatever_the_page_size(self, api_client):
        ProductFactory()
        clear_cache()
        one = self._count(api_client, LIST, limit=50)
        ProductFactory.create_batch(49)
        clear_cache()
        fifty = self._count(api_client, LIST, limit=50)
        assert len(api_client.get(LIST, {"limit": 50}).json()) == 50
        assert one == fifty == 2  # COUNT + one page SELECT

    def test_my_products_is_fixed_too(self, merchant_client, merchant):
        ProductFactory(merchant=merchant)
        one = self._count(merchant_client, MINE, limit=50)
        ProductFactory.create_batch(49, merchant=merchant)
        fifty = self._count(merchant_client, MINE, limit=50)
        assert one == fifty == 3  # user + COUNT + page

    def test_detail(self, api_client, merchant_client, product, django_assert_num_queries):
        with django_assert_num_queries(1):
            assert api_client.get(detail(product)).status_code == 200
        with django_assert_num_queries(2):  # the token's user + the product
            assert merchant_client.get(detail(product)).status_code == 200

    def test_writes(self, merchant_client, product, django_assert_num_queries):
        with django_assert_num_queries(2):  # the token's user, INSERT
            assert merchant_client.post(LIST, VALID, format="json").status_code == 201
        # user, savepoint, SELECT ... FOR UPDATE, one UPDATE, INSERT adjustment, release
        with django_assert_num_queries(6):
            response = merchant_client.patch(detail(product), {"name": "x", "availableUnits": 1}, format="json")
            assert response.status_code == 200
        with django_assert_num_queries(5):  # user, savepoint, SELECT ... FOR UPDATE, UPDATE, release
            assert merchant_client.delete(detail(product)).status_code == 204


class TestSchema:
    def test_list_is_an_array_with_its_query_parameters_and_headers(self, api_client):
        import json

        schema = json.loads(api_client.get("/api/schema/?format=json").content)
        operation = schema["paths"]["/api/v1/products"]["get"]
        assert {p["name"] for p in operation["parameters"]} == {
            "page",
            "limit",
            "search",
            "merchantId",
            "minPrice",
            "maxPrice",
        }
        ok = operation["responses"]["200"]
        assert ok["content"]["application/json"]["schema"]["type"] == "array"
        assert {"X-Total-Count", "Link"} <= set(ok["headers"])
        assert "/api/v1/products/merchant/my-products" in schema["paths"]
        product = schema["components"]["schemas"]["Product"]["properties"]
        assert set(product) == PRODUCT_KEYS
