"""Request-scoped plumbing: the request id, and a JSON safety net for the API paths."""

import contextvars
import logging
import re
import uuid

from django.conf import settings

from paymentflow.api.errors import error_response, is_api_path

logger = logging.getLogger("paymentflow.request")

_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
# A client-supplied id is echoed only when it is short and harmless in a log line.
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def current_request_id() -> str:
    return _request_id.get()


class RequestIDLogFilter(logging.Filter):
    """Puts the current request id on every log record (``-`` outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = _request_id.get()
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
    """Keeps the error envelope outside DRF too: oversized bodies and unhandled exceptions.

    DRF views already answer through `api_exception_handler`; this catches what escapes
    plain Django views on API paths, so a client never sees an HTML page or a trace, even
    with DEBUG on.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if is_api_path(request.path):
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
        return self.get_response(request)

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
