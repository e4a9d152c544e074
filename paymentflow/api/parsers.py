"""The JSON parser of every API view: camelCase keys become snake_case, and a body nested
deeper than `MAX_JSON_DEPTH` is a 400 PARSE_ERROR before anything recurses over it (the
camelCase conversion and our own code walk bodies recursively; Python's recursion limit
would turn a deep body into a 500)."""

import json

from django.conf import settings
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
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        raw = stream.read()
        try:
            data = json.loads(raw.decode(encoding))
        except RecursionError:  # deeper than the C decoder goes
            raise JSONTooDeep() from None
        except ValueError as exc:  # includes UnicodeDecodeError
            raise ParseError(f"JSON parse error - {exc}") from None
        # Fewer brackets than the limit cannot nest deeper than it: skip the walk.
        if raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH and json_depth_exceeds(data, MAX_JSON_DEPTH):
            raise JSONTooDeep()
        return underscoreize(data, **self.json_underscoreize)
