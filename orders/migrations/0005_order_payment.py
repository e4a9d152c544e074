import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    """Card orders get their `payments.CheckoutPayment` (filled by 0006, required by 0007)."""

    dependencies = [
        ("orders", "0004_drop_indexes_covered_by_composites"),
        ("payments", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="order",
            name="payment",
            field=models.ForeignKey(
                blank=True,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="payments.checkoutpayment",
            ),
        ),
    ]
