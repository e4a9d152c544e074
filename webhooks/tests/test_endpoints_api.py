"""`/webhook-endpoints`: merchants only, each seeing only its own; the secret shown once;
URLs checked for internal addresses (SSRF) at registration."""

import base64

import pytest

from accounts.tests.factories import MerchantFactory
from paymentflow.testing.assertions import assert_error
from webhooks.models import WebhookDelivery, WebhookEndpoint
from webhooks.tests.factories import WebhookEndpointFactory

ENDPOINTS = "/api/v1/webhook-endpoints"
PUBLIC_URL = "https://93.184.215.14/payment-flow"  # a public address literal: no DNS in tests
ENDPOINT_KEYS = {"id", "url", "events", "description", "isActive", "disabledReason", "createdAt", "updatedAt"}
DELIVERY_KEYS = {
    "id",
    "eventId",
    "eventType",
    "status",
    "attempts",
    "lastStatusCode",
    "nextAttemptAt",
    "createdAt",
    "deliveredAt",
}


def create(client, **body):
    return client.post(ENDPOINTS, {"url": PUBLIC_URL, **body})


class TestCreate:
    def test_201_with_the_secret_shown_once(self, merchant, merchant_client):
        response = create(merchant_client, events=["order.refunded", "order.completed"], description="shop")
        assert response.status_code == 201, response.content
        body = response.json()
        assert set(body) == ENDPOINT_KEYS | {"secret"}
        assert body["url"] == PUBLIC_URL and body["isActive"] is True and body["disabledReason"] is None
        assert body["events"] == ["order.completed", "order.refunded"] and body["description"] == "shop"
        assert body["secret"].startswith("whsec_") and len(base64.b64decode(body["secret"][6:])) == 24
        stored = WebhookEndpoint.objects.get(pk=body["id"])
        assert stored.merchant == merchant and stored.secret == body["secret"]
        # Never again: not in the list, not in the detail.
        assert "secret" not in merchant_client.get(f"{ENDPOINTS}/{body['id']}").json()
        assert all("secret" not in e for e in merchant_client.get(ENDPOINTS).json()["data"])

    def test_no_events_means_all_and_null_description_means_empty(self, merchant_client):
        body = create(merchant_client, description=None).json()
        assert body["events"] == [] and body["description"] == ""

    def test_every_secret_is_new(self, merchant_client):
        assert create(merchant_client).json()["secret"] != create(merchant_client).json()["secret"]

    @pytest.mark.parametrize(
        "body, field",
        [
            ({"events": ["order.shipped"]}, "events"),
            ({"events": "order.completed"}, "events"),
            ({"url": None}, "url"),
            ({"description": "x" * 256}, "description"),
            ({"isActive": False}, "isActive"),
            ({"secret": "whsec_mine"}, "secret"),  # mass assignment
        ],
    )
    def test_bad_input_is_400_naming_the_field(self, merchant_client, body, field):
        details = assert_error(create(merchant_client, **body), 400, "VALIDATION_ERROR")["details"]
        assert field in details
        assert not WebhookEndpoint.objects.exists()

    @pytest.mark.parametrize(
        "url",
        [
            "https://127.0.0.1/hook",
            "https://localhost/hook",
            "https://10.1.2.3/hook",
            "https://169.254.169.254/latest/meta-data",
            "https://[::1]/hook",
            "https://[fe80::1]/hook",
            "https://[::ffff:127.0.0.1]/hook",
            "http://93.184.215.14/hook",
        ],
    )
    def test_internal_or_plain_http_urls_are_400(self, merchant_client, url, settings):
        settings.WEBHOOK_ALLOW_PRIVATE_URLS = False
        body = assert_error(create(merchant_client, url=url), 400, "WEBHOOK_URL_NOT_ALLOWED")
        assert "url" in body["details"]
        assert not WebhookEndpoint.objects.exists()

    def test_the_operator_flag_allows_them(self, merchant_client, private_urls_allowed):
        assert create(merchant_client, url="http://localhost:9999/hook").status_code == 201

    def test_a_merchant_has_at_most_ten(self, merchant, merchant_client):
        WebhookEndpointFactory.create_batch(10, merchant=merchant)
        assert_error(create(merchant_client), 409, "TOO_MANY_WEBHOOK_ENDPOINTS")


class TestAccess:
    def test_users_are_403_and_anonymous_401(self, buyer_client, api_client):
        assert_error(create(buyer_client), 403, "PERMISSION_DENIED")
        assert_error(buyer_client.get(ENDPOINTS), 403, "PERMISSION_DENIED")
        assert_error(api_client.get(ENDPOINTS), 401, "NOT_AUTHENTICATED")

    def test_another_merchants_endpoint_is_404_everywhere(self, merchant_client):
        theirs = WebhookEndpointFactory()
        WebhookDelivery.objects.create(
            endpoint=theirs, event_id=theirs.pk, event_type="order.completed", payload="{}", next_attempt_at=None,
            status="SUCCEEDED", created_at=theirs.created_at, updated_at=theirs.created_at,
        )  # fmt: skip
        url = f"{ENDPOINTS}/{theirs.pk}"
        assert_error(merchant_client.get(url), 404, "NOT_FOUND")
        assert_error(merchant_client.patch(url, {"description": "mine"}), 404, "NOT_FOUND")
        assert_error(merchant_client.delete(url), 404, "NOT_FOUND")
        assert_error(merchant_client.get(f"{url}/deliveries"), 404, "NOT_FOUND")
        assert merchant_client.get(ENDPOINTS).json()["data"] == []
        theirs.refresh_from_db()
        assert theirs.description == "" and theirs.deliveries.count() == 1


