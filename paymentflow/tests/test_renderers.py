"""The API's camelCase renderer writes exactly what djangorestframework-camel-case's does."""

import json
from decimal import Decimal
from uuid import UUID

from django.utils.translation import gettext_lazy
from djangorestframework_camel_case.render import CamelCaseJSONRenderer as LibraryRenderer

from paymentflow.api.renderers import CamelCaseJSONRenderer, camel_key

SAMPLE = {
    "user_id": UUID("2f1b4c8e-8d6b-4d37-9a36-1c2b3d4e5f60"),
    "unit_price": Decimal("1.50"),
    "product": {"id": "p", "available_units": 3, "is_active": True, "description": None},
    "items": [{"balance_after": "1.00", "created_at": "2026-01-01T00:00:00Z"}, ("a_b", 1.5)],
    "details": {"some_field": ["This field is not allowed."], "x" * 80 + "_y": [], "v2_name": 1, "_private": 0},
    "already": "camelCase",
    gettext_lazy("lazy_key"): gettext_lazy("lazy value"),
    7: "not a string key",
}


def test_same_bytes_as_the_library():
    assert CamelCaseJSONRenderer().render(SAMPLE) == LibraryRenderer().render(SAMPLE)


def test_keys():
    assert [camel_key(k) for k in ["user_id", "v2_name", "_private", "a__b", "plain", 3]] == [
        "userId",
        "v2Name",
        "Private",
        "a_B",
        "plain",
        3,
    ]
    long_key = "k" * 100 + "_z"
    assert camel_key(long_key) == "k" * 100 + "Z"  # converted, not memoised


def test_lists_and_scalars():
    assert json.loads(CamelCaseJSONRenderer().render([{"a_b": 1}, None, "x_y"])) == [{"aB": 1}, None, "x_y"]
