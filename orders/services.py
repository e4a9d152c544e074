"""Every write on orders. Views, the admin, the webhook dispatcher and the management
command call these; nothing else changes an order.

Lock order, everywhere: order row → product row → user wallets in primary-key order
(a purchase has no order row yet: product → wallets). Two transactions therefore never
wait on each other in a cycle.

Stripe is never called while a row lock is held, also under an Idempotency-Key (the
views use the shared decorator's multi-step mode for card orders and gateway refunds).

The three services the Stripe webhook dispatcher calls are
`order_gateway_payment_succeeded`, `order_gateway_payment_failed` and
`order_gateway_session_expired`: each is one transaction under the order row lock, is a
no-op when the order has already left PENDING, never moves money twice and never calls
Stripe. A payment that cannot be applied (late, or the merchant's wallet is locked) is
only marked `refund_required` there; `order_refund_unapplied_payment` refunds it with no
lock held, called by the dispatcher after its transaction commits.
"""

import logging
import uuid
from datetime import timedelta
from uuid import UUID

from django.conf import settings
from django.db import connection
from django.utils import timezone

from accounts.models import User
from catalog.models import Product
from catalog.services import product_return_units, product_take_or_refuse, product_take_units
from orders.exceptions import (
    InvalidOrderTransition,
    OrderNotCancellable,
    OrderNotFound,
    OrderNotRefundable,
    OwnProduct,
)
from orders.models import Order
from paymentflow import metrics
from paymentflow.db import atomic_with_retry, autocommit_with_retry
from payments import gateway
from wallets.exceptions import InsufficientFunds, WalletLocked
from wallets.models import LedgerEntry, SystemAccount, Wallet
from wallets.services import wallet_get_or_create, wallet_settle, wallet_transfer, wallets_lock_for_users

logger = logging.getLogger("paymentflow.orders")

REFERENCE_TYPE = "order"
#: Checkout sessions live CHECKOUT_EXPIRES_MINUTES plus this margin, so the request that
#: creates them is never refused for landing a few seconds under Stripe's 30 minutes.
CHECKOUT_EXPIRY_MARGIN = timedelta(minutes=1)
REASON_MAX_LENGTH = 500

Status = Order.Status
Method = Order.PaymentMethod


# --- helpers ------------------------------------------------------------------------------


def _transition(order: Order, to: str, **fields) -> Order:
    """The one place an order changes status: checks the allowed-transitions map, stamps
    the matching timestamp and writes the changed columns (the caller holds the row lock)."""
    if not order.can_become(to):
        raise InvalidOrderTransition(f"An order cannot go from {order.status} to {to}.")
    now = timezone.now()
    stamp = {Status.COMPLETED: "completed_at", Status.CANCELLED: "cancelled_at", Status.REFUNDED: "refunded_at"}
    if to in stamp:
        fields.setdefault(stamp[to], now)
    fields.update(status=to, updated_at=now)
    for name, value in fields.items():
        setattr(order, name, value)
    order.save(update_fields=list(fields))
    metrics.order_entered_status(order)
    return order


def _lock_order(order_id) -> Order:
    """The order row, FOR UPDATE (only the order's row: the product is joined, not locked)."""
    order = Order.objects.select_for_update(of=("self",)).select_related("product").filter(pk=order_id).first()
    if order is None:
        raise OrderNotFound()
    return order


def _reason(text: str | None) -> str:
    return (text or "").strip()[:REASON_MAX_LENGTH]


def _user_wallets(*user_ids) -> dict:
    """{user id: Wallet (unlocked; _post locks it)} in one query; creates a missing one."""
    found = {w.user_id: w for w in Wallet.objects.filter(user_id__in=user_ids, kind=Wallet.Kind.USER)}
    for user_id in user_ids:
        if user_id not in found:
            found[user_id] = wallet_get_or_create(user=User(pk=user_id))
    return found


