"""The OpenAPI document is written for API users (issue 12, items 19 and 20).

Generic on purpose: every operation in `/api/schema/`, today's and any added later, is held to
a summary, a tag the document describes, a description of its own, the error statuses it
can answer, and text free of implementation detail."""

import json
import re

import pytest

pytestmark = pytest.mark.django_db

METHODS = {"get", "post", "put", "patch", "delete"}
# Words of the code, not of the API: a text with one of them was written for engineers.
JARGON = re.compile(
    r"\b(DRF|serializers?|deep-cop\w*|prototype|querysets?|ORM|select_for_update|CPU|docstring|"
    r"on the wire|partial=True|swagger_fake_view|TODO|refuses fields it does not know)\b|\b(GET|POST):",
    re.IGNORECASE,
)
ERROR_STATUSES_EVERYWHERE = {"400", "404", "405", "406", "413", "429", "503"}


@pytest.fixture(scope="module")
def schema(django_db_blocker):
    from rest_framework.test import APIClient

    with django_db_blocker.unblock():
        response = APIClient().get("/api/schema/?format=json")
    assert response.status_code == 200
    return json.loads(response.content)


def operations(schema):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield f"{method.upper()} {path}", operation


def texts(node, where="$"):
    """Every `summary` and `description` in the document, with where it is."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("summary", "description") and isinstance(value, str):
                yield f"{where}.{key}", value
            else:
                yield from texts(value, f"{where}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from texts(value, f"{where}[{index}]")


def test_every_operation_has_a_summary_a_described_tag_and_its_own_description(schema):
    described_tags = {tag["name"] for tag in schema.get("tags", []) if tag.get("description")}
    seen_descriptions = {}
    for name, operation in operations(schema):
        summary = operation.get("summary", "")
        assert summary and summary != operation["operationId"] and len(summary) <= 80, (name, summary)
        assert not re.fullmatch(r"[a-z_]+", summary), (name, summary)  # not an operation id
        assert operation.get("tags") and set(operation["tags"]) <= described_tags, (name, operation.get("tags"))
        description = operation.get("description", "")
        assert len(description) >= 40, (name, description)
        assert description not in seen_descriptions, (name, seen_descriptions.get(description))
        seen_descriptions[description] = name


def test_no_text_of_the_document_is_written_for_engineers(schema):
    leaks = [(where, text) for where, text in texts(schema) if JARGON.search(text)]
    assert not leaks, leaks


def test_every_operation_documents_the_errors_it_can_answer(schema):
    for name, operation in operations(schema):
        statuses = set(operation["responses"])
        # A body the API parses (a component) may come in another media type: 415. A raw body
        # (the Stripe webhook's, checked byte for byte) is never parsed.
        body = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
        expected = ERROR_STATUSES_EVERYWHERE | ({"415"} if "$ref" in body else set())
        assert expected <= statuses, (name, sorted(expected - statuses))
        for status in statuses - {"200", "201", "204"}:
            response = operation["responses"][status]
            assert response.get("description"), (name, status)
            assert response["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}, (
                name,
                status,
            )


def decimal_schemas(node):
    if isinstance(node, dict):
        if node.get("format") == "decimal":
            yield node
        for value in node.values():
            yield from decimal_schemas(value)
    elif isinstance(node, list):
        for value in node:
            yield from decimal_schemas(value)


def test_money_patterns_refuse_a_minus_sign(schema):
    patterns = [node["pattern"] for node in decimal_schemas(schema) if "pattern" in node]
    assert patterns
    for pattern in patterns:
        assert re.search(pattern, "25.00"), pattern
        assert not re.search(pattern, "-25.00"), pattern


def test_money_inputs_say_a_number_or_a_string(schema):
    amount = schema["components"]["schemas"]["AmountInputRequest"]["properties"]["amount"]
    kinds = {alternative["type"] for alternative in amount["oneOf"]}
    assert kinds == {"string", "number"}


def test_the_api_root_is_a_small_index(api_client):
    response = api_client.get("/api/v1/")
    assert response.status_code == 200
    body = response.json()
    assert {body["docs"], body["schema"], body["health"]} == {"/api/docs/", "/api/schema/", "/healthz"}
    for link in (body["docs"], body["schema"], body["health"], body["redoc"], body["ready"]):
        assert api_client.get(link).status_code == 200, link


# --- The documents' own errors are in the envelope -----------------------------------------
# `/api/schema/` renders YAML or JSON and the UIs render HTML; their refusals must still be
# the contract's JSON envelope (API.md, Errors), not YAML, a template's text or a 500.

DOC_PATHS = ["/api/schema/", "/api/docs/", "/api/redoc/"]


@pytest.mark.parametrize("path", DOC_PATHS)
@pytest.mark.parametrize(
    ("query", "headers", "status", "code"),
    [
        ("?format=nonsense", {}, 404, "NOT_FOUND"),
        ("?format=", {"HTTP_ACCEPT": "application/xml"}, 406, "NOT_ACCEPTABLE"),
        ("", {"HTTP_ACCEPT": "application/xml"}, 406, "NOT_ACCEPTABLE"),
        ("", {"HTTP_ACCEPT": "nonsense"}, 406, "NOT_ACCEPTABLE"),
        ("?lang=", {"HTTP_ACCEPT": "image/png"}, 406, "NOT_ACCEPTABLE"),
    ],
    ids=["unknown-format", "empty-format-xml", "xml", "nonsense-accept", "empty-lang-png"],
)
def test_a_refused_document_request_is_the_json_envelope(api_client, path, query, headers, status, code):
    from paymentflow.testing.assertions import assert_error

    body = assert_error(api_client.get(path + query, **headers), status, code)
    assert body["path"] == path


@pytest.mark.parametrize("path", DOC_PATHS)
@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_a_write_to_a_document_is_a_json_405(api_client, path, method):
    from paymentflow.testing.assertions import assert_error

    assert_error(getattr(api_client, method)(path), 405, "METHOD_NOT_ALLOWED")


@pytest.mark.parametrize("path", ["/api/docs/", "/api/redoc/"])
def test_a_ui_asked_for_json_says_so_in_json(api_client, path):
    from paymentflow.testing.assertions import assert_error

    assert_error(api_client.get(path, HTTP_ACCEPT="application/json"), 406, "NOT_ACCEPTABLE")


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/api/schema/", "application/vnd.oai.openapi"),
        ("/api/schema/?format=json", "application/vnd.oai.openapi+json"),
        ("/api/schema/?lang=", "application/vnd.oai.openapi"),
        ("/api/schema/?lang=xx", "application/vnd.oai.openapi"),
        ("/api/docs/", "text/html"),
        ("/api/docs/?lang=", "text/html"),
        ("/api/redoc/", "text/html"),
    ],
)
def test_the_documents_themselves_are_unchanged(api_client, path, content_type):
    response = api_client.get(path, HTTP_ACCEPT="*/*")
    assert response.status_code == 200
    assert response["Content-Type"].startswith(content_type)
