"""The JSON parser every API view uses: hostile bodies are 400s in the envelope, never 500s."""

import logging

import pytest

from paymentflow.api.parsers import MAX_JSON_DEPTH
from paymentflow.testing.assertions import assert_error

pytestmark = pytest.mark.django_db


def nested(depth: int) -> str:
    return '{"email":' + "[" * depth + "]" * depth + ',"password":"x"}'


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 500, 5_000, 100_000])
@pytest.mark.parametrize("path", ["/api/v1/auth/login", "/api/v1/auth/register", "/api/v1/wallet/deposit"])
def test_json_nested_too_deep_is_a_400_with_nothing_logged(api_client, buyer_client, caplog, path, depth):
    client = buyer_client if path.startswith("/api/v1/wallet") else api_client
    with caplog.at_level(logging.WARNING):
        response = client.post(path, data=nested(depth), content_type="application/json")
    body = assert_error(response, 400, "PARSE_ERROR")
    assert str(MAX_JSON_DEPTH) in body["message"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert "Traceback" not in caplog.text


def test_json_at_the_depth_limit_reaches_validation(api_client):
    # One level for the body object itself: the field's value may nest MAX_JSON_DEPTH - 1 deep.
    response = api_client.post("/api/v1/auth/login", data=nested(MAX_JSON_DEPTH - 1), content_type="application/json")
    assert_error(response, 400, "VALIDATION_ERROR")


def test_wide_but_shallow_json_is_not_too_deep(api_client):
    wide = '{"email":[' + ",".join(["[]"] * 5_000) + '],"password":"x"}'
    response = api_client.post("/api/v1/auth/login", data=wide, content_type="application/json")
    assert_error(response, 400, "VALIDATION_ERROR")


def test_brackets_inside_strings_do_not_count(api_client):
    response = api_client.post(
        "/api/v1/auth/login",
        data='{"email":"' + "[" * 1_000 + '","password":"x"}',
        content_type="application/json",
    )
    assert_error(response, 400, "VALIDATION_ERROR")
