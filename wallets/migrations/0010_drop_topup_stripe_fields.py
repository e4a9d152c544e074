"""A top-up's Stripe fields now live in its payment (0009): drop them, require the payment,
and let a top-up be REFUNDED (a refund made at Stripe takes the deposit back)."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("wallets", "0009_move_topup_stripe_fields_into_payments")]

    operations = [
        migrations.RemoveConstraint(model_name="topup", name="topup_completed_at_iff_completed"),
        migrations.RemoveConstraint(model_name="topup", name="topup_completed_never_refunded"),
        migrations.RemoveIndex(model_name="topup", name="topup_pending_expiry_idx"),
        migrations.RemoveField(model_name="topup", name="checkout_expires_at"),
        migrations.RemoveField(model_name="topup", name="checkout_url"),
        migrations.RemoveField(model_name="topup", name="refund_required"),
        migrations.RemoveField(model_name="topup", name="stripe_payment_intent_id"),
        migrations.RemoveField(model_name="topup", name="stripe_refund_id"),
        migrations.RemoveField(model_name="topup", name="stripe_session_id"),
        migrations.AlterField(
            model_name="topup",
            name="payment",
            field=models.OneToOneField(
                on_delete=django.db.models.deletion.PROTECT, related_name="+", to="payments.checkoutpayment"
            ),
        ),
        migrations.AlterField(
            model_name="topup",
            name="status",
            field=models.CharField(
                choices=[
                    ("PENDING", "Pending"),
                    ("COMPLETED", "Completed"),
                    ("FAILED", "Failed"),
                    ("EXPIRED", "Expired"),
                    ("REFUNDED", "Refunded"),
                ],
                default="PENDING",
                max_length=16,
            ),
        ),
        migrations.AddConstraint(
            model_name="topup",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(("completed_at__isnull", False), ("status__in", ["COMPLETED", "REFUNDED"])),
                    models.Q(models.Q(("status__in", ["COMPLETED", "REFUNDED"]), _negated=True), ("completed_at__isnull", True)),
                    _connector="OR",
                ),
                name="topup_completed_at_iff_credited",
            ),
        ),
    ]
