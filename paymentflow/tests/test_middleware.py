"""Requests Django itself refuses before any view runs still get the envelope on API paths."""

import json
import logging

import pytest
from django.test import override_settings

from paymentflow.testing.assertions import assert_error

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("debug", [False, True])
@override_settings(ALLOWED_HOSTS=["testserver"])
def test_a_host_not_allowed_is_a_400_envelope(client, settings, caplog, debug):
    settings.DEBUG = debug
    with caplog.at_level(logging.INFO):
        response = client.post(
            "/api/v1/auth/login", data={}, content_type="application/json", HTTP_HOST="evil.example.com"
        )
    body = assert_error(response, 400, "DISALLOWED_HOST")
    assert "host" in body["message"].lower()
    assert "evil.example.com" not in response.content.decode()  # never echo the hostile header
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@override_settings(ALLOWED_HOSTS=["testserver"])
def test_a_host_not_allowed_outside_the_api_is_still_djangos_page(client):
    response = client.get("/admin/login/", HTTP_HOST="evil.example.com")
    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/html")


@pytest.mark.parametrize("debug", [False, True])
def test_too_many_query_fields_is_a_400_envelope(client, settings, caplog, debug):
    settings.DEBUG = debug
    query = "&".join(f"f{i}=1" for i in range(settings.DATA_UPLOAD_MAX_NUMBER_FIELDS + 1))
    with caplog.at_level(logging.INFO):
        response = client.get(f"/api/v1/products?{query}")
    body = assert_error(response, 400, "TOO_MANY_FIELDS")
    assert "fields" in body["message"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_handler400_answers_the_envelope_on_api_paths(rf):
    from django.core.exceptions import SuspiciousOperation

    from paymentflow.api.views import handler400

    response = handler400(rf.get("/api/v1/orders"), SuspiciousOperation("nope"))
    assert response.status_code == 400 and response["Content-Type"].startswith("application/json")
    assert json.loads(response.content)["code"] == "BAD_REQUEST"
    assert handler400(rf.get("/admin/"), SuspiciousOperation("nope"))["Content-Type"].startswith("text/html")