def _settle_with_clearing(order: Order, *, delta, type: str, description: str):
    """Move the merchant's card money against `stripe:clearing` (+ credited, - debited), in a
    savepoint: refused (a locked wallet, a short balance), it leaves nothing behind, not
    even the wallet's lock."""
    return wallet_settle(
        wallet=_user_wallets(order.merchant_id)[order.merchant_id],
        account=SystemAccount.STRIPE_CLEARING,
        delta=delta,
        type=type,
        reference_type=REFERENCE_TYPE,
        reference_id=str(order.pk),
        description=description[:255],
    )


# --- purchase -----------------------------------------------------------------------------


def _order_fields(*, buyer: User, product, quantity: int) -> dict:
    """What every order copies from its product at purchase time."""
    return {
        "user": buyer,
        "product": product,
        "merchant_id": product.merchant_id,
        "quantity": quantity,
        "unit_price": product.price,
        "amount": product.price * quantity,
        "currency": product.currency,
    }


def order_purchase_with_wallet(*, buyer: User, product_id: UUID, quantity: int = 1) -> Order:
    """`POST /orders {paymentMethod: WALLET}`: one transaction that takes the stock, moves
    the money (buyer PAYMENT, merchant REVENUE) and writes the COMPLETED order — or nothing.

    On PostgreSQL the whole purchase is one statement, a call of the database function
    `orders_wallet_purchase` (migration orders/0003, which lists its steps), committed by
    PostgreSQL as it returns: one round trip instead of nine, and the product and wallet
    locks are held for the function's run only (docs/PERFORMANCE.md). Elsewhere (the
    embedded SQLite of `make run`), and on PostgreSQL when `WALLET_PURCHASE_IN_DATABASE` is
    off, `_purchase_with_orm` does the same through the catalog and wallet services.
    `orders/tests/test_wallet_purchase_engines.py` holds the two to the same results.

    Raises ProductNotFound, ProductUnavailable, ProductOutOfStock, OwnProduct,
    InsufficientFunds, WalletLocked.
    """
    if connection.vendor == "postgresql" and settings.WALLET_PURCHASE_IN_DATABASE:
        return _purchase_in_database(buyer=buyer, product_id=product_id, quantity=quantity)
    return _purchase_with_orm(buyer=buyer, product_id=product_id, quantity=quantity)


@atomic_with_retry
def _purchase_with_orm(*, buyer: User, product_id: UUID, quantity: int) -> Order:
    product = product_take_units(product_id=product_id, quantity=quantity)  # locks the product row
    if product.merchant_id == buyer.pk:
        raise OwnProduct()
    order_id = uuid.uuid4()
    amount = product.price * quantity
    wallets = wallets_lock_for_users(buyer.pk, product.merchant_id)  # both, one statement, pk order
    wallet_transfer(  # INSUFFICIENT_FUNDS / WALLET_LOCKED
        source=wallets[buyer.pk],
        destination=wallets[product.merchant_id],
        locked_by_caller=True,
        amount=amount,
        source_type=LedgerEntry.Type.PAYMENT,
        destination_type=LedgerEntry.Type.REVENUE,
        reference_type=REFERENCE_TYPE,
        reference_id=str(order_id),
        description=f"Order {order_id}: {quantity} x {product.name}"[:255],
    )
    order = Order.objects.create(
        id=order_id,
        **_order_fields(buyer=buyer, product=product, quantity=quantity),
        status=Status.COMPLETED,
        payment_method=Method.WALLET,
        completed_at=timezone.now(),
    )
    metrics.order_entered_status(order)
    return order


_WALLET_PURCHASE_SQL = "SELECT * FROM orders_wallet_purchase(%s, %s, %s, %s, %s)"
#: The product fields the function returns, in its column order after the outcome.
_PURCHASED_PRODUCT_FIELDS = ["id", "merchant_id", "name", "price", "currency", "available_units"]


