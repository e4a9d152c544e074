"""Each top-up's Stripe fields move into a `payments.CheckoutPayment` of kind "topup",
nothing lost (session, payment intent, checkout URL and expiry, refund); "" becomes NULL,
the payments' one spelling of "unknown". Reversible.

    top-up status   payment status   refund
    PENDING         PENDING          -
    COMPLETED       SUCCEEDED        -
    FAILED          FAILED           PENDING if `refund_required`; SUCCEEDED if refunded
    EXPIRED         EXPIRED          the same

A refund without the payment intent it refunds is moved with `needs_attention`, for
staff. Tested by `payments/tests/test_migrations.py`.
"""

from django.db import migrations
from django.db.models import OuterRef, Subquery

BATCH = 1000
PAYMENT_STATUS = {"PENDING": "PENDING", "COMPLETED": "SUCCEEDED", "FAILED": "FAILED", "EXPIRED": "EXPIRED"}


def _refund(topup) -> dict:
    if topup.refund_required:
        refund = {"refund_status": "PENDING", "refund_requested_at": topup.updated_at}
    elif topup.stripe_refund_id:
        refund = {"refund_status": "SUCCEEDED", "refund_requested_at": topup.updated_at, "refunded_at": topup.updated_at}
    else:
        return {}
    if not topup.stripe_payment_intent_id:
        return {
            "stripe_refund_id": topup.stripe_refund_id or None,
            "needs_attention": True,
            "attention_reason": f"Migrated from top-up {topup.pk} ({topup.status}, refund "
            f"{refund['refund_status']}) without its payment intent; settle by hand.",
        }
    return {**refund, "stripe_refund_id": topup.stripe_refund_id or None}


def forward(apps, schema_editor):
    TopUp = apps.get_model("wallets", "TopUp")
    Payment = apps.get_model("payments", "CheckoutPayment")
    pending = TopUp.objects.filter(payment__isnull=True).order_by("pk")
    while batch := list(pending[:BATCH]):
        payments = []
        for topup in batch:
            status = PAYMENT_STATUS[topup.status]
            payment = Payment(
                kind="topup",
                payer_id=topup.user_id,
                amount=topup.amount,
                currency=topup.currency,
                status=status,
                stripe_session_id=topup.stripe_session_id or None,
                stripe_payment_intent_id=topup.stripe_payment_intent_id or None,
                checkout_url=topup.checkout_url or None,
                expires_at=topup.checkout_expires_at,
                paid_at=(topup.completed_at or topup.updated_at) if status == "SUCCEEDED" else None,
                **_refund(topup),
            )
            topup.payment = payment
            payments.append(payment)
        Payment.objects.bulk_create(payments)
        TopUp.objects.bulk_update(batch, ["payment"])
    topups = TopUp.objects.filter(payment_id=OuterRef("pk"))
    Payment.objects.filter(kind="topup").update(
        created_at=Subquery(topups.values("created_at")[:1]), updated_at=Subquery(topups.values("updated_at")[:1])
    )


def backward(apps, schema_editor):
    TopUp = apps.get_model("wallets", "TopUp")
    Payment = apps.get_model("payments", "CheckoutPayment")
    for topup in TopUp.objects.filter(payment__isnull=False).select_related("payment").iterator(chunk_size=BATCH):
        payment = topup.payment
        TopUp.objects.filter(pk=topup.pk).update(  # update(): the top-ups keep their updated_at
            stripe_session_id=payment.stripe_session_id,
            stripe_payment_intent_id=payment.stripe_payment_intent_id or "",
            checkout_url=payment.checkout_url or "",
            checkout_expires_at=payment.expires_at,
            stripe_refund_id=payment.stripe_refund_id or "",
            refund_required=payment.refund_status == "PENDING",
            payment=None,
        )
    # A plain DELETE: the ORM's would look for other apps' references to these rows, in
    # columns that, going back, may already be gone.
    schema_editor.execute(f"DELETE FROM {Payment._meta.db_table} WHERE kind = %s", ["topup"])


class Migration(migrations.Migration):
    dependencies = [("wallets", "0008_topup_payment"), ("payments", "0001_initial")]

    operations = [migrations.RunPython(forward, backward, elidable=False)]
