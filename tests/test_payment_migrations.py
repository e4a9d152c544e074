"""The migrations that moved card orders' and top-ups' Stripe fields into
`payments.CheckoutPayment` (orders 0005-0007, wallets 0008-0010) lose nothing: a database
holding card orders and top-ups in every state is migrated forward and checked, then back,
and gets its old columns back as they were. Real PostgreSQL, Django's MigrationExecutor."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

pytestmark = [pytest.mark.django_db(transaction=True)]

BEFORE = [("orders", "0004_drop_indexes_covered_by_composites"), ("wallets", "0007_staff_note")]
NOW = timezone.now().replace(microsecond=0)
T = {n: NOW - timedelta(days=10 - n) for n in range(10)}  # distinct moments, oldest first

# Every state a card order could be in before, and the payment it must become:
# name -> (old order fields, (payment status, refund status, needs attention))
ORDERS = {
    "pending": ({"status": "PENDING", "stripe_session_id": "cs_pending"}, ("PENDING", None, False)),
    "completed": (
        {"status": "COMPLETED", "stripe_session_id": "cs_done", "stripe_payment_intent_id": "pi_done"},
        ("SUCCEEDED", None, False),
    ),
    "refund_in_progress": (
        {
            "status": "COMPLETED",
            "stripe_session_id": "cs_held",
            "stripe_payment_intent_id": "pi_held",
            "refund_requested_at": T[5],
        },
        ("SUCCEEDED", "PENDING", False),
    ),
    "refunded": (
        {
            "status": "REFUNDED",
            "stripe_session_id": "cs_refunded",
            "stripe_payment_intent_id": "pi_refunded",
            "stripe_refund_id": "re_refunded",
            "refund_requested_at": T[6],
            "refunded_at": T[7],
        },
        ("SUCCEEDED", "SUCCEEDED", False),
    ),
    "failed_at_creation": (
        {"status": "FAILED", "failure_reason": "The payment gateway could not create a checkout."},
        ("FAILED", None, False),
    ),
    "failed_refund_required": (
        {
            "status": "FAILED",
            "stripe_session_id": "cs_locked",
            "stripe_payment_intent_id": "pi_locked",
            "refund_required": True,
            "failure_reason": "Paid, but the merchant's wallet is locked and cannot be credited; refunded.",
        },
        ("FAILED", "PENDING", False),
    ),
    "cancelled": ({"status": "CANCELLED", "stripe_session_id": "cs_cancelled"}, ("EXPIRED", None, False)),
    "cancelled_late_payment_refunded": (
        {
            "status": "CANCELLED",
            "stripe_session_id": "cs_late",
            "stripe_payment_intent_id": "pi_late",
            "stripe_refund_id": "re_late",
        },
        ("EXPIRED", "SUCCEEDED", False),
    ),
    "refunded_without_its_payment_intent": (  # contradicts the new rules: moved, flagged for staff
        {"status": "REFUNDED", "stripe_session_id": "cs_odd", "stripe_refund_id": "re_odd", "refunded_at": T[8]},
        ("SUCCEEDED", None, True),
    ),
}
TOPUPS = {
    "pending": ({"status": "PENDING", "stripe_session_id": "cs_t_pending"}, ("PENDING", None, False)),
    "completed": (
        {"status": "COMPLETED", "stripe_session_id": "cs_t_done", "stripe_payment_intent_id": "pi_t_done"},
        ("SUCCEEDED", None, False),
    ),
    "failed_refund_required": (
        {
            "status": "FAILED",
            "stripe_session_id": "cs_t_locked",
            "stripe_payment_intent_id": "pi_t_locked",
            "refund_required": True,
        },
        ("FAILED", "PENDING", False),
    ),
    "failed_refunded": (
        {
            "status": "FAILED",
            "stripe_session_id": "cs_t_refunded",
            "stripe_payment_intent_id": "pi_t_refunded",
            "stripe_refund_id": "re_t_refunded",
        },
        ("FAILED", "SUCCEEDED", False),
    ),
    "failed_without_session": ({"status": "FAILED"}, ("FAILED", None, False)),
    "expired": ({"status": "EXPIRED", "stripe_session_id": "cs_t_expired"}, ("EXPIRED", None, False)),
}


def migrate(targets) -> MigrationExecutor:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return MigrationExecutor(connection)  # a fresh one sees the new state


def latest():
    return MigrationExecutor(connection).loader.graph.leaf_nodes()


def plant(apps) -> dict:
    """Card orders and top-ups in every state, through the models as they were."""
    User, Wallet = apps.get_model("accounts", "User"), apps.get_model("wallets", "Wallet")
    Product, Order = apps.get_model("catalog", "Product"), apps.get_model("orders", "Order")
    TopUp = apps.get_model("wallets", "TopUp")
    buyer = User.objects.create(email="buyer@example.com", role="USER", password="x")
    merchant = User.objects.create(email="merchant@example.com", role="MERCHANT", password="x")
    wallet = Wallet.objects.create(user=buyer, kind="USER", currency="USD")
    product = Product.objects.create(merchant=merchant, name="Mug", price=Decimal("12.50"), currency="USD")
    planted = {"orders": {}, "topups": {}}
    for n, (name, (fields, _)) in enumerate(ORDERS.items()):
        fields = {
            "checkout_url": f"https://checkout.stripe.com/c/pay/{fields['stripe_session_id']}"
            if fields.get("stripe_session_id")
            else None,
            "checkout_expires_at": T[n % 10] + timedelta(minutes=31),
            "completed_at": T[n % 10] if fields["status"] in ("COMPLETED", "REFUNDED") else None,
            **fields,
        }
        order = Order.objects.create(
            user=buyer, product=product, merchant=merchant, quantity=2, unit_price=Decimal("12.50"),
            amount=Decimal("25.00"), currency="USD", payment_method="GATEWAY", **fields,
        )  # fmt: skip
        Order.objects.filter(pk=order.pk).update(created_at=T[n % 10], updated_at=T[n % 10] + timedelta(hours=1))
        planted["orders"][name] = order.pk
    planted["wallet_order"] = Order.objects.create(
        user=buyer, product=product, merchant=merchant, quantity=1, unit_price=Decimal("12.50"),
        amount=Decimal("12.50"), currency="USD", payment_method="WALLET", status="COMPLETED", completed_at=NOW,
    ).pk  # fmt: skip
    for n, (name, (fields, _)) in enumerate(TOPUPS.items()):
        fields = {
            "checkout_url": f"https://checkout.stripe.com/c/pay/{fields['stripe_session_id']}"
            if fields.get("stripe_session_id")
            else "",
            "checkout_expires_at": T[n] + timedelta(minutes=30),
            "completed_at": T[n] if fields["status"] == "COMPLETED" else None,
            **fields,
        }
        topup = TopUp.objects.create(user=buyer, wallet=wallet, amount=Decimal("30.00"), currency="USD", **fields)
        TopUp.objects.filter(pk=topup.pk).update(created_at=T[n], updated_at=T[n] + timedelta(hours=1))
        planted["topups"][name] = topup.pk
    return planted


def old_columns(apps, planted) -> dict:
    Order, TopUp = apps.get_model("orders", "Order"), apps.get_model("wallets", "TopUp")
    order_fields = [
        "status", "stripe_session_id", "stripe_payment_intent_id", "checkout_url", "checkout_expires_at",
        "stripe_refund_id", "refund_requested_at", "refund_required", "created_at", "updated_at",
    ]  # fmt: skip
    topup_fields = [
        "status", "stripe_session_id", "stripe_payment_intent_id", "checkout_url", "checkout_expires_at",
        "stripe_refund_id", "refund_required", "created_at", "updated_at",
    ]  # fmt: skip
    return {
        "orders": {n: Order.objects.filter(pk=pk).values(*order_fields).get() for n, pk in planted["orders"].items()},
        "topups": {n: TopUp.objects.filter(pk=pk).values(*topup_fields).get() for n, pk in planted["topups"].items()},
    }


def test_card_orders_and_top_ups_in_every_state_move_into_payments_and_back():
    try:
        executor = migrate(BEFORE)
        old_apps = executor.loader.project_state(BEFORE).apps
        planted = plant(old_apps)
        before = old_columns(old_apps, planted)

        migrate(latest())

        from orders.models import Order
        from payments.models import CheckoutPayment
        from wallets.models import TopUp

        assert CheckoutPayment.objects.count() == len(ORDERS) + len(TOPUPS)
        assert Order.objects.get(pk=planted["wallet_order"]).payment is None
        for kind, model, table, cases in (
            ("order", Order, "orders", ORDERS),
            ("topup", TopUp, "topups", TOPUPS),
        ):
            for name, (_, (status, refund_status, needs_attention)) in cases.items():
                owner = model.objects.select_related("payment").get(pk=planted[table][name])
                old, payment = before[table][name], owner.payment
                assert (payment.kind, payment.payer_id, payment.amount) == (kind, owner.user_id, owner.amount), name
                assert (payment.status, payment.refund_status, payment.needs_attention) == (
                    status, refund_status, needs_attention,
                ), name  # fmt: skip
                assert payment.stripe_session_id == old["stripe_session_id"], name
                assert payment.stripe_payment_intent_id == (old["stripe_payment_intent_id"] or None), name
                assert payment.checkout_url == (old["checkout_url"] or None), name
                assert payment.expires_at == old["checkout_expires_at"], name
                assert payment.stripe_refund_id == (old["stripe_refund_id"] or None), name
                assert (payment.created_at, payment.updated_at) == (old["created_at"], old["updated_at"]), name
                assert (payment.paid_at is not None) == (status == "SUCCEEDED"), name
                if needs_attention:
                    assert "settle by hand" in payment.attention_reason, name
        held = Order.objects.get(pk=planted["orders"]["refund_in_progress"]).payment
        assert held.refund_requested_at == T[5]

        executor = migrate(BEFORE)  # and back: the old columns as they were

        assert old_columns(executor.loader.project_state(BEFORE).apps, planted) == before
    finally:
        migrate(latest())