@autocommit_with_retry  # the function is the one statement that writes
def _purchase_in_database(*, buyer: User, product_id: UUID, quantity: int) -> Order:
    order_id = uuid.uuid4()
    product_id = Product._meta.pk.to_python(product_id)

    def purchase():
        with connection.cursor() as cursor:
            cursor.execute(_WALLET_PURCHASE_SQL, [order_id, buyer.pk, product_id, quantity, settings.CURRENCY])
            outcome, *product_values, buyer_balance, at = cursor.fetchone()
        if outcome == "STOCK":
            return None  # nothing written; the catalog says why
        product = Product.from_db(connection.alias, _PURCHASED_PRODUCT_FIELDS, [product_id, *product_values])
        if outcome == "OWN_PRODUCT":
            raise OwnProduct()
        if outcome == "WALLET_LOCKED":
            raise WalletLocked()
        if outcome == "INSUFFICIENT_FUNDS":
            raise InsufficientFunds(
                required=product.price * quantity, available=buyer_balance, currency=product.currency
            )
        assert outcome == Status.COMPLETED, f"unknown outcome of orders_wallet_purchase: {outcome}"
        return product, at

    product, at = product_take_or_refuse(purchase, product_id=product_id, quantity=quantity)
    order = Order(
        id=order_id,
        **_order_fields(buyer=buyer, product=product, quantity=quantity),
        status=Status.COMPLETED,
        payment_method=Method.WALLET,
        completed_at=at,
        created_at=at,
        updated_at=at,
    )
    order._state.adding, order._state.db = False, connection.alias  # it is the row just inserted
    metrics.order_entered_status(order)
    metrics.ledger_legs_written([(LedgerEntry.Type.PAYMENT, order.amount), (LedgerEntry.Type.REVENUE, order.amount)])
    return order


@atomic_with_retry
def _order_reserve(*, buyer: User, product_id: UUID, quantity: int) -> Order:
    """A short transaction: take the stock and write the PENDING gateway order."""
    product = product_take_units(product_id=product_id, quantity=quantity)
    if product.merchant_id == buyer.pk:
        raise OwnProduct()
    expires_at = timezone.now() + timedelta(minutes=settings.CHECKOUT_EXPIRES_MINUTES) + CHECKOUT_EXPIRY_MARGIN
    order = Order.objects.create(
        **_order_fields(buyer=buyer, product=product, quantity=quantity),
        status=Status.PENDING,
        payment_method=Method.GATEWAY,
        checkout_expires_at=expires_at,
    )
    metrics.order_entered_status(order)
    return order


def order_purchase_with_gateway(*, buyer: User, product_id: UUID, quantity: int = 1) -> Order:
    """`POST /orders {paymentMethod: GATEWAY}`: reserve (one short transaction), create the
    Checkout Session with no lock held, record it (a second short transaction).

    No key: GatewayNotConfigured (503) before anything is reserved. A GatewayError
    releases the reservation (order FAILED, stock back) and is re-raised (502). A timeout
    does not prove Stripe made nothing: a payment that still arrives for the FAILED order
    is marked by `order_gateway_payment_succeeded` and refunded (`order_refund_unapplied_payment`).
    """
    if not gateway.is_configured():
        raise gateway.GatewayNotConfigured()
    order = _order_reserve(buyer=buyer, product_id=product_id, quantity=quantity)
    try:
        session = gateway.create_checkout_session(
            kind="order",
            reference_id=str(order.id),
            name=order.product.name,
            unit_amount=order.unit_price,
            quantity=order.quantity,
            currency=order.currency,
            customer_email=buyer.email,
            idempotency_key=f"checkout-{order.id}",
            expires_at=order.checkout_expires_at,
        )
    except gateway.GatewayError:
        _order_release(order_id=order.id, to=Status.FAILED, reason="The payment gateway could not create a checkout.")
        raise
    now = timezone.now()
    Order.objects.filter(pk=order.pk).update(stripe_session_id=session.id, checkout_url=session.url, updated_at=now)
    order.stripe_session_id, order.checkout_url, order.updated_at = session.id, session.url, now
    return order


