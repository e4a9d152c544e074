"""Every user registered before wallets existed gets an empty wallet."""

from django.conf import settings
from django.db import migrations


def create_missing_wallets(apps, schema_editor):
    User = apps.get_model(*settings.AUTH_USER_MODEL.split("."))
    Wallet = apps.get_model("wallets", "Wallet")
    missing = User.objects.filter(wallet__isnull=True).values_list("pk", flat=True)
    Wallet.objects.bulk_create(
        [Wallet(user_id=pk, kind="USER", currency=settings.CURRENCY) for pk in missing.iterator()],
        batch_size=1000,
    )


class Migration(migrations.Migration):
    dependencies = [("wallets", "0002_ledger_append_only_trigger"), migrations.swappable_dependency(settings.AUTH_USER_MODEL)]

    operations = [migrations.RunPython(create_missing_wallets, migrations.RunPython.noop)]
