import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    """Top-ups get their `payments.CheckoutPayment` (filled by 0009, required by 0010).
    `checkout_expires_at` may be NULL from here on, so that going back (0010 re-adding it
    empty, 0009 filling it) works; this migration makes it NOT NULL again on the way back."""

    dependencies = [
        ("wallets", "0007_staff_note"),
        ("payments", "0001_initial"),
    ]

    operations = [
        migrations.AlterField(model_name="topup", name="checkout_expires_at", field=models.DateTimeField(null=True)),
        migrations.AddField(
            model_name="topup",
            name="payment",
            field=models.OneToOneField(
                null=True, on_delete=django.db.models.deletion.PROTECT, related_name="+", to="payments.checkoutpayment"
            ),
        ),
    ]