def order_purchase(*, buyer: User, product_id: UUID, payment_method: str, quantity: int = 1) -> Order:
    if payment_method == Method.GATEWAY:
        return order_purchase_with_gateway(buyer=buyer, product_id=product_id, quantity=quantity)
    return order_purchase_with_wallet(buyer=buyer, product_id=product_id, quantity=quantity)


# --- releasing a PENDING order ------------------------------------------------------------


@atomic_with_retry
def _order_release(*, order_id, to: str, reason: str, refuse: type[Exception] | None = None) -> Order:
    """PENDING → `to` (FAILED / CANCELLED) with `failure_reason`, its units back in stock.

    Re-checked under the order lock: an order no longer PENDING is returned unchanged
    (webhooks, expiry) or refused with `refuse` (the buyer's cancel).
    """
    order = _lock_order(order_id)
    if order.status != Status.PENDING:
        if refuse is not None:
            raise refuse()
        return order
    product_return_units(product_id=order.product_id, quantity=order.quantity)
    return _transition(order, to, failure_reason=_reason(reason))


def _expire_session_or_complete(order: Order, *, refuse: type[Exception] | None) -> bool:
    """Expire the order's Checkout Session at Stripe (no lock held). True when the order may
    be released; False when it must not be, because the session was paid (the payment is
    applied here) or a delayed payment is still processing."""
    if order.payment_method != Method.GATEWAY or not order.stripe_session_id:
        return True
    session = gateway.expire_checkout_session(session_id=order.stripe_session_id)
    if session.status != "complete":
        return True
    if session.is_paid:
        order = order_gateway_payment_succeeded(
            order_id=order.id, session_id=session.id, payment_intent_id=session.payment_intent_id
        )
        if order.refund_required:
            _refund_unapplied_payment_or_leave_it(order)
        if refuse is not None:
            if order.status == Status.COMPLETED:
                raise refuse("The order was paid before it could be cancelled.")
            raise refuse("The order was paid but could not be completed; the payment is refunded.")
        return False
    if refuse is not None:
        raise refuse("The payment for this order is being processed; it cannot be cancelled now.")
    return False


def _refund_unapplied_payment_or_leave_it(order: Order) -> None:
    """Refund now, no lock held; if Stripe fails, the order stays `refund_required` and the
    paid session's webhook (which Stripe delivers, and retries, in any case) finishes it."""
    try:
        order_refund_unapplied_payment(order_id=order.pk)
    except gateway.GatewayError as exc:
        logger.warning("Order %s: refund of the unapplied payment failed (%s); left to the webhook", order.pk, exc)


def order_cancel(*, order_id, buyer: User) -> Order:
    """`POST /orders/{id}/cancel` by the order's buyer: PENDING only (else 409).

    A gateway order's Checkout Session is expired at Stripe first; if Stripe says it was
    already paid, the payment is applied instead and the cancel refused (409).
    """
    order = Order.objects.filter(pk=order_id, user=buyer).first()
    if order is None:
        raise OrderNotFound()
    if order.status != Status.PENDING:
        raise OrderNotCancellable()
    _expire_session_or_complete(order, refuse=OrderNotCancellable)
    return _order_release(
        order_id=order.id, to=Status.CANCELLED, reason="Cancelled by the buyer.", refuse=OrderNotCancellable
    )


def order_expire(*, order_id) -> Order:
    """Cancel one PENDING order that outlived PENDING_ORDER_TIMEOUT_MINUTES (the session is
    expired at Stripe first). Safe to run concurrently: the release re-checks under the lock."""
    order = Order.objects.filter(pk=order_id).first()
    if order is None:
        raise OrderNotFound()
    if order.status != Status.PENDING:
        return order
    if not _expire_session_or_complete(order, refuse=None):
        return Order.objects.get(pk=order_id)
    return _order_release(order_id=order.id, to=Status.CANCELLED, reason="Expired: not paid in time.")


