"""Assertion helpers for the catalog tests."""

import re

PRODUCT_KEYS = {
    "id",
    "merchantId",
    "name",
    "description",
    "price",
    "currency",
    "availableUnits",
    "isActive",
    "createdAt",
    "updatedAt",
}


def error(response, status, code):
    assert response.status_code == status, response.content
    body = response.json()
    assert (body["statusCode"], body["code"]) == (status, code), body
    return body


def links(response) -> dict[str, str]:
    """{rel: url} from an RFC 8288 Link header."""
    return {rel: url for url, rel in re.findall(r'<([^>]*)>;\s*rel="([^"]+)"', response["Link"])}
