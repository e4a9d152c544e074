"""The Stripe gateway: the one module of the project that imports `stripe`.

Everything else talks to Stripe through the keyword-only functions below, which return
small frozen dataclasses (never SDK objects) and raise only our own exceptions:

- `GatewayNotConfigured` (503) when `STRIPE_SECRET_KEY` (or, for webhooks,
  `STRIPE_WEBHOOK_SECRET`) is not set;
- `GatewayError` (502) for every Stripe error, timeout or connection failure. The Stripe
  error is logged here; the client only sees a generic message;
- `WebhookSignatureInvalid` / `WebhookPayloadInvalid` (400) from `construct_event`.

A `stripe.StripeClient` is built per call from the settings of that moment, so
`override_settings` (and the fake Stripe server of the tests) work without any global
state: api key = `STRIPE_SECRET_KEY`, base URL = `STRIPE_API_BASE` when set, a short
timeout (`STRIPE_TIMEOUT_SECONDS`, default 10 s) and `STRIPE_MAX_NETWORK_RETRIES`
(default 2). Retries are safe because every POST carries an idempotency key: ours where
the caller passes one, the SDK's own (the same across its retries) otherwise.

Calls made inside `deadline(seconds)` (every API request: `payments.middleware`; every
refund attempt) share one budget: each try waits at most min(timeout, time left), a retry
is made only while time is left, and once it is spent no call is made: `GatewayError`
(transient: the outcome is unknown, as after a timeout).

Amounts are `Decimal` in major units on our side and integers in minor units (cents) on
Stripe's; only two-decimal currencies are supported (one currency per deployment).
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal, TypeVar

import stripe
from django.conf import settings

from paymentflow.api.exceptions import ApplicationError
from paymentflow.timeouts import stripe_call_seconds

logger = logging.getLogger("paymentflow.gateway")

# The SDK's telemetry writes an id under ~/.config/stripe and sends the previous request's
# timings to Stripe with each call; this module is the SDK's only user, so switch it off.
stripe.enable_telemetry = False

T = TypeVar("T")

#: The Stripe API version the pinned SDK speaks (and that webhook endpoints should use).
API_VERSION: str = stripe.api_version
#: How old a webhook signature may be before it is refused (Stripe's default, seconds).
WEBHOOK_TOLERANCE_SECONDS: int = stripe.Webhook.DEFAULT_TOLERANCE

CheckoutKind = Literal["order", "topup"]
CHECKOUT_KINDS: frozenset[str] = frozenset({"order", "topup"})
RefundReason = Literal["duplicate", "fraudulent", "requested_by_customer"]
REFUND_REASONS: frozenset[str] = frozenset({"duplicate", "fraudulent", "requested_by_customer"})

# Stripe's currencies whose minor unit is not 1/100 (https://docs.stripe.com/currencies).
_NOT_TWO_DECIMAL = frozenset(
    {"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof", "xpf"}
    | {"bhd", "jod", "kwd", "omr", "tnd"}  # three decimal places
)
_CENTS = Decimal("0.01")


# --- Errors -------------------------------------------------------------------------------
class GatewayNotConfigured(ApplicationError):
    status_code = 503
    code = "GATEWAY_NOT_CONFIGURED"
    default_message = "Card payments are not available: the payment gateway is not configured."


class GatewayError(ApplicationError):
    """Stripe failed, timed out or could not be reached. The cause is logged, never shown.

    `stripe_code` / `http_status` / `request_id` describe the cause for callers and logs;
    `transient` is True for timeouts, connection failures, 409, 429 and 5xx (a later retry with
    the same idempotency key may succeed).
    """

    status_code = 502
    code = "GATEWAY_ERROR"
    default_message = "The payment gateway failed. Please try again later."

    def __init__(
        self,
        message: str | None = None,
        *,
        stripe_code: str | None = None,
        http_status: int | None = None,
        request_id: str | None = None,
        transient: bool = False,
    ):
        super().__init__(message)
        self.stripe_code = stripe_code
        self.http_status = http_status
        self.request_id = request_id
        self.transient = transient


class InvalidWebhook(ApplicationError):
    """Base of the refusals of an incoming webhook (answered 400: Stripe retries it)."""

    status_code = 400
    code = "INVALID_WEBHOOK"
    default_message = "The webhook could not be verified."


class WebhookSignatureInvalid(InvalidWebhook):
    code = "INVALID_SIGNATURE"
    default_message = "The Stripe-Signature header is missing, invalid or too old."


class WebhookPayloadInvalid(InvalidWebhook):
    code = "INVALID_PAYLOAD"
    default_message = "The webhook body is not a Stripe event."


# --- Results ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CheckoutSession:
    id: str
    url: str | None
    payment_intent_id: str | None
    status: str | None  # "open" | "complete" | "expired"
    payment_status: str | None  # "unpaid" | "paid" | "no_payment_required"
    amount_total: Decimal | None = None
    currency: str | None = None  # lower-case, as Stripe returns it
    client_reference_id: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict, hash=False)

    @property
    def is_paid(self) -> bool:
        return self.payment_status in ("paid", "no_payment_required")

    @classmethod
    def from_stripe(cls, obj: Any) -> CheckoutSession:
        """From a Checkout Session as Stripe sends it: an SDK object or a plain dict
        (e.g. `event["data"]["object"]` of a `checkout.session.*` webhook)."""
        data = _plain(obj)
        amount_total = data.get("amount_total")
        return cls(
            id=data["id"],
            url=data.get("url"),
            payment_intent_id=_id_of(data.get("payment_intent")),
            status=data.get("status"),
            payment_status=data.get("payment_status"),
            amount_total=None if amount_total is None else from_minor_units(amount_total),
            currency=data.get("currency"),
            client_reference_id=data.get("client_reference_id"),
            metadata=dict(data.get("metadata") or {}),
        )


#: Refund statuses under which the money has left, or is leaving, the Stripe account.
REFUND_MADE_STATUSES: frozenset[str] = frozenset({"pending", "requires_action", "succeeded"})


@dataclass(frozen=True, slots=True)
class Refund:
    id: str
    status: str | None  # "pending" | "requires_action" | "succeeded" | "failed" | "canceled"
    amount: Decimal
    currency: str | None = None
    payment_intent_id: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict, hash=False)

    @property
    def is_made(self) -> bool:
        """The buyer has (or is getting) the money back: it counts, whatever came next."""
        return self.status in REFUND_MADE_STATUSES

    @classmethod
    def from_stripe(cls, obj: Any) -> Refund:
        data = _plain(obj)
        return cls(
            id=data["id"],
            status=data.get("status"),
            amount=from_minor_units(data["amount"]),
            currency=data.get("currency"),
            payment_intent_id=_id_of(data.get("payment_intent")),
            metadata=dict(data.get("metadata") or {}),
        )


@dataclass(frozen=True, slots=True)
class PaymentIntent:
    id: str
    status: str | None  # "processing" | "succeeded" | "requires_payment_method" | "canceled" | ...
    amount_received: Decimal
    currency: str | None = None

    @classmethod
    def from_stripe(cls, obj: Any) -> PaymentIntent:
        data = _plain(obj)
        return cls(
            id=data["id"],
            status=data.get("status"),
            amount_received=from_minor_units(data.get("amount_received") or 0),
            currency=data.get("currency"),
        )


# --- Amounts ------------------------------------------------------------------------------
def to_minor_units(amount: Decimal) -> int:
    """Decimal("12.34") -> 1234, exactly. Refuses fractions of a cent and non-finite values."""
    if isinstance(amount, bool) or not isinstance(amount, Decimal | int):
        raise TypeError(f"amount must be a Decimal, not {type(amount).__name__}")
    amount = Decimal(amount)
    if not amount.is_finite():
        raise ValueError(f"amount must be finite, got {amount}")
    try:
        cents = amount.quantize(_CENTS)
    except InvalidOperation as exc:  # beyond the context's precision
        raise ValueError(f"amount {amount} is out of range") from exc
    if cents != amount:
        raise ValueError(f"amount {amount} has a fraction of a cent")
    return int(cents.scaleb(2))


def from_minor_units(minor: int) -> Decimal:
    """1234 -> Decimal("12.34")."""
    if isinstance(minor, bool) or not isinstance(minor, int):
        raise TypeError(f"minor units must be an int, not {type(minor).__name__}")
    return (Decimal(minor) / 100).quantize(_CENTS)


# --- The deadline -------------------------------------------------------------------------
#: When the Stripe calls of the current request (or refund attempt) must be over, on
#: time.monotonic(); None: no deadline, each call has the SDK's timeout and retries.
_deadline: ContextVar[float | None] = ContextVar("stripe_deadline", default=None)


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Every Stripe call made inside, the SDK's retries included, ends within `seconds` from
    now, or by the enclosing deadline if that comes first (an inner one never extends it)."""
    ends = time.monotonic() + seconds
    outer = _deadline.get()
    token = _deadline.set(ends if outer is None else min(outer, ends))
    try:
        yield
    finally:
        _deadline.reset(token)


