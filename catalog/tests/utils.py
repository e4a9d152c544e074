"""Assertion helpers for the catalog tests."""

import re

from paymentflow.testing.assertions import assert_error as error  # noqa: F401 (re-exported)

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


def links(response) -> dict[str, str]:
    """{rel: url} from an RFC 8288 Link header."""
    return {rel: url for url, rel in re.findall(r'<([^>]*)>;\s*rel="([^"]+)"', response["Link"])}
