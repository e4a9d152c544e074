"""Every write on orders. Views, the admin and the payment hooks call these; nothing else
changes an order, and `_transition` is the one place its status changes.

Lock order, everywhere: (card payment row →) order row → product row → user wallets in
primary-key order (a purchase has no order row yet: product → wallets). Two transactions
therefore never wait on each other in a cycle.

Card orders: the order holds its `payments.CheckoutPayment`; `payments` creates the
Checkout Session, checks what Stripe says about it and refunds it, and moves the order
through the hooks registered here (`CARD_ORDER_HOOKS`, from `OrdersConfig.ready()`): paid,
released (failed / expired / cancelled), refund held, refund released, refunded. Each
runs in the payment's transaction, locks the order and moves its money and stock; none
calls Stripe.
"""

import logging
import uuid
from uuid import UUID

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from accounts.models import User
from catalog.services import product_return_units, product_take_units
from orders.exceptions import (
    InvalidOrderTransition,
    MerchantWalletRefused,
    OrderActionForbidden,
    OrderAmountTooLarge,
    OrderNotCancellable,
    OrderNotFound,
    OrderNotRefundable,
    OwnProduct,
)
from orders.models import Order
from paymentflow import metrics, sql
from paymentflow.api.exceptions import ApplicationError
from paymentflow.db import atomic_with_retry, set_lock_timeout
from payments import gateway
from payments import services as payments
from payments.exceptions import PaymentNotRefundable
from payments.hooks import CheckoutHooks, CheckoutLine
from payments.models import CheckoutPayment
from wallets.exceptions import WalletLocked
from wallets.models import LedgerEntry, SystemAccount, Wallet
from wallets.services import (
    MAX_BALANCE,
    wallet_get_or_create,
    wallet_settle,
    wallet_transfer,
    wallets_lock_for_users,
)
from webhooks.events import webhook_event_record

logger = logging.getLogger("paymentflow.orders")

REFERENCE_TYPE = "order"
#: The card payments of orders (`payments.hooks`).
PAYMENT_KIND = "order"
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
    return _entered(order)


def _entered(order: Order) -> Order:
    """What follows every status an order enters: the metric and the merchant's event."""
    metrics.order_entered_status(order)
    return _tell_merchant(order)


