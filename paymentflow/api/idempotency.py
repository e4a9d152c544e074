"""`Idempotency-Key` for the money-moving POSTs, built once for every app.

Usage, one line on a DRF view method (authentication has already run when it is called):

    from paymentflow.api.idempotency import idempotent

    class DepositView(APIView):
        @extend_schema(...)
        @idempotent
        def post(self, request): ...

What it does when the request carries `Idempotency-Key` (1-255 printable ASCII, else
400 VALIDATION_ERROR; without the header the view runs as usual):

1. Opens one transaction (retried on deadlock, `paymentflow.db.atomic_with_retry`).
2. On PostgreSQL takes `pg_try_advisory_xact_lock` on a hash of (user, key). Not acquired:
   the same key is being processed right now -> 409 IDEMPOTENCY_REQUEST_IN_PROGRESS, at
   once, without waiting. (SQLite runs IMMEDIATE transactions, which already serialize.)
3. Looks up the (user, key) record: found with the same fingerprint (sha256 of method,
   path and the canonical JSON body) -> the stored response is replayed byte for byte
   (same status, same body, header `Idempotent-Replayed: true`) and the view does not run;
   found with another fingerprint -> 400 IDEMPOTENCY_KEY_REUSED.
4. Otherwise runs the view in a savepoint and stores its response in the same transaction,
   so the record and the operation commit together or not at all.

Which responses are stored (as Stripe does): successes and business refusals
(`ApplicationError` 4xx such as INSUFFICIENT_FUNDS; the operation is rolled back to the
savepoint first, then the record is committed). Not stored, so the client may fix and
retry with the same key: input validation errors (the request never started executing),
5xx, and anything unexpected (the whole transaction rolls back).
"""

import functools
import hashlib
import json
import re

from django.db import IntegrityError, connection, transaction
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.exceptions import ValidationError

from paymentflow.api.exceptions import ApplicationError, ConflictError
from paymentflow.api.models import IdempotencyKey
from paymentflow.db import atomic_with_retry

HEADER = "Idempotency-Key"
REPLAY_HEADER = "Idempotent-Replayed"
_VALID_KEY = re.compile(r"^[\x20-\x7e]{1,255}$")

IDEMPOTENCY_KEY_PARAMETER = OpenApiParameter(
    name=HEADER,
    type=OpenApiTypes.STR,
    location=OpenApiParameter.HEADER,
    required=False,
    description=(
        "1-255 printable ASCII characters, unique per operation. A retry with the same key and "
        "body replays the first response and moves no money again; the same key with another "
        "body is 400 IDEMPOTENCY_KEY_REUSED; one still running is 409 IDEMPOTENCY_REQUEST_IN_PROGRESS. "
        "Kept 24 hours."
    ),
)


class IdempotencyKeyReused(ApplicationError):
    code = "IDEMPOTENCY_KEY_REUSED"
    default_message = "This Idempotency-Key was already used with a different request."


class IdempotencyRequestInProgress(ConflictError):
    code = "IDEMPOTENCY_REQUEST_IN_PROGRESS"
    default_message = "A request with this Idempotency-Key is still being processed; retry shortly."


def request_fingerprint(request) -> str:
    """sha256 over method, path and the body as canonical JSON (key order and spacing ignored)."""
    body = json.dumps(request.data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(f"{request.method}\n{request.path}\n{body}".encode()).hexdigest()


def _advisory_lock_id(user_pk, key: str) -> int:
    digest = hashlib.sha256(f"idempotency:{user_pk}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _try_lock(user_pk, key: str) -> bool:
    if connection.vendor != "postgresql":
        return True  # SQLite: IMMEDIATE transactions already serialize writers
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [_advisory_lock_id(user_pk, key)])
        return bool(cursor.fetchone()[0])


def _validated_key(raw: str) -> str:
    if not _VALID_KEY.match(raw):
        raise ValidationError({"idempotencyKey": ["Idempotency-Key must be 1-255 printable ASCII characters."]})
    return raw


def _replay(record: IdempotencyKey) -> HttpResponse:
    response = HttpResponse(
        record.response_body, status=record.response_status, content_type=record.response_content_type
    )
    response[REPLAY_HEADER] = "true"
    return response


def _run_once(view, view_method, request, key: str, fingerprint: str, args, kwargs):
    user = request.user
    if not _try_lock(user.pk, key):
        raise IdempotencyRequestInProgress()
    record = IdempotencyKey.objects.filter(user=user, key=key).first()
    if record is not None:
        if record.fingerprint != fingerprint:
            raise IdempotencyKeyReused()
        return _replay(record)

    savepoint = transaction.savepoint()
    try:
        response = view_method(view, request, *args, **kwargs)
    except ApplicationError as exc:
        transaction.savepoint_rollback(savepoint)
        response = view.handle_exception(exc)
    else:
        transaction.savepoint_commit(savepoint)
    if response.status_code >= 500:
        return response  # not stored: the client may retry with the same key

    response = view.finalize_response(request, response, *args, **kwargs)
    response.render()
    try:
        IdempotencyKey.objects.create(
            user=user,
            key=key,
            fingerprint=fingerprint,
            method=request.method,
            path=request.path[:255],
            response_status=response.status_code,
            response_content_type=response.get("Content-Type", "application/json"),
            response_body=response.content.decode(),
        )
    except IntegrityError as exc:
        # Only possible if two requests got past the lock (they cannot on PostgreSQL). The
        # raise leaves the outer atomic block, rolling the whole operation back.
        raise IdempotencyRequestInProgress() from exc
    return response


def idempotent(view_method):
    """Decorate a DRF view method (post/put/patch/delete) to honour `Idempotency-Key`."""

    @functools.wraps(view_method)
    def wrapper(view, request, *args, **kwargs):
        raw_key = request.headers.get(HEADER)
        if raw_key is None:
            return view_method(view, request, *args, **kwargs)
        key = _validated_key(raw_key)
        fingerprint = request_fingerprint(request)  # parses the body: a PARSE_ERROR stops here
        return atomic_with_retry(_run_once)(view, view_method, request, key, fingerprint, args, kwargs)

    return extend_schema(parameters=[IDEMPOTENCY_KEY_PARAMETER])(wrapper)
