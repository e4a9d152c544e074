"""The contract's input conventions (API.md, Conventions), on every endpoint that takes them:
money is a plain ASCII decimal, integers are integral JSON numbers, and `null` on an optional
text field means empty."""

from decimal import Decimal

import pytest

from accounts.models import User
from catalog.models import Product
from catalog.tests.factories import ProductFactory
from orders.models import Order
from paymentflow.testing.assertions import assert_error
from wallets.tests.factories import funded_wallet

pytestmark = pytest.mark.django_db

DEPOSIT = "/api/v1/wallet/deposit"
PRODUCTS = "/api/v1/products"


class TestMoney:
    @pytest.mark.parametrize(
        "amount",
        [
            pytest.param("５", id="full-width-digit"),
            pytest.param("１０.００", id="full-width-amount"),
            pytest.param("٥", id="arabic-indic-digit"),
            pytest.param("1_000", id="underscore"),
            pytest.param(" 5 ", id="surrounding-spaces"),
            pytest.param("5\n", id="trailing-newline"),
            pytest.param("\u00a05", id="no-break-space"),
            pytest.param("5.00\u200b", id="zero-width-space"),
        ],
    )
    def test_only_plain_ascii_decimal_strings_are_money(self, buyer_client, amount):
        body = assert_error(buyer_client.post(DEPOSIT, {"amount": amount}, format="json"), 400, "VALIDATION_ERROR")
        assert body["details"]["amount"] == ["A valid number is required."]

    @pytest.mark.parametrize("amount", ["5", "5.5", "+5.00", "5.", ".50", "5e0", "2.5E1", 5, 5.5, 5.0])
    def test_plain_ascii_numbers_still_count(self, buyer_client, amount):
        assert buyer_client.post(DEPOSIT, {"amount": amount}, format="json").status_code == 200

    @pytest.mark.parametrize(
        "raw",
        [
            pytest.param('{"amount": 0.30000000000000004}', id="float-noise"),
            pytest.param('{"amount": 1e-308}', id="tiny-exponent"),
            pytest.param('{"amount": "1.23456789012345678"}', id="many-places-string"),
            pytest.param('{"amount": 10.001}', id="three-places"),
        ],
    )
    def test_too_many_decimal_places_says_so(self, buyer_client, raw):
        response = buyer_client.post(DEPOSIT, data=raw, content_type="application/json")
        body = assert_error(response, 400, "VALIDATION_ERROR")
        assert body["details"]["amount"] == ["Must have at most 2 decimal places."]

    def test_too_large_still_says_so(self, buyer_client):
        body = assert_error(buyer_client.post(DEPOSIT, {"amount": "1e13"}, format="json"), 400, "VALIDATION_ERROR")
        assert body["details"]["amount"] == ["Must be less than 10^12."]

    @pytest.mark.parametrize("price", ["５", "1_0", " 5 "])
    def test_prices_follow_the_same_rule(self, merchant_client, price):
        body = {"name": "Lamp", "price": price, "availableUnits": 1}
        assert_error(merchant_client.post(PRODUCTS, body, format="json"), 400, "VALIDATION_ERROR")
        assert not Product.objects.exists()

    @pytest.mark.parametrize("value", ["５", "1_0", " 5 "])
    def test_price_filters_follow_the_same_rule(self, api_client, value):
        assert_error(api_client.get(PRODUCTS, {"minPrice": value}), 400, "VALIDATION_ERROR")


class TestIntegers:
    def test_an_integral_json_number_is_an_integer(self, merchant_client):
        response = merchant_client.post(
            PRODUCTS, data='{"name": "Lamp", "price": 5, "availableUnits": 5.0}', content_type="application/json"
        )
        assert response.status_code == 201, response.content
        assert response.json()["availableUnits"] == 5
        assert Product.objects.get().available_units == 5

    def test_an_integral_quantity_buys(self, buyer, buyer_client):
        funded_wallet(user=buyer, amount="100.00")
        product = ProductFactory(price=Decimal("10.00"), available_units=5)
        raw = f'{{"productId": "{product.pk}", "paymentMethod": "WALLET", "quantity": 2.0}}'
        response = buyer_client.post("/api/v1/orders", data=raw, content_type="application/json")
        assert response.status_code == 201, response.content
        assert response.json()["quantity"] == 2 and Order.objects.get().quantity == 2

    @pytest.mark.parametrize("units", ["5.5", "1e400", '"5"', "true", "5e-1"])
    def test_anything_else_is_refused(self, merchant_client, units):
        raw = f'{{"name": "Lamp", "price": 5, "availableUnits": {units}}}'
        body = assert_error(
            merchant_client.post(PRODUCTS, data=raw, content_type="application/json"), 400, "VALIDATION_ERROR"
        )
        assert "availableUnits" in body["details"]


class TestNullText:
    def test_null_names_on_registration_mean_empty(self, api_client):
        response = api_client.post(
            "/api/v1/auth/register",
            {
                "email": "a@example.com",
                "password": "SecurePass123!",
                "role": "USER",
                "firstName": None,
                "lastName": None,
            },
            format="json",
        )
        assert response.status_code == 201, response.content
        assert (response.json()["user"]["firstName"], response.json()["user"]["lastName"]) == ("", "")
        assert User.objects.get().first_name == ""

    def test_null_description_means_empty(self, merchant_client):
        body = {"name": "Lamp", "description": None, "price": "5.00", "availableUnits": 1}
        created = merchant_client.post(PRODUCTS, body, format="json")
        assert created.status_code == 201, created.content
        assert created.json()["description"] == ""
        product_id = created.json()["id"]
        merchant_client.patch(f"{PRODUCTS}/{product_id}", {"description": "Bright."}, format="json")
        patched = merchant_client.patch(f"{PRODUCTS}/{product_id}", {"description": None}, format="json")
        assert patched.status_code == 200 and patched.json()["description"] == ""

    def test_null_deposit_description_is_as_if_empty(self, buyer_client):
        with_null = buyer_client.post(DEPOSIT, {"amount": "5.00", "description": None}, format="json")
        with_empty = buyer_client.post(DEPOSIT, {"amount": "5.00", "description": ""}, format="json")
        assert with_null.status_code == with_empty.status_code == 200, with_null.content
        assert with_null.json()["transaction"]["description"] == with_empty.json()["transaction"]["description"]

    @pytest.mark.parametrize(("path", "field"), [(PRODUCTS, "name"), ("/api/v1/auth/register", "email")])
    def test_null_on_a_required_text_field_is_refused(self, api_client, merchant_client, path, field):
        client = merchant_client if path == PRODUCTS else api_client
        body = {"name": "Lamp", "price": "5.00", "availableUnits": 1, "password": "SecurePass123!", "role": "USER"}
        body = {
            key: value for key, value in body.items() if (path == PRODUCTS) == (key != "password" and key != "role")
        }
        response = client.post(path, {**body, field: None}, format="json")
        assert field in assert_error(response, 400, "VALIDATION_ERROR")["details"]
