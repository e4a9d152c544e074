"""Products and the record of every stock change made outside an order.

Stock bookkeeping (see `selectors.stock_drift`):

    available_units + units held by PENDING/COMPLETED orders
        == initial_units + sum(StockAdjustment.delta)

`initial_units` is the stock the product was created with and never changes; every later
change of stock that is not an order taking or returning units (the merchant's PATCH of
`availableUnits`, the admin's "adjust stock" form) is a `StockAdjustment` row.
"""

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q

# The API refuses stock above this (create, PATCH, manual adjustments). The database does
# not: units coming back from refunds may legitimately push a product past it.
MAX_UNITS = 1_000_000
NAME_MAX_LENGTH = 200
DESCRIPTION_MAX_LENGTH = 5000


def default_currency() -> str:
    return settings.CURRENCY


class Product(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    merchant = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="products",
        limit_choices_to={"role": "MERCHANT"},
        db_index=False,  # product_merchant_list_idx leads with it
    )
    name = models.CharField(max_length=NAME_MAX_LENGTH)
    description = models.TextField(blank=True, default="")
    price = models.DecimalField(max_digits=14, decimal_places=2)
    currency = models.CharField(max_length=3, default=default_currency, editable=False)
    available_units = models.PositiveIntegerField(default=0)
    initial_units = models.PositiveIntegerField(default=0, editable=False)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(price__gt=0), name="product_price_positive"),
            models.CheckConstraint(condition=Q(available_units__gte=0), name="product_available_units_non_negative"),
            models.CheckConstraint(condition=Q(initial_units__gte=0), name="product_initial_units_non_negative"),
        ]
        indexes = [
            # The public list: active, newest first (the in-stock filter is applied to the
            # rows it walks). Stock is deliberately not in the index nor in its condition:
            # a purchase changes only unindexed columns, so PostgreSQL can update the row
            # in place (a HOT update) without touching any index of the table.
            models.Index(fields=["-created_at", "-id"], name="product_public_list_idx", condition=Q(is_active=True)),
            # A merchant's own list (inactive included), newest first; also serves the
            # merchant foreign key, which therefore has no index of its own.
            models.Index(fields=["merchant", "-created_at", "-id"], name="product_merchant_list_idx"),
        ]

    def __str__(self) -> str:
        return self.name


class StockAdjustment(models.Model):
    """One change of a product's stock made outside an order. Append-only."""

    class Source(models.TextChoices):
        MERCHANT = "MERCHANT", "Merchant (API)"
        ADMIN = "ADMIN", "Back office"
        SYSTEM = "SYSTEM", "System"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="stock_adjustments")
    delta = models.IntegerField()
    units_before = models.PositiveIntegerField()
    units_after = models.PositiveIntegerField()
    reason = models.CharField(max_length=255)
    source = models.CharField(max_length=16, choices=Source.choices)
    # Null only for SYSTEM adjustments; PROTECT keeps the audit trail's author.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["product", "-created_at"], name="stockadj_product_idx")]
        constraints = [
            models.CheckConstraint(condition=~Q(delta=0), name="stockadj_delta_non_zero"),
            models.CheckConstraint(
                condition=Q(units_after=models.F("units_before") + models.F("delta")),
                name="stockadj_units_chain",
            ),
            models.CheckConstraint(
                condition=Q(source__in=["MERCHANT", "ADMIN", "SYSTEM"]), name="stockadj_source_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.product_id} {self.delta:+d} ({self.reason})"
