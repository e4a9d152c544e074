"""The API's JSON renderer: djangorestframework-camel-case's output, for less CPU.

The library's `CamelCaseJSONRenderer` runs a regular expression on every key of every
object of every response, and copies each object into an `OrderedDict`: on a 20-item
list that was as much CPU as the rest of a cached `GET /products`. This renderer writes
the same JSON (same keys, same order, same values) but converts each distinct key once
(`camel_key`, memoised) and builds plain dicts. Anything that is not a dict, a list, a
tuple or a JSON scalar goes through the library's own `camelize`, unchanged.

The library's options (`JSON_UNDERSCOREIZE`: ignore_fields, ignore_keys) are not used by
this project and are not supported here.
"""

from functools import lru_cache

from django.utils.encoding import force_str
from django.utils.functional import Promise
from djangorestframework_camel_case.util import camelize as library_camelize
from djangorestframework_camel_case.util import camelize_re, underscore_to_camel
from rest_framework.renderers import JSONRenderer

#: Keys longer than this (only ever client-supplied ones, e.g. an unknown field echoed in
#: an error) are converted each time, so the memo stays small whatever clients send.
_MEMO_KEY_LENGTH = 64
_SCALARS = (str, int, float, bool, type(None))


@lru_cache(maxsize=2048)
def _camel_key(key: str) -> str:
    return camelize_re.sub(underscore_to_camel, key)


def camel_key(key):
    """`user_id` -> `userId`, exactly as djangorestframework-camel-case converts it."""
    if isinstance(key, Promise):
        key = force_str(key)
    if not isinstance(key, str) or "_" not in key:
        return key
    return _camel_key(key) if len(key) <= _MEMO_KEY_LENGTH else camelize_re.sub(underscore_to_camel, key)


def camelize(data):
    """The library's `camelize(data)` without options, as plain dicts and lists."""
    if isinstance(data, dict):
        return {camel_key(key): camelize(value) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return [camelize(item) for item in data]
    if isinstance(data, _SCALARS):
        return data
    return library_camelize(data)


class CamelCaseJSONRenderer(JSONRenderer):
    def render(self, data, accepted_media_type=None, renderer_context=None):
        return super().render(camelize(data), accepted_media_type, renderer_context)