def time_left() -> float | None:
    """Seconds left before the current deadline (<= 0: spent), None without one."""
    ends = _deadline.get()
    return None if ends is None else ends - time.monotonic()


def longest_call_seconds() -> float:
    """The longest one call may take with the current settings (every try timing out)."""
    return stripe_call_seconds(settings.STRIPE_TIMEOUT_SECONDS, settings.STRIPE_MAX_NETWORK_RETRIES)


class _DeadlineSpent(stripe.APIConnectionError):
    """No time is left for a (further) try: it is not sent."""

    def __init__(self):
        super().__init__("The deadline for Stripe calls is spent: not sent.", should_retry=False)


class _DeadlineRequestsClient(stripe.RequestsClient):
    """The SDK's requests client, whose every try (its retries included) fits in the deadline.

    RequestsClient passes `self._timeout` to requests for each try; here that is the SDK
    timeout or, when less, the time left (requests applies it to connecting and to each
    read). A retry is made only while more than the SDK's shortest backoff is left, and its
    backoff never sleeps past the deadline.
    """

    @property
    def _timeout(self) -> float:
        left = time_left()
        return self._sdk_timeout if left is None else max(min(self._sdk_timeout, left), 0.001)

    @_timeout.setter
    def _timeout(self, value: float) -> None:  # set once, by RequestsClient.__init__
        self._sdk_timeout = value

    def request(self, *args, **kwargs):
        _check_time_left()
        return super().request(*args, **kwargs)

    def request_stream(self, *args, **kwargs):
        _check_time_left()
        return super().request_stream(*args, **kwargs)

    def _should_retry(self, *args, **kwargs) -> bool:
        left = time_left()
        if left is not None and left <= self.INITIAL_DELAY:
            return False
        return super()._should_retry(*args, **kwargs)

    def _sleep_time_seconds(self, num_retries: int) -> float:
        left = time_left()
        sleep = super()._sleep_time_seconds(num_retries)
        return sleep if left is None else max(min(sleep, left), 0.0)