class TestReadUpdateDelete:
    def test_list_is_newest_first_and_paged(self, merchant, merchant_client):
        first, second = WebhookEndpointFactory(merchant=merchant), WebhookEndpointFactory(merchant=merchant)
        body = merchant_client.get(f"{ENDPOINTS}?limit=1").json()
        assert [e["id"] for e in body["data"]] == [str(second.pk)]
        assert body["meta"] == {"total": 2, "page": 1, "limit": 1, "totalPages": 2}
        assert set(body["data"][0]) == ENDPOINT_KEYS
        assert first.pk

    def test_patch_changes_what_it_is_given(self, merchant, merchant_client):
        endpoint = WebhookEndpointFactory(merchant=merchant, events=["order.completed"])
        response = merchant_client.patch(
            f"{ENDPOINTS}/{endpoint.pk}", {"events": [], "description": "all of them", "isActive": False}
        )
        assert response.status_code == 200, response.content
        body = response.json()
        assert (body["events"], body["description"], body["isActive"], body["url"]) == (
            [],
            "all of them",
            False,
            endpoint.url,
        )

    def test_patch_checks_the_url_again(self, merchant, merchant_client, settings):
        settings.WEBHOOK_ALLOW_PRIVATE_URLS = False
        endpoint = WebhookEndpointFactory(merchant=merchant)
        assert_error(
            merchant_client.patch(f"{ENDPOINTS}/{endpoint.pk}", {"url": "https://192.168.0.1/x"}),
            400,
            "WEBHOOK_URL_NOT_ALLOWED",
        )
        endpoint.refresh_from_db()
        assert endpoint.url == "https://hooks.example.com/payment-flow"

    def test_turning_a_disabled_endpoint_on_clears_why(self, merchant, merchant_client):
        endpoint = WebhookEndpointFactory(merchant=merchant, is_active=False, disabled_reason="Every attempt failed.")
        assert merchant_client.get(f"{ENDPOINTS}/{endpoint.pk}").json()["disabledReason"] == "Every attempt failed."
        body = merchant_client.patch(f"{ENDPOINTS}/{endpoint.pk}", {"isActive": True}).json()
        assert body["isActive"] is True and body["disabledReason"] is None

    def test_delete_is_204_and_then_404(self, merchant, merchant_client):
        endpoint = WebhookEndpointFactory(merchant=merchant)
        assert merchant_client.delete(f"{ENDPOINTS}/{endpoint.pk}").status_code == 204
        assert_error(merchant_client.get(f"{ENDPOINTS}/{endpoint.pk}"), 404, "NOT_FOUND")

    def test_deliveries_list_filters_by_status(self, merchant, merchant_client):
        endpoint = WebhookEndpointFactory(merchant=merchant)
        for status in ("SUCCEEDED", "FAILED"):
            WebhookDelivery.objects.create(
                endpoint=endpoint, event_id=endpoint.pk if status == "FAILED" else MerchantFactory().pk,
                event_type="order.completed", payload="{}", status=status, attempts=1,
                created_at=endpoint.created_at, updated_at=endpoint.created_at,
            )  # fmt: skip
        body = merchant_client.get(f"{ENDPOINTS}/{endpoint.pk}/deliveries?status=FAILED").json()
        assert [d["status"] for d in body["data"]] == ["FAILED"] and set(body["data"][0]) == DELIVERY_KEYS
        assert body["meta"]["total"] == 1
        assert merchant_client.get(f"{ENDPOINTS}/{endpoint.pk}/deliveries").json()["meta"]["total"] == 2
        assert_error(merchant_client.get(f"{ENDPOINTS}/{endpoint.pk}/deliveries?status=LOST"), 400, "VALIDATION_ERROR")


class TestQueryBudgets:
    """Counted with the token's user; lists do not grow with their page."""

    def test_lists(self, merchant, merchant_client, django_assert_max_num_queries):
        endpoint = WebhookEndpointFactory(merchant=merchant)
        WebhookEndpointFactory.create_batch(5, merchant=merchant)
        for n in range(5):
            WebhookDelivery.objects.create(
                endpoint=endpoint, event_id=MerchantFactory().pk, event_type="order.completed", payload="{}",
                status="SUCCEEDED", attempts=1, created_at=endpoint.created_at, updated_at=endpoint.created_at,
            )  # fmt: skip
        with django_assert_max_num_queries(3):
            assert len(merchant_client.get(ENDPOINTS).json()["data"]) == 6
        with django_assert_max_num_queries(4):
            assert len(merchant_client.get(f"{ENDPOINTS}/{endpoint.pk}/deliveries").json()["data"]) == 5
