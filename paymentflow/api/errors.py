"""The contract's error envelope, built in one place for DRF and plain Django alike.

{"statusCode", "error", "code", "message", "details", "timestamp", "path", "method"}
"""

import json
from datetime import UTC, datetime
from http import HTTPStatus

from django.http import HttpResponse

from paymentflow import metrics


def is_api_path(path: str) -> bool:
    return path.startswith("/api/") or path in ("/healthz", "/readyz")


def reason_phrase(status_code: int) -> str:
    try:
        return HTTPStatus(status_code).phrase
    except ValueError:
        return "Error"


def error_body(request, *, status_code: int, code: str, message: str, details=None) -> dict:
    """Every error answer is built here exactly once, so it is counted here (/metrics)."""
    metrics.error_answered(request, status_code=status_code, code=code)
    return {
        "statusCode": status_code,
        "error": reason_phrase(status_code),
        "code": code,
        "message": message,
        "details": details if details is not None else {},
        "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
        "path": request.path,
        "method": request.method,
    }


def already_logged(response):
    """Tells `django.request` not to log this response again (its `log_response` would log
    every 5xx at ERROR, an expected refusal such as 503 GATEWAY_NOT_CONFIGURED included,
    after our middleware has returned). Every error response we build is either logged by
    us where it happens, with the request id, or is a refusal that is not an error of ours."""
    response._has_been_logged = True
    return response


def error_response(request, *, status_code: int, code: str, message: str, details=None, headers=None):
    """A plain Django response with the envelope (for code paths outside DRF)."""
    body = error_body(request, status_code=status_code, code=code, message=message, details=details)
    response = HttpResponse(
        json.dumps(body, separators=(",", ":")),
        status=status_code,
        content_type="application/json",
    )
    for name, value in (headers or {}).items():
        response[name] = value
    return already_logged(response)