def pending_orders_to_expire(*, now=None) -> list:
    """Ids of PENDING orders older than PENDING_ORDER_TIMEOUT_MINUTES (oldest first)."""
    cutoff = (now or timezone.now()) - timedelta(minutes=settings.PENDING_ORDER_TIMEOUT_MINUTES)
    return list(
        Order.objects.filter(status=Status.PENDING, created_at__lt=cutoff)
        .order_by("created_at")
        .values_list("pk", flat=True)
    )


# --- webhook-facing services (called by webhooks' dispatcher) ------------------------------


def late_payment_refund_idempotency_key(order: Order) -> str:
    """The Stripe idempotency key of an order's unapplied-payment refund (unchanged since
    it served late payments only, so a refund attempted before and retried after a deploy
    still finds the first one)."""
    return f"late-payment-refund-{order.pk}"


@atomic_with_retry
def order_gateway_payment_succeeded(*, order_id, session_id: str, payment_intent_id: str | None) -> Order:
    """A Checkout Session of the order was paid (checkout.session.completed with
    payment_status=paid, or checkout.session.async_payment_succeeded). Database only: one
    transaction under the order lock, Stripe is never called here.

    - PENDING → COMPLETED, the merchant credited REVENUE against `stripe:clearing` (one
      journal entry, reference ("order", id)).
    - PENDING but the merchant's wallet is locked (a locked wallet refuses every credit):
      → FAILED with a `failure_reason`, the units back in stock, `refund_required`.
    - CANCELLED / FAILED (a late payment: the units were already released):
      `refund_required`, unless already refunded.
    - COMPLETED / REFUNDED: no-op (a duplicate or a second event for the session).

    A returned order with `refund_required` must then be refunded with
    `order_refund_unapplied_payment`, with no lock held: the webhook dispatcher does it
    after its transaction commits, the buyer's cancel and the expiry right after this.
    """
    order = _lock_order(order_id)
    if order.payment_method != Method.GATEWAY:
        logger.error("Gateway payment %s reported for WALLET order %s; ignored", session_id, order.pk)
        return order
    if order.stripe_session_id and session_id and order.stripe_session_id != session_id:
        logger.warning("Order %s paid through session %s, recorded %s", order.pk, session_id, order.stripe_session_id)
    if order.status in (Status.COMPLETED, Status.REFUNDED):
        return order  # already applied: a duplicate or late event
    fields = {}
    if payment_intent_id and not order.stripe_payment_intent_id:
        fields["stripe_payment_intent_id"] = payment_intent_id
    if session_id and not order.stripe_session_id:
        fields["stripe_session_id"] = session_id
    if order.status == Status.PENDING:
        try:
            _settle_with_clearing(
                order, delta=order.amount, type=LedgerEntry.Type.REVENUE, description=f"Order {order.pk} paid by card"
            )
        except WalletLocked:
            logger.warning("Order %s paid but the merchant's wallet is locked: failing and refunding it", order.pk)
            product_return_units(product_id=order.product_id, quantity=order.quantity)
            fields["failure_reason"] = "Paid, but the merchant's wallet is locked and cannot be credited; refunded."
            return _transition(order, Status.FAILED, **_with_refund_required(order, fields))
        return _transition(order, Status.COMPLETED, **fields)
    # CANCELLED / FAILED: the buyer paid for units we no longer hold.
    if order.stripe_refund_id is None and not order.refund_required:
        logger.warning("Late payment for %s order %s: refunding it", order.status, order.pk)
        fields = _with_refund_required(order, fields)
    return _set(order, **fields) if fields else order


