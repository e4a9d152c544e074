"""A small fake Stripe API for tests: the real `stripe` SDK is pointed at it.

`FakeStripe` runs a `ThreadingHTTPServer` on a free 127.0.0.1 port and answers, with
Stripe-shaped JSON, the few endpoints `payments.gateway` calls:

    POST /v1/checkout/sessions              create (validated like Stripe, see below)
    GET  /v1/checkout/sessions/{id}         retrieve
    POST /v1/checkout/sessions/{id}/expire  open -> expired; otherwise 400 like Stripe
    GET  /v1/checkout/sessions              list (newest first; created[gte], paging)
    POST /v1/refunds                        refund a succeeded PaymentIntent, at most what it
                                            received (`charge_already_refunded` beyond it)
    GET  /v1/refunds                        list (newest first; payment_intent, created[gte],
                                            paging)
    GET  /v1/refunds/{id}, GET /v1/payment_intents/{id}, GET /v1/charges/{id}

Like Stripe it requires `Authorization: Bearer <api_key>`, parses the form-encoded
bodies the SDK sends (`line_items[0][price_data][unit_amount]=...` becomes nested
dicts/lists), and honours `Idempotency-Key` on POSTs: the same key with the same
parameters replays the first response (header `Idempotent-Replayed: true`), with other
parameters it is a 400 `idempotency_error`. Every request is recorded (`requests`).

What the buyer does at Checkout is simulated by `mark_paid`, `mark_expired`,
`mark_completed_unpaid`, `mark_async_succeeded` and `mark_async_failed`; webhooks for it
are built with `build_event` / `session_event` / `refund_event` / `charge_event` and signed
with the real scheme (`sign_payload`, `signed`); what staff do in Stripe's Dashboard by
`refund_in_dashboard`. Failures: `fail_next` (any endpoint or one path), `down`,
`stall_next`, `lose_responses` (Stripe acts, the answer never arrives),
`forget_idempotency_keys` (Stripe keeps them 24 hours); `on_next_request` runs a test's
hook while a request is in flight.

Injected failures are not stored under the idempotency key (the request "never ran"),
so the SDK's retries, or ours with the same key, succeed once the fake is healthy again.
This module does not import `stripe`: the signing is an independent implementation of
Stripe's scheme, so tests check the gateway against the scheme, not against itself.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

API_KEY = "sk_test_fake"
WEBHOOK_SECRET = "whsec_test_fake_secret"
API_VERSION = "2026-10-28.endive"  # what the pinned SDK sends; only echoed in events

# Checkout's window for `expires_at` (30 minutes to 24 hours after creation), with a few
# seconds of slack for the time between computing it and the request arriving.
EXPIRES_AT_MIN_SECONDS = 30 * 60
EXPIRES_AT_MAX_SECONDS = 24 * 60 * 60
EXPIRES_AT_SLACK_SECONDS = 5

_KEY_PART = re.compile(r"\[([^\]]*)\]")


# --- Helpers usable without a server --------------------------------------------------------
def sign_payload(payload: bytes | str, secret: str, timestamp: int | None = None) -> str:
    """The `Stripe-Signature` header for `payload`: `t=<unix>,v1=<hex HMAC-SHA256>` of
    `"<t>.<payload>"` keyed with the endpoint secret, exactly as Stripe signs."""
    body = payload.decode("utf-8") if isinstance(payload, bytes | bytearray) else payload
    ts = int(time.time()) if timestamp is None else int(timestamp)
    mac = hmac.new(secret.encode("utf-8"), f"{ts}.{body}".encode(), hashlib.sha256).hexdigest()
    return f"t={ts},v1={mac}"


def build_event(
    type: str,  # noqa: A002 - Stripe's field name
    data_object: Mapping[str, Any],
    id: str | None = None,  # noqa: A002
    *,
    created: int | None = None,
) -> dict[str, Any]:
    """A v1 Stripe event (snapshot payload) wrapping `data_object`."""
    return {
        "id": id or _new_id("evt"),
        "object": "event",
        "api_version": API_VERSION,
        "created": int(time.time()) if created is None else created,
        "data": {"object": copy.deepcopy(dict(data_object))},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": type,
    }


def encode_event(event: Mapping[str, Any]) -> bytes:
    """The raw body Stripe would POST for `event`."""
    return json.dumps(event, indent=2).encode("utf-8")


def parse_form(body: str) -> dict[str, Any]:
    """Stripe's form encoding back into nested data: `a[b][0][c]=v` -> {"a": {"b": [{"c": "v"}]}}.

    Values stay strings (as on the wire); `a[]=x` appends to a list.
    """
    root: dict[str, Any] = {}
    for raw_key, value in parse_qsl(body, keep_blank_values=True):
        head, _, rest = raw_key.partition("[")
        parts = [head] + (_KEY_PART.findall("[" + rest) if rest else [])
        node = root
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if part == "":  # "a[]" -> append
                node.setdefault("__list__", []).append(value if last else {})
                break
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
    return _listify(root)


def _listify(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    if set(node) == {"__list__"}:
        return [_listify(item) for item in node["__list__"]]
    if node and all(key.isdigit() for key in node):
        return [_listify(node[key]) for key in sorted(node, key=int)]
    return {key: _listify(value) for key, value in node.items()}


def _new_id(prefix: str) -> str:
    return f"{prefix}_test_{secrets.token_hex(12)}"


# --- Recording ----------------------------------------------------------------------------
@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    params: dict[str, Any]  # parsed form body (POST) or query (GET); values are strings
    headers: dict[str, str] = field(repr=False)  # lower-case names
    client_address: str = "127.0.0.1"

    @property
    def idempotency_key(self) -> str | None:
        return self.headers.get("idempotency-key")

    @property
    def authorization(self) -> str | None:
        return self.headers.get("authorization")

    @property
    def host(self) -> str | None:
        return self.headers.get("host")


class StripeHTTPError(Exception):
    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error", **extra: Any):  # noqa: A002
        super().__init__(message)
        self.status = status
        self.body = {"error": {"message": message, "type": type, **{k: v for k, v in extra.items() if v}}}


def _not_found(kind: str, object_id: str, param: str) -> StripeHTTPError:
    return StripeHTTPError(404, f"No such {kind}: '{object_id}'", code="resource_missing", param=param)


# --- The server ----------------------------------------------------------------------------
class FakeStripe:
    """A fake Stripe API on 127.0.0.1. `start()` it once, `reset()` it between tests."""

    def __init__(self, *, api_key: str = API_KEY, webhook_secret: str = WEBHOOK_SECRET):
        self.api_key = api_key
        self.webhook_secret = webhook_secret
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.reset()

    # -- lifecycle
    def start(self) -> FakeStripe:
        fake = self

        class Handler(_Handler):
            stripe = fake

        self._server = _Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-stripe", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def url(self) -> str:
        """The base URL to put in STRIPE_API_BASE, e.g. http://127.0.0.1:54321."""
        assert self._server is not None, "FakeStripe is not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def reset(self) -> None:
        with self._lock:
            self.requests: list[RecordedRequest] = []
            self.sessions: dict[str, dict[str, Any]] = {}
            self.payment_intents: dict[str, dict[str, Any]] = {}
            self.refunds: dict[str, dict[str, Any]] = {}
            self._idempotent: dict[str, tuple[str, int, dict[str, Any]]] = {}
            self._refunded: dict[str, int] = {}
            self._payment_intent_data: dict[str, dict[str, Any]] = {}  # by session id
            self._failures: list[tuple[int, str, str | None]] = []
            self._hooks: list[tuple[str, Callable[[], Any]]] = []
            self.hook_results: list[Any] = []
            self._stalls: list[float] = []
            self._lost: list[tuple[str, str | None, int | None]] = []  # (path prefix, method, how many or all)
            self.down = False
            self.down_status = 500
            self.max_page_size = 100  # Stripe's; a test lowers it to see lists paged

    # -- failure injection
    def fail_next(
        self, n: int = 1, status: int = 500, *, message: str = "An unknown error occurred", path: str | None = None
    ) -> None:
        """The next `n` requests answer `status` with a Stripe error body: any endpoint, or
        only those whose path starts with `path` (e.g. "/v1/refunds")."""
        with self._lock:
            self._failures.extend([(status, message, path)] * n)

    def on_next_request(self, path: str, hook: Callable[[], Any]) -> None:
        """Run `hook()` in the server's thread when the next request whose path starts with
        `path` arrives, before it is handled: e.g. to look at the database while our code
        waits for Stripe. What it returns or raises is appended to `hook_results`."""
        with self._lock:
            self._hooks.append((path, hook))

    def stall_next(self, n: int = 1, seconds: float = 1.0) -> None:
        """The next `n` requests are handled (objects ARE created) but their responses are
        delayed by `seconds`: with a shorter STRIPE_TIMEOUT_SECONDS the client times out
        without knowing the outcome, as when a response is lost on the way back."""
        with self._lock:
            self._stalls.extend([seconds] * n)

    def lose_responses(self, path: str, n: int | None = None, *, method: str | None = None) -> None:
        """Requests whose path starts with `path` (and of `method`, if given) are handled
        (objects ARE created, stored under their idempotency key) but the connection is
        closed before any answer: the next `n` of them, or all until `keep_responses()`."""
        with self._lock:
            self._lost.append((path, method, n))

    def keep_responses(self) -> None:
        with self._lock:
            self._lost = []

    def forget_idempotency_keys(self) -> None:
        """What Stripe does 24 hours after a key was first used: the same key then runs the
        request again, as new."""
        with self._lock:
            self._idempotent.clear()

    # -- what staff do in Stripe's Dashboard
    def refund_in_dashboard(self, payment_intent_id: str, amount: int | None = None) -> dict[str, Any]:
        """A refund made outside our code (amount in cents; default what is left)."""
        with self._lock:
            params = {"payment_intent": payment_intent_id}
            if amount is not None:
                params["amount"] = str(amount)
            return self._create_refund(params)

    # -- what the buyer does at Checkout
    def mark_paid(self, session_id: str) -> dict[str, Any]:
        """The buyer paid by card: the session is complete and paid, with a succeeded
        PaymentIntent. Returns the session object (as `checkout.session.completed` carries it)."""
        with self._lock:
            session = self._open_session(session_id)
            intent = self._new_payment_intent(session, status="succeeded")
            session.update(status="complete", payment_status="paid", payment_intent=intent["id"])
            return copy.deepcopy(session)

    def mark_completed_unpaid(self, session_id: str) -> dict[str, Any]:
        """The buyer chose a delayed payment method: complete but unpaid (processing)."""
        with self._lock:
            session = self._open_session(session_id)
            intent = self._new_payment_intent(session, status="processing")
            session.update(status="complete", payment_status="unpaid", payment_intent=intent["id"])
            return copy.deepcopy(session)

    def mark_async_succeeded(self, session_id: str) -> dict[str, Any]:
        with self._lock:
            session, intent = self._processing(session_id)
            intent["status"] = "succeeded"
            intent["amount_received"] = intent["amount"]
            session["payment_status"] = "paid"
            return copy.deepcopy(session)

    def mark_async_failed(self, session_id: str) -> dict[str, Any]:
        with self._lock:
            session, intent = self._processing(session_id)
            intent["status"] = "requires_payment_method"
            return copy.deepcopy(session)

    def mark_expired(self, session_id: str) -> dict[str, Any]:
        """The session's `expires_at` passed (or it was expired in the Dashboard)."""
        with self._lock:
            session = self._open_session(session_id)
            session["status"] = "expired"
            return copy.deepcopy(session)

    # -- webhooks
    def session_event(self, type: str, session_id: str, id: str | None = None) -> dict[str, Any]:  # noqa: A002
        """An event of `type` carrying the session's current state."""
        with self._lock:
            return build_event(type, self.sessions[session_id], id)

    def refund_event(self, type: str, refund_id: str, id: str | None = None) -> dict[str, Any]:  # noqa: A002
        """`refund.created` / `refund.updated` / `refund.failed` carrying the refund."""
        with self._lock:
            return build_event(type, self.refunds[refund_id], id)

    def charge_event(self, type: str, payment_intent_id: str, id: str | None = None) -> dict[str, Any]:  # noqa: A002
        """`charge.refunded` (or another `charge.*` event) of the PaymentIntent's charge."""
        with self._lock:
            return build_event(type, self._charge(self.payment_intents[payment_intent_id]), id)

    def signed(
        self, event: Mapping[str, Any], *, secret: str | None = None, timestamp: int | None = None
    ) -> tuple[bytes, str]:
        """(raw body, Stripe-Signature header) for POSTing `event` to our webhook endpoint."""
        body = encode_event(event)
        return body, sign_payload(body, secret or self.webhook_secret, timestamp)

    # -- inspection
    def calls(self, method: str | None = None, path: str | None = None) -> list[RecordedRequest]:
        with self._lock:
            return [
                r
                for r in self.requests
                if (method is None or r.method == method.upper()) and (path is None or r.path == path)
            ]

    def last(self, method: str | None = None, path: str | None = None) -> RecordedRequest:
        found = self.calls(method, path)
        assert found, f"no {method or ''} {path or ''} request reached the fake Stripe"
        return found[-1]

    # -- request handling (called from the server threads)
    def handle(self, method: str, raw_path: str, headers: dict[str, str], body: str, client: str):
        """-> (status, json body, extra headers, stall seconds or None: lose the answer)"""
        split = urlsplit(raw_path)
        path = split.path
        params = parse_form(body if method == "POST" else split.query)
        self._run_hook(path)
        with self._lock:
            self.requests.append(RecordedRequest(method, path, params, headers, client))
            stall = self._stalls.pop(0) if self._stalls else 0.0
            if self._take_lost(method, path):
                stall = None
            try:
                if headers.get("authorization") != f"Bearer {self.api_key}":
                    raise StripeHTTPError(401, "Invalid API Key provided.")
                failure = self._take_failure(path)
                if failure or self.down:
                    status, message = failure or (self.down_status, "Stripe is down")
                    raise StripeHTTPError(status, message, type="api_error")
                key = headers.get("idempotency-key") if method == "POST" else None
                fingerprint = json.dumps([method, path, params], sort_keys=True)
                if key and key in self._idempotent:
                    seen, status, payload = self._idempotent[key]
                    if seen != fingerprint:
                        raise StripeHTTPError(
                            400,
                            "Keys for idempotent requests can only be used with the same parameters they were "
                            f"first used with. Try using a key other than '{key}' if you meant to execute a different "
                            "request.",
                            type="idempotency_error",
                        )
                    return status, copy.deepcopy(payload), {"Idempotent-Replayed": "true"}, stall
                try:
                    status, payload = 200, self._route(method, path, params)
                except StripeHTTPError as exc:
                    if exc.status >= 500:
                        raise
                    status, payload = exc.status, exc.body
                if key:  # Stripe saves the result once the endpoint ran, errors included
                    self._idempotent[key] = (fingerprint, status, copy.deepcopy(payload))
                return status, payload, {}, stall
            except StripeHTTPError as exc:
                return exc.status, exc.body, {}, stall

    def _take_lost(self, method: str, path: str) -> bool:
        for index, (prefix, only, left) in enumerate(self._lost):
            if path.startswith(prefix) and only in (None, method):
                if left is not None:
                    if left <= 1:
                        del self._lost[index]
                    else:
                        self._lost[index] = (prefix, only, left - 1)
                return True
        return False

    def _take_failure(self, path: str) -> tuple[int, str] | None:
        for index, (status, message, prefix) in enumerate(self._failures):
            if prefix is None or path.startswith(prefix):
                del self._failures[index]
                return status, message
        return None

    def _run_hook(self, path: str) -> None:
        with self._lock:
            index = next((i for i, (prefix, _) in enumerate(self._hooks) if path.startswith(prefix)), None)
            if index is None:
                return
            _, hook = self._hooks.pop(index)
        try:  # outside the lock: the hook may take its time
            result = hook()
        except Exception as exc:  # noqa: BLE001 - handed to the test as is
            result = exc
        with self._lock:
            self.hook_results.append(result)

    def _route(self, method: str, path: str, params: dict[str, Any]) -> dict[str, Any]:
        parts = path.strip("/").split("/")
        match method, parts:
            case "POST", ["v1", "checkout", "sessions"]:
                return self._create_session(params)
            case "GET", ["v1", "checkout", "sessions"]:
                return self._list("/v1/checkout/sessions", self.sessions.values(), params)
            case "GET", ["v1", "checkout", "sessions", session_id]:
                return copy.deepcopy(self._session(session_id))
            case "POST", ["v1", "checkout", "sessions", session_id, "expire"]:
                return self._expire_session(session_id)
            case "POST", ["v1", "refunds"]:
                return self._create_refund(params)
            case "GET", ["v1", "refunds"]:
                refunds = [
                    r for r in self.refunds.values() if params.get("payment_intent") in (None, r["payment_intent"])
                ]
                return self._list("/v1/refunds", refunds, params)
            case "GET", ["v1", "refunds", refund_id]:
                if refund_id not in self.refunds:
                    raise _not_found("refund", refund_id, "id")
                return copy.deepcopy(self.refunds[refund_id])
            case "GET", ["v1", "payment_intents", intent_id]:
                if intent_id not in self.payment_intents:
                    raise _not_found("payment_intent", intent_id, "intent")
                return copy.deepcopy(self.payment_intents[intent_id])
            case "GET", ["v1", "charges", charge_id]:
                for intent in self.payment_intents.values():
                    if intent["latest_charge"] == charge_id:
                        return self._charge(intent)
                raise _not_found("charge", charge_id, "charge")
        raise StripeHTTPError(404, f"Unrecognized request URL ({method}: {path}).")

    # -- endpoints
    def _create_session(self, params: dict[str, Any]) -> dict[str, Any]:
        if params.get("mode") != "payment":
            raise StripeHTTPError(400, "This fake only supports mode=payment.", param="mode")
        items = params.get("line_items")
        if not isinstance(items, list) or not items:
            raise StripeHTTPError(
                400, "Missing required param: line_items.", param="line_items", code="parameter_missing"
            )
        currencies, subtotal = set(), 0
        for i, item in enumerate(items):
            price = item.get("price_data") or {}
            name = (price.get("product_data") or {}).get("name", "")
            unit_amount, quantity = _int(price.get("unit_amount")), _int(item.get("quantity"))
            if not name.strip():
                raise StripeHTTPError(
                    400, "Missing product name.", param=f"line_items[{i}][price_data][product_data][name]"
                )
            if unit_amount is None or unit_amount < 0:
                raise StripeHTTPError(
                    400, "Invalid integer: unit_amount", param=f"line_items[{i}][price_data][unit_amount]"
                )
            if quantity is None or quantity < 1:
                raise StripeHTTPError(400, "Invalid quantity.", param=f"line_items[{i}][quantity]")
            currency = price.get("currency", "")
            if not re.fullmatch(r"[a-zA-Z]{3}", currency):
                raise StripeHTTPError(
                    400, f"Invalid currency: {currency}.", param=f"line_items[{i}][price_data][currency]"
                )
            currencies.add(currency.lower())
            subtotal += unit_amount * quantity
        if len(currencies) != 1:
            raise StripeHTTPError(400, "All line items must have the same currency.", param="line_items")
        now = int(time.time())
        expires_at = _int(params.get("expires_at")) if "expires_at" in params else now + EXPIRES_AT_MAX_SECONDS
        if (
            expires_at is None
            or expires_at < now + EXPIRES_AT_MIN_SECONDS - EXPIRES_AT_SLACK_SECONDS
            or expires_at > now + EXPIRES_AT_MAX_SECONDS
        ):
            raise StripeHTTPError(
                400,
                "The `expires_at` timestamp must be between 30 minutes and 24 hours after Checkout Session creation.",
                param="expires_at",
            )
        for where in (params.get("metadata"), (params.get("payment_intent_data") or {}).get("metadata")):
            _check_metadata(where)
        session_id = f"cs_test_{secrets.token_urlsafe(40).replace('-', 'a').replace('_', 'b')}"
        session = {
            "id": session_id,
            "object": "checkout.session",
            "amount_subtotal": subtotal,
            "amount_total": subtotal,
            "cancel_url": params.get("cancel_url"),
            "client_reference_id": params.get("client_reference_id"),
            "created": now,
            "currency": currencies.pop(),
            "customer": None,
            "customer_email": params.get("customer_email"),
            "expires_at": expires_at,
            "livemode": False,
            "metadata": dict(params.get("metadata") or {}),
            "mode": "payment",
            "payment_intent": None,  # created when the buyer pays (API versions since 2022-08-01)
            "payment_status": "unpaid",
            "status": "open",
            "success_url": params.get("success_url"),
            "url": f"https://checkout.stripe.com/c/pay/{session_id}",
        }
        self.sessions[session_id] = session
        self._payment_intent_data[session_id] = dict(params.get("payment_intent_data") or {})
        return copy.deepcopy(session)

    def _expire_session(self, session_id: str) -> dict[str, Any]:
        session = self._session(session_id)
        if session["status"] != "open":
            raise StripeHTTPError(
                400,
                f'Only Checkout Sessions with a status in ["open"] can be expired. '
                f'This Checkout Session has a status of "{session["status"]}".',
            )
        session["status"] = "expired"
        return copy.deepcopy(session)

    def _create_refund(self, params: dict[str, Any]) -> dict[str, Any]:
        intent_id = params.get("payment_intent")
        if not intent_id:
            raise StripeHTTPError(400, "One of `charge` or `payment_intent` is required.", code="parameter_missing")
        intent = self.payment_intents.get(intent_id)
        if intent is None:
            raise StripeHTTPError(
                400, f"No such payment_intent: '{intent_id}'", code="resource_missing", param="payment_intent"
            )
        if intent["status"] != "succeeded":
            raise StripeHTTPError(
                400,
                f"This PaymentIntent ({intent_id}) does not have a successful charge to refund.",
                code="charge_not_refundable",
            )
        remaining = intent["amount_received"] - self._refunded.get(intent_id, 0)
        if remaining <= 0:
            raise StripeHTTPError(
                400, f"Charge {intent['latest_charge']} has already been refunded.", code="charge_already_refunded"
            )
        amount = _int(params.get("amount")) if "amount" in params else remaining
        if amount is None or amount <= 0 or amount > remaining:
            raise StripeHTTPError(
                400,
                f"Refund amount ({amount}) is greater than unrefunded amount on charge ({remaining})",
                code="amount_too_large",
                param="amount",
            )
        reason = params.get("reason")
        if reason is not None and reason not in ("duplicate", "fraudulent", "requested_by_customer"):
            raise StripeHTTPError(400, f"Invalid reason: {reason}", param="reason")
        _check_metadata(params.get("metadata"))
        self._refunded[intent_id] = self._refunded.get(intent_id, 0) + amount
        refund = {
            "id": _new_id("re"),
            "object": "refund",
            "amount": amount,
            "charge": intent["latest_charge"],
            "created": int(time.time()),
            "currency": intent["currency"],
            "metadata": dict(params.get("metadata") or {}),
            "payment_intent": intent_id,
            "reason": reason,
            "status": "succeeded",
        }
        self.refunds[refund["id"]] = refund
        return copy.deepcopy(refund)

    def _list(self, url: str, objects, params: dict[str, Any]) -> dict[str, Any]:
        """A Stripe list: newest first, `created[gte]` / `created[lte]`, `limit` (default
        10, at most `max_page_size`) and `starting_after` paging, as the SDK's auto-paging
        expects."""
        created = params.get("created") if isinstance(params.get("created"), dict) else {}
        gte, lte = _int(created.get("gte")), _int(created.get("lte"))
        # `objects` are in creation order (dicts keep it): newest first is the reverse.
        items = [o for o in objects if (gte is None or o["created"] >= gte) and (lte is None or o["created"] <= lte)]
        items.reverse()
        if params.get("starting_after"):
            ids = [o["id"] for o in items]
            if params["starting_after"] not in ids:
                raise StripeHTTPError(400, "Invalid starting_after id.", param="starting_after")
            items = items[ids.index(params["starting_after"]) + 1 :]
        limit = min(max(_int(params.get("limit")) or 10, 1), self.max_page_size)
        return {"object": "list", "url": url, "has_more": len(items) > limit, "data": copy.deepcopy(items[:limit])}

    def _charge(self, intent: dict[str, Any]) -> dict[str, Any]:
        refunded = self._refunded.get(intent["id"], 0)
        return {
            "id": intent["latest_charge"],
            "object": "charge",
            "amount": intent["amount"],
            "amount_captured": intent["amount_received"],
            "amount_refunded": refunded,
            "currency": intent["currency"],
            "metadata": dict(intent["metadata"]),
            "paid": intent["status"] == "succeeded",
            "payment_intent": intent["id"],
            "refunded": bool(intent["amount_received"]) and refunded >= intent["amount_received"],
            "status": "succeeded" if intent["status"] == "succeeded" else "pending",
        }

    # -- state helpers
    def _session(self, session_id: str) -> dict[str, Any]:
        if session_id not in self.sessions:
            raise _not_found("checkout.session", session_id, "session")
        return self.sessions[session_id]

    def _open_session(self, session_id: str) -> dict[str, Any]:
        session = self.sessions[session_id]
        if session["status"] != "open":
            raise ValueError(f"session {session_id} is {session['status']}, not open")
        return session

    def _processing(self, session_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
        session = self.sessions[session_id]
        intent = self.payment_intents.get(session["payment_intent"] or "")
        if intent is None or intent["status"] != "processing":
            raise ValueError(f"session {session_id} has no processing payment (use mark_completed_unpaid)")
        return session, intent

    def _new_payment_intent(self, session: dict[str, Any], *, status: str) -> dict[str, Any]:
        data = self._payment_intent_data.get(session["id"], {})
        intent = {
            "id": _new_id("pi"),
            "object": "payment_intent",
            "amount": session["amount_total"],
            "amount_received": session["amount_total"] if status == "succeeded" else 0,
            "created": int(time.time()),
            "currency": session["currency"],
            "latest_charge": _new_id("ch"),
            "livemode": False,
            "metadata": dict(data.get("metadata") or {}),
            "status": status,
        }
        self.payment_intents[intent["id"]] = intent
        return intent


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _check_metadata(metadata: Any) -> None:
    if metadata is None:
        return
    if not isinstance(metadata, dict) or len(metadata) > 50:
        raise StripeHTTPError(400, "Invalid metadata.", param="metadata")
    for key, value in metadata.items():
        if len(key) > 40 or not isinstance(value, str) or len(value) > 500:
            raise StripeHTTPError(400, f"Invalid metadata[{key}].", param="metadata")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):  # a client that timed out and left: not our problem
        pass


class _Handler(BaseHTTPRequestHandler):
    stripe: FakeStripe
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDK's requests.Session expects

    def do_GET(self):
        self._serve("GET")

    def do_POST(self):
        self._serve("POST")

    def do_DELETE(self):
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8") if length else ""
        headers = {name.lower(): value for name, value in self.headers.items()}
        status, payload, extra, stall = self.stripe.handle(method, self.path, headers, body, self.client_address[0])
        if stall is None:  # a lost answer: Stripe acted, the client hears nothing
            self.close_connection = True
            return
        if stall:
            time.sleep(stall)
        data = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Request-Id", _new_id("req"))
        self.send_header("Stripe-Version", API_VERSION)
        for name, value in extra.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format, *args):  # noqa: A002 - quiet test output
        pass
