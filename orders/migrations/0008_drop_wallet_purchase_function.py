"""Drop `orders_wallet_purchase`, the PL/pgSQL wallet purchase of migration 0003.

The purchase runs in Python again, in one `transaction.atomic` with `select_for_update`,
each app writing its own tables through its own services (`orders.services.
order_purchase_with_wallet`; the decision: docs/decisions/0002-wallet-purchase-in-python.md).
The only functions left in the database are those of triggers that guard an invariant
(the append-only ledger, wallets/0002). Migrating back to 0007 creates the function again,
as 0007 left it.
"""

from importlib import import_module

from django.db import migrations

created = import_module("orders.migrations.0003_wallet_purchase_function")
last_written = import_module("orders.migrations.0007_drop_order_stripe_fields")


class Migration(migrations.Migration):
    dependencies = [
        ("orders", "0007_drop_order_stripe_fields"),
    ]

    operations = [
        migrations.RunPython(
            created.drop_function,
            last_written._replace_function(last_written.NEW_INSERT),
            elidable=False,
        )
    ]
