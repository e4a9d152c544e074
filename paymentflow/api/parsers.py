"""The JSON parser of every API view: camelCase keys become snake_case, and a body nested
deeper than `MAX_JSON_DEPTH` is a 400 PARSE_ERROR before anything recurses over it (the
camelCase conversion and our own code walk bodies recursively; Python's recursion limit
would turn a deep body into a 500).

The body is read as UTF-8, the only encoding of JSON (RFC 8259, 8.1): a `charset` other
than utf-8 is a 400 PARSE_ERROR rather than a guess (Python's codecs include `rot13` and
`base64`, which are not text). A lone surrogate escape (`"\\ud800"`) is a 400 PARSE_ERROR
too: it decodes to a code point that is no character, which PostgreSQL cannot store and
UTF-8 cannot encode (not even in an error message echoing it), so it is refused here, once
for every field, key and endpoint."""

import json
import re

from django.utils.http import parse_header_parameters
from djangorestframework_camel_case.parser import CamelCaseJSONParser
from djangorestframework_camel_case.util import underscoreize
from rest_framework.exceptions import ParseError

from paymentflow.api.exceptions import ApplicationError

#: No request of the contract nests more than three levels; 64 leaves room and stays far
#: below Python's recursion limit.
MAX_JSON_DEPTH = 64


class JSONTooDeep(ApplicationError):
    code = "PARSE_ERROR"
    default_message = f"The JSON body is nested deeper than {MAX_JSON_DEPTH} levels."


class NotUtf8(ApplicationError):
    code = "PARSE_ERROR"
    default_message = "JSON bodies must be UTF-8 (RFC 8259): send charset=utf-8 or no charset."


class LoneSurrogate(ApplicationError):
    code = "PARSE_ERROR"
    default_message = (
        "The JSON body contains a lone surrogate escape (\\uD800 to \\uDFFF without its pair), "
        "which is not a character."
    )


_UTF8 = {"utf-8", "utf8"}
#: Where a surrogate can come from once the bytes are valid UTF-8: a `\\uD8xx`-`\\uDFxx` escape.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def contains_surrogate(data) -> bool:
    """Whether any string of `data` (parsed JSON), key or value, holds a surrogate; iterative."""
    stack = [data]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            if _SURROGATE.search(value):
                return True
        elif isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return False


def json_depth_exceeds(data, limit: int) -> bool:
    """Whether `data` (parsed JSON) nests containers more than `limit` deep; iterative."""
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(value, dict):
            stack.extend((item, depth + 1) for item in value.values() if isinstance(item, (dict, list)))
        elif isinstance(value, list):
            stack.extend((item, depth + 1) for item in value if isinstance(item, (dict, list)))
    return False


class JSONParser(CamelCaseJSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        # `media_type` is the whole Content-Type; Django's `request.encoding` would have
        # dropped a charset it does not know (`foo`) and kept any codec it does.
        charset = parse_header_parameters(media_type or "")[1].get("charset")
        if charset is not None and charset.strip().lower() not in _UTF8:
            raise NotUtf8()
        raw = stream.read()
        try:
            data = json.loads(raw.decode("utf-8"))
        except RecursionError:  # deeper than the C decoder goes
            raise JSONTooDeep() from None
        except ValueError as exc:  # includes UnicodeDecodeError
            raise ParseError(f"JSON parse error - {exc}") from None
        # Fewer brackets than the limit cannot nest deeper than it: skip the walk.
        if raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH and json_depth_exceeds(data, MAX_JSON_DEPTH):
            raise JSONTooDeep()
        if _SURROGATE_ESCAPE.search(raw) and contains_surrogate(data):
            raise LoneSurrogate()
        return underscoreize(data, **self.json_underscoreize)