def _check_time_left() -> None:
    left = time_left()
    if left is not None and left <= 0:
        raise _DeadlineSpent()


# --- Configuration ------------------------------------------------------------------------
def is_configured() -> bool:
    """True when API calls to Stripe can be made (a secret key is set)."""
    return bool(settings.STRIPE_SECRET_KEY)


@functools.lru_cache(maxsize=8)
def _http_client(timeout: float) -> stripe.HTTPClient:
    # Shared per timeout: RequestsClient keeps one requests.Session per thread, so
    # connections are reused and the client is thread-safe (the deadline is per context).
    return _DeadlineRequestsClient(timeout=timeout)


def _client() -> stripe.StripeClient:
    if not is_configured():
        raise GatewayNotConfigured()
    left = time_left()
    if left is not None and left <= 0:  # nothing is sent: what Stripe holds is as before, unknown to the caller
        logger.warning("Stripe call not made: the deadline for this request's Stripe calls is spent")
        raise GatewayError(transient=True)
    base_addresses = None
    if settings.STRIPE_API_BASE:
        base = settings.STRIPE_API_BASE.rstrip("/")
        # Point every base at it so nothing else (files, connect) is ever contacted.
        base_addresses = {"api": base, "connect": base, "files": base, "meter_events": base}
    return stripe.StripeClient(
        api_key=settings.STRIPE_SECRET_KEY,
        base_addresses=base_addresses,
        max_network_retries=int(settings.STRIPE_MAX_NETWORK_RETRIES),
        http_client=_http_client(float(settings.STRIPE_TIMEOUT_SECONDS)),
    )


def _call(operation: str, fn: Callable[[stripe.StripeClient], T]) -> T:
    """Run one SDK call; every Stripe failure becomes a logged GatewayError."""
    client = _client()
    try:
        return fn(client)
    except stripe.StripeError as exc:
        raise _gateway_error(operation, exc) from exc


def _gateway_error(operation: str, exc: stripe.StripeError) -> GatewayError:
    status = exc.http_status
    # 409: another request with the same idempotency key is still running at Stripe (e.g. two
    # refunds of one order at once). Its outcome is unknown, not a refusal: retry later.
    transient = (
        isinstance(exc, stripe.APIConnectionError | stripe.RateLimitError) or status == 409 or (status or 0) >= 500
    )
    # The SDK's message never contains our key (Stripe masks it); it is logged, not shown.
    logger.warning(
        "Stripe %s failed: %s (http_status=%s, code=%s, request_id=%s): %s",
        operation,
        type(exc).__name__,
        status,
        exc.code,
        exc.request_id,
        exc.user_message,
    )
    return GatewayError(stripe_code=exc.code, http_status=status, request_id=exc.request_id, transient=transient)