def _with_refund_required(order: Order, fields: dict) -> dict:
    """`fields` plus `refund_required`, when there is a payment intent Stripe can refund."""
    if fields.get("stripe_payment_intent_id") or order.stripe_payment_intent_id:
        return {**fields, "refund_required": True}
    logger.error("Unapplied payment for order %s has no payment intent; refund it by hand", order.pk)
    return fields


def order_refund_unapplied_payment(*, order_id) -> Order:
    """Refund through Stripe a payment that was not applied (`refund_required`): a late
    payment for a CANCELLED / FAILED order, or one the locked merchant wallet refused.

    Call with no transaction open: Stripe is called with no lock held. Safe to repeat and
    to run twice at once: the idempotency key is derived from the order
    (`late-payment-refund-<id>`), and the refund id is recorded under the order lock. Raises
    GatewayError when Stripe fails (the order stays `refund_required`; a retry refunds it).
    """
    order = Order.objects.filter(pk=order_id).first()
    if order is None:
        raise OrderNotFound()
    if not order.refund_required or order.stripe_refund_id:
        return order
    refund = gateway.create_refund(
        payment_intent_id=order.stripe_payment_intent_id,
        idempotency_key=late_payment_refund_idempotency_key(order),
        reason="requested_by_customer",
        metadata={"order_id": str(order.pk), "cause": "payment_not_applied"},
    )
    return _record_unapplied_payment_refund(order_id=order.pk, refund_id=refund.id)


@atomic_with_retry
def _record_unapplied_payment_refund(*, order_id, refund_id: str) -> Order:
    order = _lock_order(order_id)
    if order.refund_required and not order.stripe_refund_id:
        order = _set(order, refund_required=False, stripe_refund_id=refund_id)
        logger.warning(
            "Unapplied payment for %s order %s (payment intent %s) refunded: %s",
            order.status,
            order.pk,
            order.stripe_payment_intent_id,
            refund_id,
        )
    return order


def _set(order: Order, **fields) -> Order:
    """Write some columns of a locked order that do not change its status."""
    fields["updated_at"] = timezone.now()
    for name, value in fields.items():
        setattr(order, name, value)
    order.save(update_fields=list(fields))
    return order


def order_gateway_payment_failed(*, order_id, reason: str) -> Order:
    """checkout.session.async_payment_failed: PENDING → FAILED, stock released; else no-op."""
    return _order_release(order_id=order_id, to=Status.FAILED, reason=reason or "The payment failed.")


def order_gateway_session_expired(*, order_id) -> Order:
    """checkout.session.expired: PENDING → CANCELLED, stock released; else no-op."""
    return _order_release(order_id=order_id, to=Status.CANCELLED, reason="The checkout session expired.")


# --- refunds ------------------------------------------------------------------------------


def order_refund(*, order_id, merchant: User, reason: str = "") -> Order:
    """`POST /orders/{id}/refund` by the order's merchant (anyone else: 404).

    WALLET: one transaction (merchant → buyer REFUND, stock back, REFUNDED).
    GATEWAY: see `_refund_gateway`. Not COMPLETED: 409 ORDER_NOT_REFUNDABLE.
    """
    order = Order.objects.filter(pk=order_id, merchant=merchant).first()
    if order is None:
        raise OrderNotFound()
    if order.status != Status.COMPLETED:
        raise OrderNotRefundable()
    if order.payment_method == Method.WALLET:
        return _refund_wallet(order_id=order.pk, reason=_reason(reason))
    return _refund_gateway(order_id=order.pk, reason=_reason(reason))


@atomic_with_retry
def _refund_wallet(*, order_id, reason: str) -> Order:
    order = _lock_order(order_id)
    if order.status != Status.COMPLETED:
        raise OrderNotRefundable()
    product_return_units(product_id=order.product_id, quantity=order.quantity)
    wallets = wallets_lock_for_users(order.merchant_id, order.user_id)
    wallet_transfer(  # INSUFFICIENT_FUNDS when the merchant is short: everything rolls back
        source=wallets[order.merchant_id],
        destination=wallets[order.user_id],
        locked_by_caller=True,
        amount=order.amount,
        source_type=LedgerEntry.Type.REFUND,
        destination_type=LedgerEntry.Type.REFUND,
        reference_type=REFERENCE_TYPE,
        reference_id=str(order.pk),
        description=f"Refund of order {order.pk}"[:255],
    )
    return _transition(order, Status.REFUNDED, refund_reason=reason or None)


