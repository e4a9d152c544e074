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

Multi-step operations (`@idempotent(multi_step=...)`): a gateway order or refund calls
Stripe between two short transactions, and no database lock may be held during that call
(DESIGN.md, "Concurrency"). For those the key is *claimed* first (a record with no
response yet, committed at once: a duplicate now gets 409 at once), the view runs with
its own transactions, and the response is stored on the record afterwards. A failure
(5xx, crash) deletes the claim so the client may retry; a claim left behind by a killed
process is taken over after `STALE_CLAIM_SECONDS`. The operation's own state machine
(an order moves PENDING -> ... once) is what keeps a takeover from doing work twice.

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
from datetime import timedelta

from django.db import IntegrityError, connection, transaction
from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.exceptions import ValidationError

from paymentflow import metrics
from paymentflow.api.exceptions import ApplicationError, ConflictError
from paymentflow.api.models import IdempotencyKey
from paymentflow.db import atomic_with_retry

HEADER = "Idempotency-Key"
# A claim older than this (no response stored) was left by a killed process: longer than a
# Stripe call can take with its retries, so a live request is never taken over.
STALE_CLAIM_SECONDS = 120
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
    metrics.idempotent_replay()
    return response


def _existing_outcome(record: IdempotencyKey | None, fingerprint: str) -> HttpResponse | None:
    """What an earlier request with this key decides: a replay, a refusal, or nothing yet."""
    if record is None:
        return None
    if record.fingerprint != fingerprint:
        raise IdempotencyKeyReused()
    if record.in_progress:
        if timezone.now() - record.created_at < timedelta(seconds=STALE_CLAIM_SECONDS):
            raise IdempotencyRequestInProgress()
        return None  # a claim abandoned by a killed process: the caller takes it over
    return _replay(record)


def _run_view(view, view_method, request, args, kwargs):
    """The view's response; a business refusal (ApplicationError) becomes its error response."""
    try:
        return view_method(view, request, *args, **kwargs)
    except ApplicationError as exc:
        return view.handle_exception(exc)


def _rendered(view, request, response, args, kwargs):
    response = view.finalize_response(request, response, *args, **kwargs)
    response.render()
    return response


def _response_fields(response) -> dict:
    return {
        "response_status": response.status_code,
        "response_content_type": response.get("Content-Type", "application/json"),
        "response_body": response.content.decode(),
    }


def _locked_lookup(request, key: str, fingerprint: str) -> tuple[IdempotencyKey | None, HttpResponse | None]:
    """Inside the caller's transaction: take the key's advisory lock (409 if another request
    holds it), then (the earlier record or None, the replay it decides or None)."""
    if not _try_lock(request.user.pk, key):
        raise IdempotencyRequestInProgress()
    record = IdempotencyKey.objects.filter(user=request.user, key=key).first()
    return record, _existing_outcome(record, fingerprint)


def _run_once(view, view_method, request, key: str, fingerprint: str, args, kwargs):
    """One transaction: the key's record and the operation commit together or not at all."""
    record, replay = _locked_lookup(request, key, fingerprint)
    if replay is not None:
        return replay

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

    response = _rendered(view, request, response, args, kwargs)
    if record is not None:  # taking over a multi-step claim abandoned by a killed process
        IdempotencyKey.objects.filter(pk=record.pk).update(**_response_fields(response))
        return response
    try:
        IdempotencyKey.objects.create(
            user=request.user,
            key=key,
            fingerprint=fingerprint,
            method=request.method,
            path=request.path[:255],
            **_response_fields(response),
        )
    except IntegrityError as exc:
        # Only possible if two requests got past the lock (they cannot on PostgreSQL). The
        # raise leaves the outer atomic block, rolling the whole operation back.
        raise IdempotencyRequestInProgress() from exc
    return response


@atomic_with_retry
def _claim(request, key: str, fingerprint: str) -> HttpResponse | IdempotencyKey:
    """Multi-step, phase 1: a replay or refusal, or the claimed (committed) record."""
    record, replay = _locked_lookup(request, key, fingerprint)
    if replay is not None:
        return replay
    if record is not None:  # taking over an abandoned claim
        record.created_at = timezone.now()
        record.save(update_fields=["created_at"])
        return record
    return IdempotencyKey.objects.create(
        user=request.user, key=key, fingerprint=fingerprint, method=request.method, path=request.path[:255]
    )


def _run_multi_step(view, view_method, request, key: str, fingerprint: str, args, kwargs):
    claimed = _claim(request, key, fingerprint)
    if isinstance(claimed, HttpResponse):
        return claimed
    try:
        response = _run_view(view, view_method, request, args, kwargs)
    except BaseException:
        claimed.delete()  # unexpected: release the key so the client may retry
        raise
    if response.status_code >= 500:
        claimed.delete()
        return response
    response = _rendered(view, request, response, args, kwargs)
    IdempotencyKey.objects.filter(pk=claimed.pk).update(**_response_fields(response))
    return response


def idempotent(view_method=None, *, multi_step=False):
    """Decorate a DRF view method (post/put/patch/delete) to honour `Idempotency-Key`.

    `multi_step` (a bool, or `callable(request, **view_kwargs) -> bool`) marks requests whose
    operation runs several transactions with a Stripe call between them (see above).
    """

    def decorate(method):
        @functools.wraps(method)
        def wrapper(view, request, *args, **kwargs):
            raw_key = request.headers.get(HEADER)
            if raw_key is None:
                return method(view, request, *args, **kwargs)
            key = _validated_key(raw_key)
            fingerprint = request_fingerprint(request)  # parses the body: a PARSE_ERROR stops here
            steps = multi_step(request, **kwargs) if callable(multi_step) else multi_step
            if steps:
                return _run_multi_step(view, method, request, key, fingerprint, args, kwargs)
            return atomic_with_retry(_run_once)(view, method, request, key, fingerprint, args, kwargs)

        return extend_schema(parameters=[IDEMPOTENCY_KEY_PARAMETER])(wrapper)

    if view_method is not None:
        return decorate(view_method)
    return decorate
