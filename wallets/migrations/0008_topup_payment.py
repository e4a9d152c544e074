import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    """Top-ups get their `payments.CheckoutPayment` (filled by 0009, required by 0010)."""

    dependencies = [
        ("wallets", "0007_staff_note"),
        ("payments", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="topup",
            name="payment",
            field=models.OneToOneField(
                null=True, on_delete=django.db.models.deletion.PROTECT, related_name="+", to="payments.checkoutpayment"
            ),
        ),
    ]