# --- Checkout Sessions --------------------------------------------------------------------
def create_checkout_session(
    *,
    reference_id: str,
    kind: CheckoutKind,
    name: str,
    unit_amount: Decimal,
    quantity: int,
    currency: str,
    customer_email: str | None,
    idempotency_key: str,
    expires_at: datetime,
) -> CheckoutSession:
    """Create a one-line-item Checkout Session (mode "payment") for an order or a top-up.

    `reference_id` (the order's or top-up's id) goes to `client_reference_id` and, with
    `kind`, to the metadata of the session and of its PaymentIntent. `idempotency_key`
    must be derived from the reference (e.g. f"checkout-{order.id}") and every retry must
    send the same parameters: Stripe then returns the first session instead of a second
    one (and refuses the key with different parameters). `expires_at` must be aware and
    between 30 minutes and 24 hours after the moment Stripe receives the request.
    """
    if kind not in CHECKOUT_KINDS:
        raise ValueError(f"kind must be one of {sorted(CHECKOUT_KINDS)}, got {kind!r}")
    if not reference_id or not name or not name.strip():
        raise ValueError("reference_id and name are required")
    if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1:
        raise ValueError(f"quantity must be a positive int, got {quantity!r}")
    minor = to_minor_units(unit_amount)
    if minor <= 0:
        raise ValueError(f"unit_amount must be positive, got {unit_amount}")
    if expires_at.tzinfo is None or expires_at.utcoffset() is None:
        raise ValueError("expires_at must be timezone-aware")
    if not idempotency_key:
        raise ValueError("idempotency_key is required")
    metadata = {"kind": kind, "reference_id": str(reference_id)}
    params: dict[str, Any] = {
        "mode": "payment",
        "line_items": [
            {
                "price_data": {
                    "currency": _currency(currency),
                    "unit_amount": minor,
                    "product_data": {"name": name.strip()},
                },
                "quantity": quantity,
            }
        ],
        "client_reference_id": str(reference_id),
        "metadata": metadata,
        "payment_intent_data": {"metadata": metadata},
        "expires_at": int(expires_at.timestamp()),
        "success_url": settings.CHECKOUT_SUCCESS_URL,
        "cancel_url": settings.CHECKOUT_CANCEL_URL,
    }
    if customer_email:
        params["customer_email"] = customer_email
    session = _call(
        "checkout.sessions.create",
        lambda client: client.v1.checkout.sessions.create(params, {"idempotency_key": idempotency_key}),
    )
    return CheckoutSession.from_stripe(session)


def retrieve_checkout_session(*, session_id: str) -> CheckoutSession:
    session = _call("checkout.sessions.retrieve", lambda client: client.v1.checkout.sessions.retrieve(session_id))
    return CheckoutSession.from_stripe(session)


def expire_checkout_session(*, session_id: str) -> CheckoutSession:
    """Expire an open session so that it can no longer be paid; returns its state.

    A session that is no longer open (already expired, or completed: possibly paid!) is
    not an error: its current state is returned, and the caller must look at `status` /
    `payment_status` before releasing anything.
    """
    client = _client()
    try:
        session = client.v1.checkout.sessions.expire(session_id)
    except stripe.InvalidRequestError as exc:
        logger.info(
            "Stripe refused to expire checkout session %s (%s: %s); reading its state",
            session_id,
            exc.code,
            exc.user_message,
        )
        return retrieve_checkout_session(session_id=session_id)
    except stripe.StripeError as exc:
        raise _gateway_error("checkout.sessions.expire", exc) from exc
    return CheckoutSession.from_stripe(session)


# --- Refunds ------------------------------------------------------------------------------
def create_refund(
    *,
    payment_intent_id: str,
    amount: Decimal | None = None,
    idempotency_key: str,
    reason: RefundReason | None = None,
    metadata: Mapping[str, str] | None = None,
) -> Refund:
    """Refund a PaymentIntent, fully (`amount=None`) or partly. `reason` is Stripe's enum;
    free text (e.g. a merchant's reason) belongs in `metadata`."""
    if not payment_intent_id or not idempotency_key:
        raise ValueError("payment_intent_id and idempotency_key are required")
    if reason is not None and reason not in REFUND_REASONS:
        raise ValueError(f"reason must be one of {sorted(REFUND_REASONS)}, got {reason!r}")
    params: dict[str, Any] = {"payment_intent": payment_intent_id}
    if amount is not None:
        minor = to_minor_units(amount)
        if minor <= 0:
            raise ValueError(f"amount must be positive, got {amount}")
        params["amount"] = minor
    if reason is not None:
        params["reason"] = reason
    if metadata:
        params["metadata"] = {str(key): str(value) for key, value in metadata.items()}
    refund = _call(
        "refunds.create",
        lambda client: client.v1.refunds.create(params, {"idempotency_key": idempotency_key}),
    )
    return Refund.from_stripe(refund)


