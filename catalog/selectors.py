"""Every non-trivial read of the catalog."""

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from uuid import UUID

from django.db.models import Q, QuerySet, Sum
from django.db.models.functions import Coalesce

from catalog.exceptions import ProductNotFound
from catalog.models import Product
from paymentflow.api.pagination import PageRequest


@dataclass(frozen=True)
class ProductFilters:
    """The public list's filters, already validated and normalised."""

    search: str = ""
    merchant_id: UUID | None = None
    min_price: Decimal | None = None
    max_price: Decimal | None = None

    def as_key(self) -> dict:
        return {
            "search": self.search,
            "merchant_id": str(self.merchant_id) if self.merchant_id else "",
            "min_price": str(self.min_price) if self.min_price is not None else "",
            "max_price": str(self.max_price) if self.max_price is not None else "",
        }


def product_public_queryset(*, filters: ProductFilters) -> QuerySet[Product]:
    """Active, in-stock products matching the filters, newest first (served by the partial
    index `product_public_list_idx`)."""
    qs = Product.objects.filter(is_active=True, available_units__gt=0)
    if filters.search:
        qs = qs.filter(Q(name__icontains=filters.search) | Q(description__icontains=filters.search))
    if filters.merchant_id:
        qs = qs.filter(merchant_id=filters.merchant_id)
    if filters.min_price is not None:
        qs = qs.filter(price__gte=filters.min_price)
    if filters.max_price is not None:
        qs = qs.filter(price__lte=filters.max_price)
    return qs.order_by("-created_at", "-id")


def product_public_page(*, filters: ProductFilters, page: PageRequest) -> tuple[list[Product], int]:
    """(products on the page, total matching). Two queries, or one when the page is empty."""
    qs = product_public_queryset(filters=filters)
    total = qs.count()
    if page.offset >= total:
        return [], total
    return list(qs[page.offset : page.offset + page.limit]), total


def product_merchant_queryset(*, merchant) -> QuerySet[Product]:
    """A merchant's own products, inactive included, newest first."""
    return Product.objects.filter(merchant=merchant).order_by("-created_at", "-id")


def product_get_visible(*, product_id: UUID, user=None) -> Product:
    """A product as `GET /products/{id}` shows it: an inactive one only to its owner."""
    product = Product.objects.filter(pk=product_id).first()
    if product is None:
        raise ProductNotFound()
    if not product.is_active and not (user is not None and user.is_authenticated and product.merchant_id == user.pk):
        raise ProductNotFound()
    return product


@dataclass(frozen=True)
class StockDrift:
    product_id: UUID
    available_units: int
    held_units: int
    initial_units: int
    adjustments: int

    @property
    def drift(self) -> int:
        """Positive: units appeared from nowhere; negative: units vanished."""
        return self.available_units + self.held_units - self.initial_units - self.adjustments


def stock_drift(*, held_units_by_product: Mapping[UUID, int] | None = None, product_ids=None) -> list[StockDrift]:
    """Products whose stock does not reconcile, empty when everything adds up.

    The invariant, per product:

        available_units + held_units == initial_units + sum(StockAdjustment.delta)

    `held_units_by_product` maps a product id to the units its PENDING and COMPLETED orders
    hold (orders computes it, e.g. one `values("product_id").annotate(Sum("quantity"))`);
    a product missing from the mapping holds none. Cancelled, failed and refunded orders
    hold nothing, because their units went back through `product_return_units`.
    One query, whatever the number of products; `product_ids` narrows it.
    """
    held = {UUID(str(k)): int(v) for k, v in (held_units_by_product or {}).items()}
    qs = Product.objects.all()
    if product_ids is not None:
        qs = qs.filter(pk__in=list(product_ids))
    rows = qs.annotate(adjusted=Coalesce(Sum("stock_adjustments__delta"), 0)).values_list(
        "pk", "available_units", "initial_units", "adjusted"
    )
    drifts = []
    for pk, available, initial, adjusted in rows.order_by("pk"):
        entry = StockDrift(
            product_id=pk,
            available_units=available,
            held_units=held.get(pk, 0),
            initial_units=initial,
            adjustments=adjusted,
        )
        if entry.drift:
            drifts.append(entry)
    return drifts
