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


# --- Charset and lone surrogates ---------------------------------------------------------
# JSON is UTF-8 (RFC 8259, 8.1), and a lone surrogate escape (`\ud800`) decodes to a code
# point that is not a character: PostgreSQL cannot store it and UTF-8 cannot encode it (an
# error message echoing it could not even be rendered). Both are refused by the parser,
# before any field sees them, on every endpoint.

LONE = "\\ud800"  # the six characters of the JSON escape, not a Python surrogate


def written() -> dict:
    from accounts.models import User
    from catalog.models import Product
    from orders.models import Order
    from paymentflow.api.models import IdempotencyKey
    from wallets.models import LedgerEntry
    from webhooks.models import WebhookEndpoint

    models = (User, Product, Order, IdempotencyKey, LedgerEntry, WebhookEndpoint)
    return {model.__name__: model.objects.count() for model in models}


def post_raw(client, path, body: bytes, content_type="application/json"):
    return client.generic("POST", path, body, content_type=content_type, HTTP_IDEMPOTENCY_KEY="parser-test-1")


SURROGATE_BODIES = [
    ("/api/v1/auth/register", f'{{"email":"{LONE}@x.com","password":"Zq9!longpassword","role":"USER"}}'),
    ("/api/v1/auth/register", f'{{"email":"a@x.com","password":"Zq9!longpassword","role":"{LONE}"}}'),
    (
        "/api/v1/auth/register",
        f'{{"email":"a@x.com","password":"Zq9!longpassword","role":"USER","firstName":"{LONE}"}}',
    ),
    ("/api/v1/auth/login", f'{{"email":"{LONE}@x.com","password":"Zq9!longpassword"}}'),
    ("/api/v1/auth/login", f'{{"email":"a@x.com","password":"x{LONE}"}}'),
    ("/api/v1/products", f'{{"name":"Lamp {LONE}","price":"1.00","availableUnits":1}}'),
    ("/api/v1/products", '{"name":"Lamp","description":"\\uDBFF","price":"1.00","availableUnits":1}'),
    ("/api/v1/products", f'{{"name":"Lamp","price":"1.00","availableUnits":1,"{LONE}":1}}'),
    ("/api/v1/wallet/deposit", f'{{"amount":"1.00","{LONE}":"x"}}'),
    ("/api/v1/wallet/deposit", '{"amount":"1.00","description":"\\udfff"}'),  # a lone low surrogate
    ("/api/v1/wallet/deposit", '{"amount":"1.00","description":"\\ude00\\ud83d"}'),  # a pair, reversed
    ("/api/v1/orders", f'{{"productId":"{LONE}","quantity":1,"paymentMethod":"WALLET"}}'),
    (
        "/api/v1/orders",
        f'{{"productId":"00000000-0000-0000-0000-000000000000","quantity":1,"paymentMethod":"{LONE}"}}',
    ),
    ("/api/v1/webhook-endpoints", f'{{"url":"https://example.com/h","events":["{LONE}"]}}'),
    ("/api/v1/webhook-endpoints", f'{{"url":"https://example.com/h","events":[["{LONE}"]]}}'),
]


@pytest.mark.parametrize(("path", "body"), SURROGATE_BODIES)
def test_a_lone_surrogate_anywhere_is_a_400_and_nothing_is_written(merchant_client, caplog, path, body):
    before = written()
    with caplog.at_level(logging.WARNING):
        response = post_raw(merchant_client, path, body.encode())
    body = assert_error(response, 400, "PARSE_ERROR")
    assert "surrogate" in body["message"]
    assert written() == before
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_surrogate_pair_is_one_character_and_accepted(merchant_client):
    body = '{"name":"Lamp \\ud83d\\udca1","price":"1.00","availableUnits":1}'
    response = post_raw(merchant_client, "/api/v1/products", body.encode())
    assert response.status_code == 201, response.content
    assert response.json()["name"] == "Lamp \U0001f4a1"


def test_an_escaped_backslash_before_u_d800_is_plain_text(merchant_client):
    body = '{"name":"Lamp \\\\ud800","price":"1.00","availableUnits":1}'  # JSON for: Lamp \ud800
    response = post_raw(merchant_client, "/api/v1/products", body.encode())
    assert response.status_code == 201, response.content
    assert response.json()["name"] == "Lamp \\ud800"


REGISTRATION = '{"email":"jose@example.com","password":"Zq9!longpassword","role":"USER"}'


@pytest.mark.parametrize(
    "charset", ["latin-1", "ISO-8859-1", "foo", "rot13", "hex", "base64", "zlib", "utf-16", "utf-32", "ascii", ""]
)
@pytest.mark.parametrize("path", ["/api/v1/auth/register", "/api/v1/auth/login", "/api/v1/products"])
def test_a_body_declared_in_another_charset_than_utf8_is_a_400(merchant_client, caplog, charset, path):
    before = written()
    with caplog.at_level(logging.WARNING):
        response = post_raw(merchant_client, path, REGISTRATION.encode(), f"application/json; charset={charset}")
    body = assert_error(response, 400, "PARSE_ERROR")
    assert "UTF-8" in body["message"]
    assert not charset or charset.lower() not in body["message"].lower().replace("utf-8", "")  # not echoed
    assert written() == before
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_latin1_bytes_declared_latin1_are_refused_not_misread(api_client):
    body = '{"email":"jös@example.com","password":"Zq9!longpassword","role":"USER"}'.encode("latin-1")
    response = post_raw(api_client, "/api/v1/auth/register", body, "application/json; charset=latin-1")
    assert_error(response, 400, "PARSE_ERROR")


@pytest.mark.parametrize("charset", ["utf-8", "UTF-8", '"utf-8"', "utf8", " utf-8"])
def test_utf8_declared_in_any_spelling_is_read(api_client, charset):
    body = '{"email":"jose@exämple.com","password":"Zq9!longpassword","role":"USER"}'.encode()
    response = post_raw(api_client, "/api/v1/auth/register", body, f"application/json; charset={charset}")
    assert response.status_code == 201, response.content
    assert response.json()["user"]["email"] == "jose@xn--exmple-cua.com"
