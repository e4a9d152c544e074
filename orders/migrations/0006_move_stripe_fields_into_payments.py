"""Each card (GATEWAY) order's Stripe fields move into a `payments.CheckoutPayment` of kind
"order", nothing lost: session, payment intent, checkout URL and expiry, refund id, and
what the order's state said about its payment and its refund. Reversible.

    order status   payment status   refund
    PENDING        PENDING          -
    COMPLETED      SUCCEEDED        PENDING if `refund_requested_at` (the merchant's money held)
    REFUNDED       SUCCEEDED        SUCCEEDED (`stripe_refund_id`)
    FAILED         FAILED           PENDING if `refund_required`; SUCCEEDED if refunded
    CANCELLED      EXPIRED          the same

A row whose old fields contradict the new rules (a refund without the payment intent it
refunds) is moved with `needs_attention`, for staff, rather than refused or dropped.
Tested by `payments/tests/test_migrations.py`.
"""

from datetime import timedelta

from django.db import migrations
from django.db.models import OuterRef, Subquery

BATCH = 1000
PAYMENT_STATUS = {
    "PENDING": "PENDING",
    "COMPLETED": "SUCCEEDED",
    "REFUNDED": "SUCCEEDED",
    "FAILED": "FAILED",
    "CANCELLED": "EXPIRED",
}


def _refund(order) -> dict:
    """The payment's refund fields from what the order recorded."""
    if order.status == "REFUNDED":
        refund = {"refund_status": "SUCCEEDED", "refunded_at": order.refunded_at or order.updated_at}
        refund["refund_requested_at"] = order.refund_requested_at or refund["refunded_at"]
    elif order.status == "COMPLETED" and order.refund_requested_at:
        refund = {"refund_status": "PENDING", "refund_requested_at": order.refund_requested_at}
    elif order.refund_required:
        refund = {"refund_status": "PENDING", "refund_requested_at": order.updated_at}
    elif order.stripe_refund_id:  # an unapplied payment, refunded
        refund = {"refund_status": "SUCCEEDED", "refunded_at": order.updated_at, "refund_requested_at": order.updated_at}
    else:
        return {"stripe_refund_id": order.stripe_refund_id}
    missing = [name for name, value in [("payment intent", order.stripe_payment_intent_id)] if not value]
    if refund["refund_status"] == "SUCCEEDED" and not order.stripe_refund_id:
        missing.append("refund id")
    if missing:
        return {
            "stripe_refund_id": order.stripe_refund_id,
            "needs_attention": True,
            "attention_reason": f"Migrated from order {order.pk} ({order.status}, refund "
            f"{refund['refund_status']}) without its {' and '.join(missing)}; settle by hand.",
        }
    return {**refund, "stripe_refund_id": order.stripe_refund_id}


def forward(apps, schema_editor):
    Order = apps.get_model("orders", "Order")
    Payment = apps.get_model("payments", "CheckoutPayment")
    pending = Order.objects.filter(payment_method="GATEWAY", payment__isnull=True).order_by("pk")
    while batch := list(pending[:BATCH]):
        payments = []
        for order in batch:
            status = PAYMENT_STATUS[order.status]
            payment = Payment(
                kind="order",
                payer_id=order.user_id,
                amount=order.amount,
                currency=order.currency,
                status=status,
                stripe_session_id=order.stripe_session_id or None,
                stripe_payment_intent_id=order.stripe_payment_intent_id or None,
                checkout_url=order.checkout_url or None,
                expires_at=order.checkout_expires_at or order.created_at + timedelta(minutes=31),
                paid_at=(order.completed_at or order.updated_at) if status == "SUCCEEDED" else None,
                **_refund(order),
            )
            order.payment = payment
            payments.append(payment)
        Payment.objects.bulk_create(payments)
        Order.objects.bulk_update(batch, ["payment"])
    # auto_now_add / auto_now stamped the migration's time: the order's history is the payment's.
    orders = Order.objects.filter(payment_id=OuterRef("pk"))
    Payment.objects.filter(kind="order").update(
        created_at=Subquery(orders.values("created_at")[:1]), updated_at=Subquery(orders.values("updated_at")[:1])
    )


def backward(apps, schema_editor):
    Order = apps.get_model("orders", "Order")
    Payment = apps.get_model("payments", "CheckoutPayment")
    for order in Order.objects.filter(payment__isnull=False).select_related("payment").iterator(chunk_size=BATCH):
        payment = order.payment
        refund_pending = payment.refund_status == "PENDING"
        Order.objects.filter(pk=order.pk).update(  # update(): the orders keep their updated_at
            stripe_session_id=payment.stripe_session_id,
            stripe_payment_intent_id=payment.stripe_payment_intent_id,
            checkout_url=payment.checkout_url,
            checkout_expires_at=payment.expires_at,
            stripe_refund_id=payment.stripe_refund_id,
            # Before, only a merchant's refund (COMPLETED, then REFUNDED) stamped it.
            refund_requested_at=payment.refund_requested_at if order.status in ("COMPLETED", "REFUNDED") else None,
            refund_required=refund_pending and order.status in ("FAILED", "CANCELLED"),
            payment=None,
        )
    # A plain DELETE: the ORM's would look for other apps' references to these rows, in
    # columns that, going back, may already be gone.
    schema_editor.execute(f"DELETE FROM {Payment._meta.db_table} WHERE kind = %s", ["order"])


class Migration(migrations.Migration):
    dependencies = [("orders", "0005_order_payment"), ("payments", "0001_initial")]

    operations = [migrations.RunPython(forward, backward, elidable=False)]
