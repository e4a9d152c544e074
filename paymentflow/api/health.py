"""Liveness and readiness probes for the orchestrator."""

import functools
import logging
import uuid

from django.core.cache import cache
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt

from paymentflow.api.errors import already_logged, error_response

logger = logging.getLogger("paymentflow.health")


def probe(view):
    """A probe answers GET and HEAD; any other method is a 405 in the envelope (CSRF-exempt
    so that a POST meets that 405 rather than a CSRF refusal: a probe changes nothing)."""

    @csrf_exempt
    @functools.wraps(view)
    def wrapper(request):
        if request.method not in ("GET", "HEAD"):
            response = error_response(
                request, status_code=405, code="METHOD_NOT_ALLOWED", message=f'Method "{request.method}" not allowed.'
            )
            response["Allow"] = "GET, HEAD"
            return response
        return view(request)

    return wrapper


@probe
def healthz(request):
    """The process is up and answering; checks nothing else."""
    return JsonResponse({"status": "ok"})


def _database_ok() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            return cursor.fetchone() == (1,)
    except Exception:
        logger.warning("readiness: database unreachable", exc_info=True)
        return False


def _cache_ok() -> bool:
    # A round trip, not a ping: the cache backend swallows errors (IGNORE_EXCEPTIONS), so
    # only reading back what was written proves it is there.
    probe_key, probe_value = f"readyz:{uuid.uuid4().hex}", "1"
    try:
        cache.set(probe_key, probe_value, timeout=5)
        ok = cache.get(probe_key) == probe_value
        cache.delete(probe_key)
    except Exception:
        ok = False
    if not ok:
        logger.warning("readiness: cache unreachable")
    return ok


@probe
def readyz(request):
    checks = {"database": _database_ok(), "cache": _cache_ok()}
    ready = all(checks.values())
    body = {"status": "ok" if ready else "unavailable", "checks": {k: "ok" if v else "down" for k, v in checks.items()}}
    # Not ready is logged above (at WARNING, with what is down), not once more by django.request.
    return already_logged(JsonResponse(body, status=200 if ready else 503))
