"""The public list's Redis cache: hits cost no query, writes invalidate it on commit, and a
Redis that is down or silent only costs speed."""

import logging
import socket

import pytest
from django.core.cache import cache
from django.db import transaction
from django.test import override_settings

from catalog import cache as list_cache
from catalog import services
from catalog.models import Product
from catalog.tests.factories import ProductFactory

LIST = "/api/v1/products"


def detail(product) -> str:
    return f"/api/v1/products/{product.pk}"


def redis_caches(location: str) -> dict:
    return {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": location,
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.25, "SOCKET_TIMEOUT": 0.25, "IGNORE_EXCEPTIONS": True},
        }
    }


CLOSED_PORT = redis_caches("redis://127.0.0.1:1/0")  # nothing listens on port 1


@pytest.fixture
def silent_redis():
    """A TCP port that accepts connections and never answers: every Redis call times out."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    yield redis_caches(f"redis://127.0.0.1:{server.getsockname()[1]}/0")
    server.close()


def names(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [p["name"] for p in response.json()]


@pytest.mark.django_db
class TestCacheHits:
    def test_the_suite_runs_against_redis(self):
        from django.core.cache import caches
        from django_redis.cache import RedisCache

        assert isinstance(caches["default"], RedisCache)

    def test_second_identical_request_does_no_query(self, api_client, django_assert_num_queries):
        ProductFactory.create_batch(3)
        first = api_client.get(LIST, {"limit": 2, "page": 2})
        with django_assert_num_queries(0):
            second = api_client.get(LIST, {"limit": 2, "page": 2})
        assert second.status_code == 200
        assert second.json() == first.json()
        assert len(second.json()) == 1
        assert second["X-Total-Count"] == first["X-Total-Count"] == "3"
        assert second["Link"] == first["Link"]

    def test_equivalent_queries_share_an_entry(self, api_client, django_assert_num_queries):
        ProductFactory()
        api_client.get(LIST, {"minPrice": "5"})
        with django_assert_num_queries(0):
            assert api_client.get(LIST, {"minPrice": "5.00", "unrelated": "x"}).status_code == 200

    def test_each_distinct_query_has_its_own_entry(self, api_client, django_assert_num_queries):
        cheap = ProductFactory(price="5.00")
        ProductFactory(price="50.00")
        assert len(api_client.get(LIST).json()) == 2
        with django_assert_num_queries(2):
            response = api_client.get(LIST, {"maxPrice": "10"})
        assert [p["id"] for p in response.json()] == [str(cheap.pk)]

    def test_detail_is_never_cached(self, api_client, product):
        api_client.get(LIST)
        api_client.get(detail(product))
        # Behind the services' back (no invalidation): the list still serves its cached copy,
        # the detail reads the row again.
        Product.objects.filter(pk=product.pk).update(name="Renamed")
        assert names(api_client.get(LIST)) == [product.name]
        assert api_client.get(detail(product)).json()["name"] == "Renamed"


@pytest.mark.django_db(transaction=True)
class TestInvalidation:
    def test_every_write_is_visible_on_the_next_list_request(self, api_client, merchant, client_for):
        merchant_client = client_for(merchant)
        assert names(api_client.get(LIST)) == []

        created = merchant_client.post(LIST, {"name": "Lamp", "price": "9.00", "availableUnits": 2}, format="json")
        assert created.status_code == 201
        assert names(api_client.get(LIST)) == ["Lamp"]

        product_url = f"{LIST}/{created.json()['id']}"
        assert merchant_client.patch(product_url, {"name": "Desk lamp"}, format="json").status_code == 200
        assert names(api_client.get(LIST)) == ["Desk lamp"]

        assert merchant_client.patch(product_url, {"availableUnits": 0}, format="json").status_code == 200
        assert names(api_client.get(LIST)) == []

        assert merchant_client.patch(product_url, {"availableUnits": 4}, format="json").status_code == 200
        assert api_client.get(LIST).json()[0]["availableUnits"] == 4

        assert merchant_client.delete(product_url).status_code == 204
        assert names(api_client.get(LIST)) == []

    def test_order_stock_changes_invalidate(self, api_client, merchant):
        product = services.product_create(merchant=merchant, name="Mug", price="3.00", available_units=1)
        assert names(api_client.get(LIST)) == ["Mug"]
        services.product_take_units(product_id=product.pk, quantity=1)
        assert names(api_client.get(LIST)) == []
        services.product_return_units(product_id=product.pk, quantity=1)
        assert names(api_client.get(LIST)) == ["Mug"]

    def test_admin_style_adjustment_invalidates(self, api_client, merchant):
        product = services.product_create(merchant=merchant, name="Pen", price="1.00", available_units=1)
        api_client.get(LIST)
        services.product_adjust_stock(product_id=product.pk, delta=4, reason="found a box", actor=merchant)
        assert api_client.get(LIST).json()[0]["availableUnits"] == 5

    def test_the_version_moves_only_when_the_transaction_commits(self, merchant):
        product = services.product_create(merchant=merchant, name="Cup", price="2.00", available_units=1)
        before = list_cache.current_version()
        with transaction.atomic():
            services.product_update(product_id=product.pk, actor=merchant, changes={"name": "Big cup"})
            assert list_cache.current_version() == before
        assert list_cache.current_version() > before

    def test_a_rolled_back_write_does_not_invalidate(self, merchant):
        product = services.product_create(merchant=merchant, name="Cup", price="2.00", available_units=1)
        before = list_cache.current_version()
        with pytest.raises(RuntimeError), transaction.atomic():
            services.product_update(product_id=product.pk, actor=merchant, changes={"name": "Big cup"})
            raise RuntimeError("rollback")
        assert list_cache.current_version() == before

    def test_invalidation_recreates_a_missing_version(self, api_client, merchant):
        services.product_create(merchant=merchant, name="Cup", price="2.00", available_units=1)
        api_client.get(LIST)
        old = cache.get(list_cache.VERSION_KEY)
        cache.delete(list_cache.VERSION_KEY)  # evicted, or Redis restarted
        list_cache.invalidate_product_list()  # incr on a missing key: ValueError, handled
        assert cache.get(list_cache.VERSION_KEY) > old


@pytest.mark.django_db(transaction=True)
class TestRedisOutage:
    def _exercise_every_endpoint(self, api_client, merchant, client_for):
        merchant_client = client_for(merchant)
        existing = ProductFactory(name="Existing", merchant=merchant)
        assert names(api_client.get(LIST)) == ["Existing"]
        assert api_client.get(LIST)["X-Total-Count"] == "1"
        assert api_client.get(detail(existing)).json()["name"] == "Existing"

        created = merchant_client.post(LIST, {"name": "New", "price": "1.00", "availableUnits": 1}, format="json")
        assert created.status_code == 201
        assert names(api_client.get(LIST)) == ["New", "Existing"]

        assert merchant_client.patch(detail(existing), {"name": "Changed"}, format="json").status_code == 200
        assert names(api_client.get(LIST)) == ["New", "Changed"]
        assert merchant_client.delete(detail(existing)).status_code == 204
        assert names(api_client.get(LIST)) == ["New"]
        assert merchant_client.get("/api/v1/products/merchant/my-products").json()["meta"]["total"] == 2

    def test_closed_port(self, api_client, merchant, client_for, caplog):
        with override_settings(CACHES=CLOSED_PORT), caplog.at_level(logging.WARNING, logger="paymentflow.cache"):
            self._exercise_every_endpoint(api_client, merchant, client_for)
        assert any(r.name == "paymentflow.cache" for r in caplog.records)

    def test_redis_that_never_answers(self, api_client, merchant, client_for, silent_redis, caplog):
        with override_settings(CACHES=silent_redis), caplog.at_level(logging.WARNING, logger="paymentflow.cache"):
            self._exercise_every_endpoint(api_client, merchant, client_for)
        assert any(r.name == "paymentflow.cache" for r in caplog.records)

    def test_cache_primitives_never_raise(self, silent_redis):
        with override_settings(CACHES=CLOSED_PORT):
            assert list_cache.current_version() is None
            list_cache.invalidate_product_list()
            assert list_cache.cached_list_page(params={"a": 1}, build=lambda: "built") == "built"
        list_cache.reset_bypass()
        with override_settings(CACHES=silent_redis):
            assert list_cache.current_version() is None
            list_cache.invalidate_product_list()
            list_cache.set_page("k", 1)
            assert list_cache.get_page("k") is None

    def test_after_a_failure_readers_bypass_the_cache_for_a_while(
        self, api_client, monkeypatch, django_assert_num_queries
    ):
        monkeypatch.setattr(list_cache, "BYPASS_SECONDS", 3600)
        ProductFactory()
        with override_settings(CACHES=CLOSED_PORT):
            assert api_client.get(LIST).status_code == 200
        # Redis is back, but this process does not ask it until the window ends ...
        api_client.get(LIST)
        with django_assert_num_queries(2):
            api_client.get(LIST)
        # ... or until the breaker is reset: then the second request is a hit again.
        list_cache.reset_bypass()
        api_client.get(LIST)
        with django_assert_num_queries(0):
            api_client.get(LIST)
