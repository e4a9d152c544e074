import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.test import override_settings
from rest_framework.request import Request
from rest_framework.test import APIClient, APIRequestFactory

from accounts.models import User
from accounts.tests.factories import UserFactory
from paymentflow.api.pagination import PagePagination
from paymentflow.testing.assertions import assert_error as envelope

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]


class TestErrorEnvelope:
    def test_unknown_api_path_is_a_json_404(self, api_client):
        body = envelope(api_client.get("/api/v1/nothing-here"), 404, "NOT_FOUND")
        assert body["path"] == "/api/v1/nothing-here"
        assert body["method"] == "GET"
        assert body["error"] == "Not Found"
        assert body["timestamp"].endswith("Z")

    @override_settings(DEBUG=True)
    def test_unknown_api_path_is_json_even_in_debug(self, api_client):
        envelope(api_client.post("/api/v2/whatever", {}, format="json"), 404, "NOT_FOUND")

    def test_post_to_unknown_api_path_is_a_json_404_not_a_csrf_page(self):
        # The test client skips CSRF checks unless asked; a real client does not.
        client = APIClient(enforce_csrf_checks=True)
        envelope(client.post("/api/v1/orders/null,null/cancel", {}, format="json"), 404, "NOT_FOUND")

    def test_csrf_refusal_is_the_envelope_on_api_paths(self, rf):
        # Every view on an API path is CSRF-exempt today (DRF views, the catch-all, the
        # probes); should a plain Django view ever be added there, its refusal is the envelope.
        from paymentflow.api.views import csrf_failure

        response = csrf_failure(rf.post("/api/v1/anything"))
        assert response.status_code == 403 and response["Content-Type"].startswith("application/json")
        assert json.loads(response.content)["code"] == "CSRF_FAILED"
        assert csrf_failure(rf.post("/admin/login/"))["Content-Type"].startswith("text/html")

    @pytest.mark.parametrize("host", ["N$UI", "evil.example.com"])
    def test_a_bad_or_unknown_host_header_is_the_envelope(self, merchant_client, settings, host):
        """Refused before any view (Django's DisallowedHost): found by the fuzzing of
        PATCH /webhook-endpoints/{id}, which sent `Host: N$UI` and got Django's HTML 400."""
        settings.ALLOWED_HOSTS = ["testserver"]
        response = merchant_client.patch(
            "/api/v1/webhook-endpoints/14abf641-0608-41c3-bdfa-bf75849da865", {}, HTTP_HOST=host
        )
        body = envelope(response, 400, "DISALLOWED_HOST")
        assert host not in body["message"]
        page = APIClient().get("/admin/login/", HTTP_HOST=host)
        assert page.status_code == 400 and page["Content-Type"].startswith("text/html")  # not an API path

    def test_wrong_method_is_405(self, buyer_client):
        body = envelope(buyer_client.delete("/api/v1/auth/me"), 405, "METHOD_NOT_ALLOWED")
        assert body["error"] == "Method Not Allowed"

    def test_malformed_json_is_400_parse_error(self, api_client):
        response = api_client.post("/api/v1/auth/login", data='{"email": "a@b.c",', content_type="application/json")
        body = envelope(response, 400, "PARSE_ERROR")
        assert "line" not in body["message"].lower() or "JSON" in body["message"]

    def test_non_object_body_is_a_validation_error(self, api_client):
        response = api_client.post("/api/v1/auth/login", data="[1, 2]", content_type="application/json")
        envelope(response, 400, "VALIDATION_ERROR")

    def test_unsupported_media_type(self, api_client):
        response = api_client.post(
            "/api/v1/auth/login", data="email=a", content_type="application/x-www-form-urlencoded"
        )
        envelope(response, 415, "UNSUPPORTED_MEDIA_TYPE")

    def test_oversized_body_is_413(self, api_client):
        response = api_client.post(
            "/api/v1/auth/login", data=json.dumps({"email": "a" * 300_000}), content_type="application/json"
        )
        envelope(response, 413, "PAYLOAD_TOO_LARGE")

    def test_unhandled_error_is_a_500_without_a_trace(self, buyer_client, monkeypatch, caplog):
        from accounts import views

        def explode(self, request):
            raise RuntimeError("SELECT secret FROM internals")

        monkeypatch.setattr(views.MeView, "get", explode)
        with caplog.at_level(logging.ERROR):
            response = buyer_client.get("/api/v1/auth/me", HTTP_X_REQUEST_ID="req-123")
        body = envelope(response, 500, "INTERNAL_ERROR")
        assert "SELECT" not in response.content.decode()
        assert "Traceback" not in response.content.decode()
        assert response["X-Request-ID"] == "req-123"
        logged = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert logged and logged[0].request_id == "req-123"
        assert body["message"]

    def test_validation_details_are_camel_case(self, api_client):
        response = api_client.post("/api/v1/auth/refresh", {"refresh_token_typo": "x"}, format="json")
        body = envelope(response, 400, "VALIDATION_ERROR")
        assert "refreshToken" in body["details"]


