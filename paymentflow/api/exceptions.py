"""One exception family for business rules, and the one place that maps errors to HTTP.

Services raise `ApplicationError` subclasses (each app keeps its own in `exceptions.py`);
`api_exception_handler` turns those, DRF's own exceptions and anything unexpected into
the contract's envelope. Nothing else builds error responses.
"""

import logging

from django.core.exceptions import BadRequest, RequestDataTooBig, SuspiciousOperation
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.db import InterfaceError as DatabaseInterfaceError
from django.db import OperationalError as DatabaseOperationalError
from django.http import Http404
from rest_framework import exceptions as drf
from rest_framework.response import Response
from rest_framework_simplejwt.exceptions import InvalidToken

from paymentflow.api.errors import already_logged, error_body
from paymentflow.api.renderers import camel_key as camel

logger = logging.getLogger("paymentflow.api")


class ApplicationError(drf.APIException):
    """A refusal with a stable machine `code`. Subclass per rule; raise from services."""

    status_code = 400
    code = "BAD_REQUEST"
    default_message = "The request was refused."

    def __init__(self, message: str | None = None, *, details: dict | None = None):
        self.message = message or self.default_message
        self.details = details or {}
        super().__init__(detail=self.message, code=self.code)


class NotFoundError(ApplicationError):
    status_code = 404
    code = "NOT_FOUND"
    default_message = "Not found."


class ConflictError(ApplicationError):
    status_code = 409
    code = "CONFLICT"
    default_message = "The request conflicts with the current state."


class ForbiddenError(ApplicationError):
    status_code = 403
    code = "PERMISSION_DENIED"
    default_message = "You do not have permission to perform this action."


_CODES_BY_CLASS = [
    (InvalidToken, "TOKEN_NOT_VALID", "Token is invalid or expired."),
    (drf.NotAuthenticated, "NOT_AUTHENTICATED", None),
    (drf.AuthenticationFailed, "TOKEN_NOT_VALID", None),
    (drf.PermissionDenied, "PERMISSION_DENIED", None),
    (drf.NotFound, "NOT_FOUND", None),
    (drf.MethodNotAllowed, "METHOD_NOT_ALLOWED", None),
    (drf.NotAcceptable, "NOT_ACCEPTABLE", None),
    (drf.UnsupportedMediaType, "UNSUPPORTED_MEDIA_TYPE", None),
    (drf.Throttled, "THROTTLED", None),
    (drf.ParseError, "PARSE_ERROR", "Malformed JSON in the request body."),
]


def _validation_details(detail) -> dict:
    """DRF's error detail as {camelField: [messages]} (nested structures kept as they are)."""
    if isinstance(detail, dict):
        return {key: _plain(value) for key, value in detail.items()}
    return {"nonFieldErrors": _plain(detail if isinstance(detail, list) else [detail])}


def _plain(value):
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return str(value)


def _first_message(details: dict) -> str:
    for field, messages in details.items():
        first = messages
        while isinstance(first, (list, dict)) and first:
            first = first[0] if isinstance(first, list) else next(iter(first.values()))
        if first:
            prefix = "" if field in ("nonFieldErrors", "non_field_errors") else f"{camel(field)}: "
            return f"Validation failed. {prefix}{first}"
    return "Validation failed."


def api_exception_handler(exc, context):
    request = context["request"]
    headers = {}

    if isinstance(exc, Http404):
        exc = drf.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = drf.PermissionDenied()
    elif isinstance(exc, RequestDataTooBig):
        exc = ApplicationError("The request body is too large.")
        exc.status_code, exc.code = 413, "PAYLOAD_TOO_LARGE"
    elif isinstance(exc, (SuspiciousOperation, BadRequest)):
        logger.warning("Refused %s %s: %s", request.method, request.path, exc)
        exc = ApplicationError("The request was malformed.")

    if isinstance(exc, ApplicationError):
        status_code, code, message, details = exc.status_code, exc.code, exc.message, exc.details
        if status_code >= 500:  # expected (gateway not configured or failing, database busy): not an error of ours
            logger.warning("Refused %s %s: %s %s", request.method, request.path, status_code, code)
    elif isinstance(exc, drf.ValidationError):
        details = _validation_details(exc.detail)
        status_code, code, message = 400, "VALIDATION_ERROR", _first_message(details)
    elif isinstance(exc, drf.APIException):
        status_code, details = exc.status_code, {}
        code, message = exc.default_code.upper(), None
        for cls, mapped_code, mapped_message in _CODES_BY_CLASS:
            if isinstance(exc, cls):
                code, message = mapped_code, mapped_message
                break
        if message is None:
            # simplejwt puts {"detail", "code", "messages"} in detail; show only the sentence.
            detail = exc.detail.get("detail", "") if isinstance(exc.detail, dict) else exc.detail
            message = str(detail) or str(exc.default_detail)
    elif isinstance(exc, (DatabaseOperationalError, DatabaseInterfaceError)):
        # The database is unreachable or restarting: a client should retry (with the same
        # Idempotency-Key for money, which makes the retry safe), so say so rather than 500.
        logger.error("Database unavailable on %s %s: %s", request.method, request.path, exc)
        status_code, code, details = 503, "DATABASE_UNAVAILABLE", {}
        message = "The database is unavailable. Retry shortly, with the same Idempotency-Key for a payment."
        headers["Retry-After"] = "1"
    else:
        logger.exception("Unhandled error on %s %s", request.method, request.path)
        status_code, code, details = 500, "INTERNAL_ERROR", {}
        message = "An unexpected error occurred. Quote the X-Request-ID header when reporting it."

    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header
    if getattr(exc, "wait", None) is not None:
        headers["Retry-After"] = str(max(1, int(exc.wait + 0.999)))

    body = error_body(request, status_code=status_code, code=code, message=message, details=details)
    return already_logged(Response(body, status=status_code, headers=headers))