def list_refunds(*, payment_intent_id: str | None = None, created_since: datetime | None = None) -> list[Refund]:
    """Every refund of one PaymentIntent, or every refund made since a moment (all pages),
    newest first: what Stripe says was refunded, whoever asked for it."""
    if payment_intent_id is None and created_since is None:
        raise ValueError("list refunds of a payment intent, or since a moment")
    params: dict[str, Any] = {"limit": 100}
    if payment_intent_id is not None:
        params["payment_intent"] = payment_intent_id
    if created_since is not None:
        params["created"] = {"gte": int(created_since.timestamp())}
    return _call(
        "refunds.list",
        lambda client: [Refund.from_stripe(r) for r in client.v1.refunds.list(params).auto_paging_iter()],
    )


def list_checkout_sessions(*, created_since: datetime) -> list[CheckoutSession]:
    """Every Checkout Session created since a moment (all pages), newest first."""
    params = {"limit": 100, "created": {"gte": int(created_since.timestamp())}}
    return _call(
        "checkout.sessions.list",
        lambda client: [
            CheckoutSession.from_stripe(s) for s in client.v1.checkout.sessions.list(params).auto_paging_iter()
        ],
    )


def retrieve_payment_intent(*, payment_intent_id: str) -> PaymentIntent:
    intent = _call("payment_intents.retrieve", lambda client: client.v1.payment_intents.retrieve(payment_intent_id))
    return PaymentIntent.from_stripe(intent)


# --- Webhooks -----------------------------------------------------------------------------
def construct_event(*, payload: bytes, signature_header: str | None) -> dict[str, Any]:
    """Verify a webhook's `Stripe-Signature` on the raw body and return the event as a dict.

    The signature check is the SDK's (`WebhookSignature.verify_header`, tolerance 300 s,
    any of several `v1` signatures may match while a secret is rotated).

    Raises WebhookSignatureInvalid (missing, wrong or older than the tolerance),
    WebhookPayloadInvalid (not a Stripe event) or GatewayNotConfigured (no webhook secret).
    """
    secret = settings.STRIPE_WEBHOOK_SECRET
    if not secret:
        raise GatewayNotConfigured("Stripe webhooks are not configured.")
    if not signature_header:
        raise WebhookSignatureInvalid()
    try:
        # What stripe.Webhook.construct_event does first; it then only parses the JSON into
        # an SDK Event (and trips over bodies that are JSON but not an object), which we
        # do not want: the event is returned as a plain dict.
        stripe.WebhookSignature.verify_header(payload, signature_header, secret, WEBHOOK_TOLERANCE_SECONDS)
    except stripe.SignatureVerificationError as exc:
        logger.warning("Refused a Stripe webhook: %s", exc.user_message)
        raise WebhookSignatureInvalid() from exc
    except UnicodeDecodeError as exc:
        raise WebhookPayloadInvalid() from exc
    try:
        event = json.loads(payload)
    except ValueError as exc:
        raise WebhookPayloadInvalid() from exc
    if (
        not isinstance(event, dict)
        or event.get("object") != "event"
        or not isinstance(event.get("id"), str)
        or not isinstance(event.get("type"), str)
        or not isinstance(event.get("data"), dict)
        or not isinstance(event["data"].get("object"), dict)
    ):
        raise WebhookPayloadInvalid()
    return event


# --- Helpers ------------------------------------------------------------------------------
def _currency(currency: str) -> str:
    code = (currency or "").strip().lower()
    if len(code) != 3 or not code.isalpha():
        raise ValueError(f"currency must be an ISO 4217 code, got {currency!r}")
    if code in _NOT_TWO_DECIMAL:
        raise ValueError(f"currency {code.upper()} does not have two decimal places; not supported")
    return code


def _plain(obj: Any) -> dict[str, Any]:
    if isinstance(obj, stripe.StripeObject):
        return obj.to_dict()
    if isinstance(obj, Mapping):
        return dict(obj)
    raise TypeError(f"expected a Stripe object or a mapping, not {type(obj).__name__}")


def _id_of(value: Any) -> str | None:
    """An expandable field: an id string, an (expanded) object, or None."""
    if value is None or isinstance(value, str):
        return value
    return _plain(value).get("id")