class TestRequestId:
    def test_generated_when_absent(self, api_client):
        response = api_client.get("/healthz")
        assert len(response["X-Request-ID"]) == 32

    def test_echoed_when_sane(self, api_client):
        assert api_client.get("/healthz", HTTP_X_REQUEST_ID="abc-123")["X-Request-ID"] == "abc-123"

    def test_replaced_when_hostile(self, api_client):
        response = api_client.get("/healthz", HTTP_X_REQUEST_ID="bad id\nwith newline")
        assert response["X-Request-ID"] != "bad id\nwith newline"
        assert len(response["X-Request-ID"]) == 32


class TestHealth:
    def test_healthz(self, api_client):
        response = api_client.get("/healthz")
        assert response.status_code == 200
        assert response.json() == {"status": "ok"}

    @pytest.mark.parametrize("path", ["/healthz", "/readyz"])
    @pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
    def test_probes_are_read_only(self, path, method):
        client = APIClient(enforce_csrf_checks=True)  # as a real client: the 405 comes first
        envelope(getattr(client, method)(path, {}, format="json"), 405, "METHOD_NOT_ALLOWED")
        assert client.head(path).status_code == 200

    def test_readyz_with_database_and_redis(self, api_client):
        response = api_client.get("/readyz")
        assert response.status_code == 200
        assert response.json()["checks"] == {"database": "ok", "cache": "ok"}

    def test_readyz_is_503_when_the_cache_is_unreachable(self, api_client):
        broken = {
            "default": {
                "BACKEND": "django_redis.cache.RedisCache",
                "LOCATION": "redis://127.0.0.1:1/0",  # nothing listens on port 1
                "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.2, "SOCKET_TIMEOUT": 0.2, "IGNORE_EXCEPTIONS": True},
            }
        }
        with override_settings(CACHES=broken):  # Django rebuilds the cache handler on this
            response = api_client.get("/readyz")
        assert response.status_code == 503
        assert response.json()["checks"] == {"database": "ok", "cache": "down"}


class TestPagination:
    def _page(self, query):
        request = Request(APIRequestFactory().get("/x", query))
        paginator = PagePagination()
        items = paginator.paginate_queryset(User.objects.order_by("email"), request)
        return items, paginator.get_paginated_response([u.email for u in items]).data

    def test_meta(self):
        UserFactory.create_batch(5)
        items, data = self._page({"page": 2, "limit": 2})
        assert len(items) == 2
        assert data["meta"] == {"total": 5, "page": 2, "limit": 2, "total_pages": 3}

    def test_past_the_end_is_empty(self):
        UserFactory.create_batch(2)
        items, data = self._page({"page": 9})
        assert items == [] and data["meta"]["total"] == 2

    def test_limit_is_capped(self):
        _, data = self._page({"limit": 1000})
        assert data["meta"]["limit"] == 100

    @pytest.mark.parametrize("query", [{"page": 0}, {"page": "x"}, {"limit": -1}, {"limit": "1.5"}])
    def test_bad_values_are_400(self, query):
        from rest_framework.exceptions import ValidationError

        with pytest.raises(ValidationError):
            self._page(query)