def _tell_merchant(order: Order) -> Order:
    """The order's new status as a merchant webhook event (`order.completed`, ...), recorded
    in the caller's transaction: a change that rolls back tells nobody."""
    webhook_event_record(merchant_id=order.merchant_id, event_type=f"order.{order.status.lower()}", subject=order)
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

    Lock, then check, then write, each app on its own tables through its own services:
    the product row first (catalog's conditional stock `UPDATE`, which locks it), then
    both wallets `FOR UPDATE` in primary-key order (wallets), the checks on those locked
    rows, then the writes in one statement: the journal entry with its legs and balances
    (wallets) and the order row (orders, `sql.insert(order)`), then the
    merchant's webhook event (`order.completed`, webhooks). So the product's lock is held
    across four round trips after its UPDATE: the wallets' lock, the writes, the event,
    the COMMIT. Deadlocks and serialization failures run it again (`atomic_with_retry`);
    a lock waited for beyond PURCHASE_LOCK_TIMEOUT_MS is 503 DATABASE_BUSY. Everything
    that can happen before the first lock does (the order's id, its description).

    Raises ProductNotFound, ProductUnavailable, ProductOutOfStock, OwnProduct,
    InsufficientFunds, WalletLocked.
    """
    order_id = uuid.uuid4()
    return _purchase_with_wallet(buyer=buyer, product_id=product_id, quantity=quantity, order_id=order_id)


@atomic_with_retry
def _purchase_with_wallet(*, buyer: User, product_id: UUID, quantity: int, order_id: UUID) -> Order:
    set_lock_timeout(settings.PURCHASE_LOCK_TIMEOUT_MS)
    product = product_take_units(product_id=product_id, quantity=quantity)  # locks the product row
    if product.merchant_id == buyer.pk:
        raise OwnProduct()
    wallets = wallets_lock_for_users(buyer.pk, product.merchant_id)  # both, one statement, pk order
    now = timezone.now()
    order = Order(
        id=order_id,
        **_order_fields(buyer=buyer, product=product, quantity=quantity),
        status=Status.COMPLETED,
        payment_method=Method.WALLET,
        completed_at=now,
        created_at=now,
        updated_at=now,
    )
    wallet_transfer(  # INSUFFICIENT_FUNDS / WALLET_LOCKED, checked on the locked rows; then the writes
        source=wallets[buyer.pk],
        destination=wallets[product.merchant_id],
        locked_by_caller=True,
        amount=order.amount,
        source_type=LedgerEntry.Type.PAYMENT,
        destination_type=LedgerEntry.Type.REVENUE,
        reference_type=REFERENCE_TYPE,
        reference_id=str(order_id),
        description=f"Order {order_id}: {quantity} x {product.name}"[:255],
        written_with=[sql.insert(order)],  # the COMPLETED order row, in the journal entry's statement
    )
    return _entered(order)  # the order as written: nothing is read back


# --- card orders: their Checkout payment and its hooks ------------------------------------


#: The largest amount a money column holds (Decimal(14, 2)).


@atomic_with_retry
def _order_reserve(*, buyer: User, product_id: UUID, quantity: int) -> Order:
    """A short transaction: take the stock, open the buyer's Checkout payment (at most
    MAX_PENDING_CHECKOUTS at once: 409) and write the PENDING gateway order."""
    product = product_take_units(product_id=product_id, quantity=quantity)
    if product.merchant_id == buyer.pk:
        raise OwnProduct()
    amount = product.price * quantity
    if amount > MAX_BALANCE:  # the money column, Decimal(14, 2), overflows: a 400, not a database error
        raise OrderAmountTooLarge(maximum=MAX_BALANCE)
    payment = payments.payment_create(kind=PAYMENT_KIND, payer=buyer, amount=amount, currency=product.currency)
    order = Order.objects.create(
        **_order_fields(buyer=buyer, product=product, quantity=quantity),
        status=Status.PENDING,
        payment_method=Method.GATEWAY,
        payment=payment,
    )
    metrics.order_entered_status(order)
    return order


def order_purchase_with_gateway(*, buyer: User, product_id: UUID, quantity: int = 1) -> Order:
    """`POST /orders {paymentMethod: GATEWAY}`: reserve (one short transaction), then open
    the Checkout Session with no lock held (`payments.payment_open_session`).

    No key: GatewayNotConfigured (503) before anything is reserved. A GatewayError
    releases the reservation (the payment's `released` hook: order FAILED, stock back) and
    is re-raised (502); the FAILED order stays as the record of the attempt. A cancel that
    came while Stripe created the session wins: the order is returned CANCELLED, without
    a checkout URL, its session expired at Stripe.
    """
    if not gateway.is_configured():
        raise gateway.GatewayNotConfigured()
    order = _order_reserve(buyer=buyer, product_id=product_id, quantity=quantity)
    payment = payments.payment_open_session(
        payment=order.payment,
        reference_id=str(order.pk),
        name=order.product.name,
        unit_amount=order.unit_price,
        quantity=order.quantity,
    )
    if payment.status != CheckoutPayment.Status.PENDING:  # cancelled meanwhile: the order as it is now
        return Order.objects.select_related("product", "payment").get(pk=order.pk)
    return order


def order_purchase(*, buyer: User, product_id: UUID, payment_method: str, quantity: int = 1) -> Order:
    if payment_method == Method.GATEWAY:
        return order_purchase_with_gateway(buyer=buyer, product_id=product_id, quantity=quantity)
    return order_purchase_with_wallet(buyer=buyer, product_id=product_id, quantity=quantity)


def _lock_order_of(payment: CheckoutPayment) -> Order:
    """The order `payment` pays for, FOR UPDATE, with what rendering it needs (its product
    joined, and `payment` itself as the hook has it), so the webhook event costs no read."""
    order = (
        Order.objects.select_for_update(of=("self",))
        .select_related("merchant", "product")
        .filter(payment=payment)
        .first()
    )
    if order is None:
        raise OrderNotFound(f"No order is paid by card payment {payment.pk}.")
    order.payment = payment
    return order


def _release(order: Order, *, to: str, reason: str) -> Order:
    """PENDING -> FAILED / CANCELLED with `failure_reason`, its units back (order locked)."""
    product_return_units(product_id=order.product_id, quantity=order.quantity)
    return _transition(order, to, failure_reason=_reason(reason))


def merchant_wallet_refused(order: Order, refusal: ApplicationError) -> MerchantWalletRefused:
    """The refusal again, naming the merchant's wallet (staff read these)."""
    return MerchantWalletRefused(f"The merchant's wallet ({order.merchant.email}) refused: {refusal.message}")


def _on_paid(payment: CheckoutPayment) -> str | None:
    """PENDING -> COMPLETED, the merchant credited REVENUE against `stripe:clearing`. A
    locked merchant wallet refuses every credit: then FAILED, units back, and the reason
    (the payment is refunded)."""
    order = _lock_order_of(payment)
    if order.status != Status.PENDING:
        return f"The order is {order.status}."
    try:
        _settle_with_clearing(
            order, delta=order.amount, type=LedgerEntry.Type.REVENUE, description=f"Order {order.pk} paid by card"
        )
    except WalletLocked:
        reason = "Paid, but the merchant's wallet is locked and cannot be credited; refunded."
        _release(order, to=Status.FAILED, reason=reason)
        return reason
    _transition(order, Status.COMPLETED)
    return None


def _on_released(payment: CheckoutPayment, reason: str) -> None:
    order = _lock_order_of(payment)
    if order.status == Status.PENDING:
        to = Status.FAILED if payment.status == CheckoutPayment.Status.FAILED else Status.CANCELLED
        _release(order, to=to, reason=reason)


def _on_hold_refund(payment: CheckoutPayment, reason: str) -> None:
    """Before Stripe is asked: the merchant's revenue back to `stripe:clearing` (REFUND), so
    money is never refunded without cover (INSUFFICIENT_FUNDS: nothing changes)."""
    order = _lock_order_of(payment)
    if order.status != Status.COMPLETED:
        raise OrderNotRefundable()
    _settle_with_clearing(
        order, delta=-order.amount, type=LedgerEntry.Type.REFUND, description=f"Card refund of order {order.pk}"
    )
    order.refund_reason = reason or None
    order.save(update_fields=["refund_reason", "updated_at"])


def _on_release_refund(payment: CheckoutPayment) -> None:
    """Stripe refunded nothing after all: the held revenue back to the merchant."""
    order = _lock_order_of(payment)
    try:
        _settle_with_clearing(
            order,
            delta=order.amount,
            type=LedgerEntry.Type.REVENUE,
            description=f"Card refund of order {order.pk} refused by Stripe; revenue restored",
        )
    except ApplicationError as exc:
        raise merchant_wallet_refused(order, exc) from exc


def _on_refunded(payment: CheckoutPayment, held: bool) -> None:
    """Stripe refunded the buyer: units back, REFUNDED. Money already `held` (our refund);
    otherwise (a refund made at Stripe without us) the merchant is debited now, or the
    refusal says whose wallet could not cover it."""
    order = _lock_order_of(payment)
    if order.status == Status.REFUNDED:
        return
    if order.status != Status.COMPLETED:
        raise OrderNotRefundable(f"Order {order.pk} is {order.status}.")
    # The product before the merchant's wallet, as the wallet purchase locks them (else a
    # purchase holding the product and waiting for the wallet deadlocks with this). A
    # refusal below rolls the units back with everything else (the caller's savepoint).
    product_return_units(product_id=order.product_id, quantity=order.quantity)
    if not held:
        try:
            _settle_with_clearing(
                order,
                delta=-order.amount,
                type=LedgerEntry.Type.REFUND,
                description=f"Card refund of order {order.pk}, made at Stripe",
            )
        except ApplicationError as exc:
            raise merchant_wallet_refused(order, exc) from exc
    _transition(order, Status.REFUNDED)


def _checkout_line(reference_id: str) -> CheckoutLine | None:
    """The card order `reference_id` as `order_purchase_with_gateway` sent it to Stripe (the
    product's name as it is now: renamed since, Stripe refuses the replay)."""
    try:
        order_id = uuid.UUID(reference_id)
    except ValueError:
        return None
    order = Order.objects.select_related("product").filter(pk=order_id, payment__isnull=False).first()
    if order is None:
        return None
    return CheckoutLine(order.payment_id, str(order.pk), order.product.name, order.unit_price, order.quantity)


CARD_ORDER_HOOKS = CheckoutHooks(
    paid=_on_paid,
    released=_on_released,
    refunded=_on_refunded,
    hold_refund=_on_hold_refund,
    release_refund=_on_release_refund,
    checkout_line=_checkout_line,
)


# --- cancel ------------------------------------------------------------------------------------


def _visible_order(*, order_id, user: User) -> Order:
    order = Order.objects.select_related("payment").filter(Q(user=user) | Q(merchant=user), pk=order_id).first()
    if order is None:
        raise OrderNotFound()
    return order


_CANCEL_REFUSALS = {
    payments.Closed.PAID: "The order was paid before it could be cancelled.",
    payments.Closed.PAID_NOT_APPLIED: "The order was paid but could not be completed; the payment is refunded.",
    payments.Closed.PROCESSING: "The payment for this order is being processed; it cannot be cancelled now.",
    payments.Closed.FAILED: "The card payment failed; the order is FAILED.",
}


def order_cancel(*, order_id, buyer: User) -> Order:
    """`POST /orders/{id}/cancel` by the order's buyer (its merchant: 403; anyone else: 404):
    PENDING only (else 409).

    A card order's Checkout Session is expired at Stripe first (`payments.payment_close`); if
    Stripe says it was paid meanwhile, the payment is applied instead and the cancel refused.
    """
    order = _visible_order(order_id=order_id, user=buyer)
    if order.user_id != buyer.pk:
        raise OrderActionForbidden("Only the order's buyer can cancel it.")
    if order.status != Status.PENDING:
        raise OrderNotCancellable()
    closed = payments.payment_close(payment=order.payment, reason="Cancelled by the buyer.")
    if closed in _CANCEL_REFUSALS:
        raise OrderNotCancellable(_CANCEL_REFUSALS[closed])
    order = Order.objects.select_related("product", "payment").get(pk=order.pk)
    if order.status != Status.CANCELLED:
        raise OrderNotCancellable()
    return order


# --- refunds ------------------------------------------------------------------------------


def order_refund(*, order_id, merchant: User, reason: str = "", staff_user: User | None = None) -> Order:
    """`POST /orders/{id}/refund` by the order's merchant (its buyer: 403; anyone else: 404).

    WALLET: one transaction (merchant -> buyer REFUND, stock back, REFUNDED). GATEWAY: a
    Stripe refund of the card payment (`payments.payment_refund`: the merchant's revenue
    held first; the order REFUNDED once Stripe confirms; an unknown outcome is 502 and
    leaves the refund in progress). Not COMPLETED: 409 ORDER_NOT_REFUNDABLE.
    `staff_user`: the back office's refund on the merchant's behalf, recorded as `refunded_by`.
    """
    order = _visible_order(order_id=order_id, user=merchant)
    if order.merchant_id != merchant.pk:
        raise OrderActionForbidden("Only the order's merchant can refund it.")
    if order.status != Status.COMPLETED:
        raise OrderNotRefundable()
    if order.payment_method == Method.WALLET:
        return _refund_wallet(order_id=order.pk, reason=_reason(reason), staff_user=staff_user)
    try:
        payments.payment_refund(payment_id=order.payment_id, reason=_reason(reason))
    except PaymentNotRefundable as exc:
        raise OrderNotRefundable(exc.message) from exc
    finally:
        if staff_user is not None:  # once a refund was begun (money held), whatever Stripe answered
            Order.objects.filter(pk=order.pk, refunded_by=None, payment__refund_status__isnull=False).update(
                refunded_by=staff_user
            )
    return Order.objects.select_related("product", "payment").get(pk=order.pk)


@atomic_with_retry
def _refund_wallet(*, order_id, reason: str, staff_user: User | None = None) -> Order:
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
    return _transition(order, Status.REFUNDED, refund_reason=reason or None, refunded_by=staff_user)
