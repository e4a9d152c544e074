"""The card order's Stripe fields now live in its payment (0006): drop them, require the
payment of every GATEWAY order (and none of a WALLET order), and let the wallet purchase's
database function (0003) write the new column set: the same function with its
`INSERT INTO orders_order` rewritten, nothing else changed."""

import importlib

from django.db import migrations, models

_0003 = importlib.import_module("orders.migrations.0003_wallet_purchase_function")

OLD_INSERT = """        INSERT INTO orders_order
               (id, quantity, unit_price, amount, currency, status, payment_method, stripe_session_id,
                stripe_payment_intent_id, checkout_url, checkout_expires_at, stripe_refund_id,
                refund_requested_at, failure_reason, refund_reason, completed_at, cancelled_at, refunded_at,
                created_at, updated_at, merchant_id, product_id, user_id, refund_required)
        VALUES (p_order_id, p_quantity, v_product.price, v_amount, v_product.currency, 'COMPLETED', 'WALLET', NULL,
                NULL, NULL, NULL, NULL,
                NULL, NULL, NULL, v_now, NULL, NULL,
                v_now, v_now, v_product.merchant_id, v_product.id, p_buyer_id, false);"""
NEW_INSERT = """        INSERT INTO orders_order
               (id, quantity, unit_price, amount, currency, status, payment_method, payment_id,
                failure_reason, refund_reason, completed_at, cancelled_at, refunded_at,
                created_at, updated_at, merchant_id, product_id, user_id)
        VALUES (p_order_id, p_quantity, v_product.price, v_amount, v_product.currency, 'COMPLETED', 'WALLET', NULL,
                NULL, NULL, v_now, NULL, NULL,
                v_now, v_now, v_product.merchant_id, v_product.id, p_buyer_id);"""


def _function_writing(insert: str) -> str:
    if _0003.CREATE_FUNCTION.count(OLD_INSERT) != 1:
        raise RuntimeError("orders/0003's INSERT INTO orders_order is not the one this migration rewrites")
    return _0003.CREATE_FUNCTION.replace(OLD_INSERT, insert)


def _replace_function(insert: str):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(_function_writing(insert), params=None)  # the body has literal % signs

    return run


class Migration(migrations.Migration):
    dependencies = [("orders", "0006_move_stripe_fields_into_payments")]

    operations = [
        migrations.RemoveConstraint(model_name="order", name="order_refund_required_only_unapplied"),
        migrations.RemoveIndex(model_name="order", name="order_pending_expiry_idx"),
        migrations.RemoveField(model_name="order", name="checkout_expires_at"),
        migrations.RemoveField(model_name="order", name="checkout_url"),
        migrations.RemoveField(model_name="order", name="refund_requested_at"),
        migrations.RemoveField(model_name="order", name="refund_required"),
        migrations.RemoveField(model_name="order", name="stripe_payment_intent_id"),
        migrations.RemoveField(model_name="order", name="stripe_refund_id"),
        migrations.RemoveField(model_name="order", name="stripe_session_id"),
        migrations.AddConstraint(
            model_name="order",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(("payment", None), ("payment_method", "WALLET")),
                    models.Q(("payment__isnull", False), ("payment_method", "GATEWAY")),
                    _connector="OR",
                ),
                name="order_card_payment_iff_gateway",
            ),
        ),
        migrations.AddConstraint(
            model_name="order",
            constraint=models.UniqueConstraint(
                condition=models.Q(("payment__isnull", False)), fields=("payment",), name="order_one_per_payment"
            ),
        ),
        migrations.RunPython(_replace_function(NEW_INSERT), _replace_function(OLD_INSERT), elidable=False),
    ]