class TestDocs:
    def test_schema_validates_without_warnings(self):
        call_command("spectacular", "--validate", "--fail-on-warn", "--file", os.devnull)

    def test_schema_shows_auth_endpoints_in_camel_case(self, api_client):
        response = api_client.get("/api/schema/?format=json")
        assert response.status_code == 200
        schema = json.loads(response.content)
        for name in ("register", "login", "refresh", "logout", "me"):
            assert f"/api/v1/auth/{name}" in schema["paths"]
        auth = schema["components"]["schemas"]["AuthResponse"]["properties"]
        assert {"accessToken", "refreshToken", "user"} <= set(auth)
        assert "firstName" in schema["components"]["schemas"]["User"]["properties"]
        assert "Error" in schema["components"]["schemas"]

    def test_swagger_ui_and_redoc_use_local_assets(self, api_client):
        for url in ("/api/docs/", "/api/redoc/"):
            response = api_client.get(url)
            assert response.status_code == 200
            html = response.content.decode()
            assert "/static/drf_spectacular_sidecar/" in html
            assert "cdn." not in html and "unpkg" not in html

    def test_sidecar_assets_are_served(self, client):
        response = client.get("/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js")
        assert response.status_code == 200

    def test_admin_login_page(self, client):
        assert client.get("/admin/login/").status_code == 200


def _run_manage(args, extra_env):
    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SECRET_KEY", "DJANGO_SETTINGS_MODULE", "REDIS_URL")}
    env.update(extra_env)
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


class TestProductionSettings:
    def test_refuses_to_start_without_a_secret_key(self):
        result = _run_manage(["check"], {"DJANGO_SETTINGS_MODULE": "paymentflow.settings.production"})
        assert result.returncode != 0
        assert "DJANGO_SECRET_KEY" in result.stderr

    def test_refuses_to_start_without_redis(self):
        result = _run_manage(
            ["check"], {"DJANGO_SETTINGS_MODULE": "paymentflow.settings.production", "DJANGO_SECRET_KEY": "k" * 50}
        )
        assert result.returncode != 0
        assert "REDIS_URL must be set in production" in result.stderr

    def test_base_refuses_without_key_when_debug_is_off(self):
        result = _run_manage(["check"], {"DJANGO_SETTINGS_MODULE": "paymentflow.settings.base", "DJANGO_DEBUG": "0"})
        assert result.returncode != 0
        assert "DJANGO_SECRET_KEY" in result.stderr

    def test_check_deploy_is_clean(self):
        result = _run_manage(
            ["check", "--deploy", "--fail-level", "WARNING"],
            {
                "DJANGO_SETTINGS_MODULE": "paymentflow.settings.production",
                "DJANGO_SECRET_KEY": "x7#kq!2@p" * 8,
                "REDIS_URL": "redis://127.0.0.1:6379/0",
            },
        )
        assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.django_db(transaction=True)
def test_database_outage_is_a_503_in_the_envelope(buyer_client):
    """The database is really unreachable (its port points at nothing), not simulated."""
    from django.db import connection

    connection.close()
    real_port = connection.settings_dict["PORT"]
    connection.settings_dict["PORT"] = "1"  # nothing listens on port 1
    try:
        response = buyer_client.get("/api/v1/auth/me")
    finally:
        connection.close()
        connection.settings_dict["PORT"] = real_port
    body = envelope(response, 503, "DATABASE_UNAVAILABLE")
    assert response["Retry-After"] == "1"
    assert "port" not in body["message"].lower() and "connection" not in body["message"].lower()


class TestEmptyQueryParameters:
    """`?status=` is not "no filter": an enum, a uuid or a number is never empty (the schema
    says so, and the original service's validation refused it too)."""

    @pytest.mark.parametrize(
        "path, parameter",
        [
            ("/api/v1/orders?status=", "status"),
            ("/api/v1/orders?paymentMethod=", "paymentMethod"),
            ("/api/v1/products?merchantId=", "merchantId"),
            ("/api/v1/products?minPrice=", "minPrice"),
            ("/api/v1/wallet/transactions?type=", "type"),
            ("/api/v1/wallet/transactions?page=", "page"),
            ("/api/v1/products?limit=", "limit"),
        ],
    )
    def test_an_empty_value_is_a_400_naming_it(self, buyer_client, path, parameter):
        body = envelope(buyer_client.get(path), 400, "VALIDATION_ERROR")
        assert parameter in body["details"], body

    def test_an_empty_search_is_no_search(self, buyer_client):
        assert buyer_client.get("/api/v1/products?search=").status_code == 200

    def test_absent_is_still_no_filter(self, buyer_client):
        for path in ("/api/v1/orders", "/api/v1/products", "/api/v1/wallet/transactions"):
            assert buyer_client.get(path).status_code == 200
