"""Orders: one purchase of `quantity` units of one product, paid from the wallet or by card.

The status machine (enforced by `orders.services._transition`, the one place that
changes `status`):

    PENDING ──► COMPLETED ──► REFUNDED
       │
       ├──► FAILED      (the card payment failed, Stripe could not open the checkout, or it
       │                 was paid but could not be applied: refunded; stock released)
       └──► CANCELLED   (the buyer's cancel, the session expired; stock released)

A WALLET order is born COMPLETED (one transaction); a GATEWAY order is born PENDING with
its stock reserved and its `payment` (a `payments.CheckoutPayment`, which holds everything
Stripe), and its payment's hooks move it on (`orders.services`, "card orders").
"""

import uuid

from django.conf import settings
from django.db import models
from django.db.models import F, Q

MONEY = {"max_digits": 14, "decimal_places": 2}
MAX_QUANTITY = 100


def default_currency() -> str:
    return settings.CURRENCY


class Order(models.Model):
    class Status(models.TextChoices):
        PENDING = "PENDING", "Pending"
        COMPLETED = "COMPLETED", "Completed"
        FAILED = "FAILED", "Failed"
        CANCELLED = "CANCELLED", "Cancelled"
        REFUNDED = "REFUNDED", "Refunded"

    class PaymentMethod(models.TextChoices):
        WALLET = "WALLET", "Wallet"
        GATEWAY = "GATEWAY", "Card (Stripe Checkout)"

    #: The only status changes there are; anything else is refused by the service layer.
    ALLOWED_TRANSITIONS: dict[str, frozenset[str]] = {
        Status.PENDING: frozenset({Status.COMPLETED, Status.FAILED, Status.CANCELLED}),
        Status.COMPLETED: frozenset({Status.REFUNDED}),
    }
    #: Statuses whose units are out of stock because of the order (reserved or sold).
    HOLDING_STATUSES = (Status.PENDING, Status.COMPLETED)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # No single-column index on user, product, merchant: the composite indexes in Meta lead
    # with them and serve the same lookups; one index fewer to write per order.
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="orders", db_index=False)
    product = models.ForeignKey("catalog.Product", on_delete=models.PROTECT, related_name="orders", db_index=False)
    # Denormalised from the product at purchase time: the merchant's sales list is one index scan.
    merchant = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="sales", db_index=False
    )
    quantity = models.PositiveIntegerField()
    unit_price = models.DecimalField(**MONEY)
    amount = models.DecimalField(**MONEY)
    currency = models.CharField(max_length=3, default=default_currency)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    payment_method = models.CharField(max_length=16, choices=PaymentMethod.choices)

    # GATEWAY orders only: the Checkout payment (session, payment intent, refund). Unique
    # through a partial index (Meta), so a wallet order writes no index entry for it.
    payment = models.ForeignKey(
        "payments.CheckoutPayment", on_delete=models.PROTECT, null=True, blank=True, related_name="+", db_index=False
    )

    failure_reason = models.CharField(max_length=500, null=True, blank=True)
    refund_reason = models.CharField(max_length=500, null=True, blank=True)
    # The staff member who refunded it (or began its card refund) from the back office;
    # null when the merchant refunded it through the API.
    refunded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+", db_index=False
    )
    completed_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)
    refunded_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(quantity__gte=1, quantity__lte=MAX_QUANTITY), name="order_quantity_1_to_100"
            ),
            models.CheckConstraint(condition=Q(unit_price__gt=0), name="order_unit_price_positive"),
            models.CheckConstraint(
                condition=Q(amount__gt=0, amount=F("unit_price") * F("quantity")),
                name="order_amount_is_unit_price_times_quantity",
            ),
            models.CheckConstraint(
                condition=Q(status__in=["PENDING", "COMPLETED", "FAILED", "CANCELLED", "REFUNDED"]),
                name="order_status_valid",
            ),
            models.CheckConstraint(condition=Q(payment_method__in=["WALLET", "GATEWAY"]), name="order_method_valid"),
            models.CheckConstraint(
                condition=Q(payment_method="WALLET", payment=None) | Q(payment_method="GATEWAY", payment__isnull=False),
                name="order_card_payment_iff_gateway",
            ),
            models.UniqueConstraint(
                fields=["payment"], condition=Q(payment__isnull=False), name="order_one_per_payment"
            ),
        ]
        indexes = [
            models.Index(fields=["user", "-created_at", "-id"], name="order_buyer_history_idx"),
            models.Index(fields=["merchant", "-created_at", "-id"], name="order_merchant_sales_idx"),
            models.Index(fields=["product", "status"], name="order_product_status_idx"),
        ]

    def __str__(self) -> str:
        return f"Order {self.pk} ({self.status})"

    def can_become(self, status: str) -> bool:
        return status in self.ALLOWED_TRANSITIONS.get(self.status, frozenset())