@atomic_with_retry
def _refund_gateway_hold(*, order_id, reason: str) -> Order:
    """Phase 1: debit the merchant's REVENUE back to `stripe:clearing` and mark the refund
    in progress, before Stripe is asked (so the money is never refunded without cover)."""
    order = _lock_order(order_id)
    if order.status != Status.COMPLETED:
        raise OrderNotRefundable()
    if order.refund_requested_at is not None:
        return order  # a previous attempt already holds the money: resume it
    _settle_with_clearing(
        order, delta=-order.amount, type=LedgerEntry.Type.REFUND, description=f"Card refund of order {order.pk}"
    )
    order.refund_requested_at = timezone.now()
    order.refund_reason = reason or None
    order.save(update_fields=["refund_requested_at", "refund_reason", "updated_at"])
    return order


@atomic_with_retry
def _refund_gateway_finish(*, order_id, refund_id: str) -> Order:
    """Phase 3: Stripe refunded: stock back, REFUNDED."""
    order = _lock_order(order_id)
    if order.status == Status.REFUNDED:
        return order
    product_return_units(product_id=order.product_id, quantity=order.quantity)
    return _transition(order, Status.REFUNDED, stripe_refund_id=refund_id)


@atomic_with_retry
def _refund_gateway_release_hold(*, order_id) -> Order:
    """Stripe definitively refused the refund: give the merchant the held money back."""
    order = _lock_order(order_id)
    if order.status != Status.COMPLETED or order.refund_requested_at is None:
        return order
    _settle_with_clearing(
        order,
        delta=order.amount,
        type=LedgerEntry.Type.REVENUE,
        description=f"Card refund of order {order.pk} refused by Stripe; revenue restored",
    )
    order.refund_requested_at = None
    order.save(update_fields=["refund_requested_at", "updated_at"])
    return order


def _refund_gateway(*, order_id, reason: str) -> Order:
    """A COMPLETED card order:

    1. one transaction: lock the order, debit the merchant (INSUFFICIENT_FUNDS: nothing
       changes, Stripe is not called), mark `refund_requested_at`;
    2. no lock held: Stripe refund, idempotency key `refund-<order id>`;
    3. one transaction: stock back, REFUNDED, `stripe_refund_id`.

    If Stripe fails transiently (timeout, 5xx: the refund may have happened) the hold
    stays and the order stays COMPLETED with `refund_requested_at` set; the next refund
    request resumes at step 2 with the same key, so Stripe returns the same refund. A
    definitive refusal (4xx) returns the held money to the merchant. Either way: 502.
    """
    if not gateway.is_configured():
        raise gateway.GatewayNotConfigured()  # before holding anything
    order = _refund_gateway_hold(order_id=order_id, reason=reason)
    try:
        refund = gateway.create_refund(
            payment_intent_id=order.stripe_payment_intent_id or "",
            amount=order.amount,
            idempotency_key=f"refund-{order.pk}",
            reason="requested_by_customer",
            metadata={"order_id": str(order.pk)},
        )
    except gateway.GatewayError as exc:
        if not exc.transient:
            _refund_gateway_release_hold(order_id=order.pk)
        raise
    except ValueError as exc:  # no payment intent recorded: nothing Stripe could refund
        _refund_gateway_release_hold(order_id=order.pk)
        raise OrderNotRefundable("This card order has no recorded payment to refund.") from exc
    return _refund_gateway_finish(order_id=order.pk, refund_id=refund.id)
