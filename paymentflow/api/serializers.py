"""Serializer building blocks shared by every app: money, strict input, the error envelope.

The input rules are the contract's Conventions (API.md): money is a plain ASCII decimal,
integers are integral JSON numbers, `null` on an optional text field means empty.
"""

import re
from decimal import Decimal

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

MONEY_MAX_DIGITS = 14
MONEY_DECIMAL_PLACES = 2

# ASCII digits only, with an optional sign, point and exponent. Python's Decimal() alone also
# reads full-width and other Unicode digits, underscores and surrounding whitespace.
_DECIMAL_DIGITS = r"(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
_ASCII_DECIMAL = re.compile(rf"[+-]?{_DECIMAL_DIGITS}")
#: The schema's pattern for a decimal input: what `_ASCII_DECIMAL` accepts, less the minus sign
#: (a negative amount is refused anyway).
DECIMAL_INPUT_PATTERN = rf"^\+?{_DECIMAL_DIGITS}$"
#: The schema's pattern for an amount we return: never negative, always two places.
MONEY_OUTPUT_PATTERN = r"^[0-9]{1,12}\.[0-9]{2}$"


def _decimal_input_schema(number: dict, description: str) -> dict:
    """OpenAPI for a decimal input: a JSON number, or a string the server accepts (its pattern is
    a superset of the valid values, as the fuzzing's negative tests require)."""
    string = {"type": "string", "format": "decimal", "pattern": DECIMAL_INPUT_PATTERN, "example": "25.00"}
    return {"oneOf": [string, {"type": "number", **number}], "description": description}


@extend_schema_field(
    _decimal_input_schema(
        {"minimum": 0}, 'A decimal amount, as a JSON number (25.5) or a string ("25.50"), in ASCII digits.'
    )
)
class PlainDecimalField(serializers.DecimalField):
    """A decimal given as a JSON number or a plain ASCII decimal string.

    Too many decimal places is reported as such before the number of digits (DRF checks the
    digits first, so float noise such as 0.30000000000000004 read "less than 10^12").
    """

    def to_internal_value(self, data):
        if isinstance(data, bool):  # bool is an int in Python; "amount": true is not a number
            self.fail("invalid")
        if isinstance(data, str) and not _ASCII_DECIMAL.fullmatch(data):
            self.fail("invalid")
        return super().to_internal_value(data)

    def validate_precision(self, value):
        exponent = value.as_tuple().exponent
        if self.decimal_places is not None and isinstance(exponent, int) and -exponent > self.decimal_places:
            self.fail("max_decimal_places", max_decimal_places=self.decimal_places)
        return super().validate_precision(value)


@extend_schema_field(
    _decimal_input_schema(
        {"minimum": 0, "exclusiveMinimum": True, "maximum": 999999999999.99},
        "An amount greater than 0 with at most two decimal places, as a JSON number (25.5) or a string "
        '("25.50"), in ASCII digits.',
    )
)
class MoneyField(PlainDecimalField):
    """A positive amount with at most two decimals, in and out as a two-decimal string.

    Accepts a JSON number or a numeric string; refuses zero, negatives, NaN, Infinity,
    more than two decimals and anything beyond the database column's range.
    """

    default_error_messages = {
        "min_value": "Must be greater than 0.",
        "max_digits": "Must be less than 10^12.",
        "max_whole_digits": "Must be less than 10^12.",
        "max_decimal_places": "Must have at most 2 decimal places.",
    }

    def __init__(self, **kwargs):
        kwargs.setdefault("max_digits", MONEY_MAX_DIGITS)
        kwargs.setdefault("decimal_places", MONEY_DECIMAL_PLACES)
        kwargs.setdefault("min_value", Decimal("0.01"))
        super().__init__(**kwargs)


class OutputSerializer(serializers.Serializer):
    # A read-only serializer for responses whose fields are built once per class (a comment,
    # not a docstring: the API docs show a serializer's docstring, and this is for engineers).
    #
    # DRF deep-copies and binds every declared field for each serializer instance it makes
    # (one per object rendered, nested ones included): for an order that was about a tenth of
    # a purchase's CPU. Output fields keep no per-instance state, so these are built and bound
    # once, on a prototype instance, and reused. Only for fields that need no `context` (no
    # request-relative URLs): the prototype has none.

    def to_representation(self, instance):
        representation = {}
        for field in type(self)._fields_built_once():
            try:
                attribute = field.get_attribute(instance)
            except serializers.SkipField:  # as DRF's own: a missing optional key is left out
                continue
            representation[field.field_name] = None if attribute is None else field.to_representation(attribute)
        return representation

    @classmethod
    def _fields_built_once(cls) -> list:
        fields = cls.__dict__.get("_bound_fields")
        if fields is None:  # first use of this class; a race builds the same list twice, harmlessly
            fields = list(cls()._readable_fields)
            cls._bound_fields = fields
        return fields


class StrictIntegerField(serializers.IntegerField):
    """A JSON number with an integral value (5 and 5.0 alike) and nothing else: no 5.5, no "3",
    no true."""

    def to_internal_value(self, data):
        if isinstance(data, float) and data.is_integer():
            data = int(data)
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class OptionalTextField(serializers.CharField):
    """An optional text field: absent, "" and null all mean empty (clients written in
    TypeScript send null for "not set")."""

    def __init__(self, **kwargs):
        kwargs.setdefault("required", False)
        kwargs.setdefault("allow_blank", True)
        kwargs.setdefault("default", "")
        super().__init__(allow_null=True, **kwargs)

    def validate_empty_values(self, data):
        if data is None:
            return True, ""
        return super().validate_empty_values(data)


class StrictBooleanField(serializers.BooleanField):
    """A JSON true/false and nothing else: no "yes", no 1."""

    def to_internal_value(self, data):
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return data


class StrictInputSerializer(serializers.Serializer):
    # Refuses fields it does not know (a typo is an error, not a no-op). A comment, not a
    # docstring: the API docs show each input's own docstring, written for API users.

    def validate(self, attrs):
        if isinstance(self.initial_data, dict):
            unknown = sorted(set(self.initial_data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: ["This field is not allowed."] for name in unknown})
        return super().validate(attrs)


BLANK_PARAMETER = "This field may not be blank."


def blank_query_parameters(query, names, *, allowed=()) -> dict:
    """{name: [error]} for each of `names` sent empty (`?status=`). DRF and django-filter read
    an empty value as "no filter" (the HTML-form convention); the original service's
    validation refused it, and so does the schema (an enum or a uuid is never empty)."""
    return {name: [BLANK_PARAMETER] for name in names if name not in allowed and query.get(name) == ""}


class QuerySerializer(serializers.Serializer):
    """Query parameters (arriving snake_cased). A parameter sent empty is a 400 unless its
    field allows blank (`search=`)."""

    def to_internal_value(self, data):
        allowed = [name for name, field in self.fields.items() if getattr(field, "allow_blank", False)]
        blank = blank_query_parameters(data, self.fields, allowed=allowed)
        if blank:
            raise serializers.ValidationError(blank)
        return super().to_internal_value(data)


class ErrorSerializer(serializers.Serializer):
    """The error envelope every 4xx and 5xx response carries. `code` is a stable machine code;
    `details` holds per-field messages for validation errors, keyed by camelCase field name."""

    status_code = serializers.IntegerField()
    error = serializers.CharField()
    code = serializers.CharField()
    message = serializers.CharField()
    details = serializers.DictField()
    timestamp = serializers.DateTimeField()
    path = serializers.CharField()
    method = serializers.CharField()

    class Meta:
        ref_name = "Error"
