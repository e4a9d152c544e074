"""Request-scoped plumbing: the request id, and a JSON safety net for the API paths."""

import contextvars
import logging
import re
import uuid

from django.conf import settings
from django.core.exceptions import DisallowedHost, TooManyFieldsSent

from paymentflow.api.errors import error_response, is_api_path

logger = logging.getLogger("paymentflow.request")

_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
# A client-supplied id is echoed only when it is short and harmless in a log line.
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def current_request_id() -> str:
    return _request_id.get()


class RequestIDLogFilter(logging.Filter):
    """Puts the current request id on every log record (``-`` outside a request).

    Django logs a response (`django.request`, `django.security`) with the request attached
    after the middleware chain has returned, when the context variable is reset: the id is
    then read from the request itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = _request_id.get()
        if request_id == "-":
            request_id = getattr(getattr(record, "request", None), "request_id", "-")
        record.request_id = request_id
        return True


class RequestIDMiddleware:
    """Takes `X-Request-ID` from the client (or makes one) and echoes it in the response."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        incoming = request.META.get("HTTP_X_REQUEST_ID", "")
        request_id = incoming if _SAFE_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        request.request_id = request_id
        token = _request_id.set(request_id)
        try:
            response = self.get_response(request)
        finally:
            _request_id.reset(token)
        response["X-Request-ID"] = request_id
        return response


class ApiExceptionMiddleware:
    """Keeps the error envelope outside DRF too, on API paths, even with DEBUG on.

    Placed right after RequestIDMiddleware, it refuses what Django would otherwise answer
    with its HTML "Bad Request (400)" page before any view runs (a Host header not in
    ALLOWED_HOSTS, more query fields than DATA_UPLOAD_MAX_NUMBER_FIELDS) and bodies over
    DATA_UPLOAD_MAX_MEMORY_SIZE (413); and it answers exceptions that escape plain Django
    views with the envelope, never a trace.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if is_api_path(request.path):
            refusal = self._refusal(request)
            if refusal is not None:
                return refusal
        return self.get_response(request)

    def _refusal(self, request):
        try:
            request.get_host()
        except DisallowedHost as exc:
            return self._bad_request(
                request, exc, "DISALLOWED_HOST", "The Host header names a host this server does not serve."
            )
        try:
            request.GET  # noqa: B018 -- parsing the query string is what counts its fields
        except TooManyFieldsSent as exc:
            limit = settings.DATA_UPLOAD_MAX_NUMBER_FIELDS
            return self._bad_request(request, exc, "TOO_MANY_FIELDS", f"The query string has more than {limit} fields.")
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > settings.DATA_UPLOAD_MAX_MEMORY_SIZE:
            return error_response(
                request,
                status_code=413,
                code="PAYLOAD_TOO_LARGE",
                message=f"Request body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes.",
            )
        return None

    @staticmethod
    def _bad_request(request, exc, code: str, message: str):
        # A client's mistake (or a scanner's), not ours: a warning, and Django's own
        # security logger (which logs these at ERROR) is never reached.
        logger.warning("Refused %s %s: %s", request.method, request.path, exc)
        return error_response(request, status_code=400, code=code, message=message)

    def process_exception(self, request, exception):
        if not is_api_path(request.path):
            return None
        logger.exception("Unhandled error on %s %s", request.method, request.path)
        return error_response(
            request,
            status_code=500,
            code="INTERNAL_ERROR",
            message="An unexpected error occurred. Quote the X-Request-ID header when reporting it.",
        )
