"""Assertion helpers for the orders tests."""

from decimal import Decimal

from catalog.models import Product
from orders.models import Order
from paymentflow.testing.assertions import assert_error as error  # noqa: F401 (re-exported)
from wallets.models import JournalEntry, LedgerEntry, Wallet

ORDER_KEYS = {
    "id",
    "userId",
    "productId",
    "merchantId",
    "product",
    "quantity",
    "unitPrice",
    "amount",
    "currency",
    "status",
    "paymentMethod",
    "stripeSessionId",
    "checkoutUrl",
    "failureReason",
    "refundStatus",
    "completedAt",
    "createdAt",
    "updatedAt",
}


def balance(user) -> Decimal:
    return Wallet.objects.get(user=user).balance


def stock(product) -> int:
    return Product.objects.get(pk=product.pk).available_units


def books() -> tuple:
    """Everything a purchase could touch, to compare before / after a refusal."""
    return (
        sorted(Wallet.objects.values_list("pk", "balance", "last_sequence")),
        sorted(Product.objects.values_list("pk", "available_units")),
        JournalEntry.objects.count(),
        LedgerEntry.objects.count(),
        sorted(Order.objects.values_list("pk", "status")),
    )


def order_legs(order) -> dict:
    """{(wallet owner email or system code, type): delta} of the order's journal entries."""
    legs = LedgerEntry.objects.filter(journal__reference_type="order", journal__reference_id=str(order.pk))
    return {
        (leg.wallet.user.email if leg.wallet.user_id else leg.wallet.code, leg.type): leg.delta
        for leg in legs.select_related("wallet__user")
    }


ORDERS = "/api/v1/orders"


def card_order(client, product, quantity: int = 1) -> dict:
    """A GATEWAY order through the API (201): PENDING with an open Checkout Session."""
    response = client.post(ORDERS, {"productId": str(product.pk), "paymentMethod": "GATEWAY", "quantity": quantity})
    assert response.status_code == 201, response.content
    return response.json()


def pay_by_card(fake_stripe, order: dict) -> dict:
    """The buyer pays the order's session at Stripe, and Stripe's signed
    `checkout.session.completed` reaches our webhook; returns the paid session."""
    from webhooks.tests.utils import deliver_session_event

    session = fake_stripe.mark_paid(order["stripeSessionId"])
    _, response = deliver_session_event(fake_stripe, "checkout.session.completed", session["id"])
    assert response.status_code == 200, response.content
    return session


def merchant_product(merchant, *, price: str, units: int = 10):
    """A product of `merchant`, whose wallet exists (a sale by card credits it)."""
    from catalog.tests.factories import ProductFactory
    from wallets.tests.factories import WalletFactory

    WalletFactory(user=merchant)
    return ProductFactory(merchant=merchant, price=Decimal(price), available_units=units)
