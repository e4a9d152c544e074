"""Every non-trivial read of orders. Lists join the product (the `order` shape shows its
id, name and price) and the card payment (session, URL, refund status), so a page is one
query whatever its size."""

from uuid import UUID

from django.db.models import Q, QuerySet, Sum

from accounts.models import User
from orders.exceptions import OrderNotFound
from orders.models import Order


def _with_product(qs: QuerySet[Order]) -> QuerySet[Order]:
    return qs.select_related("product", "payment").order_by("-created_at", "-id")


def order_list_for_buyer(*, user: User, status: str | None = None, payment_method: str | None = None):
    """The caller's purchases, newest first (index order_buyer_history_idx)."""
    qs = Order.objects.filter(user=user)
    if status:
        qs = qs.filter(status=status)
    if payment_method:
        qs = qs.filter(payment_method=payment_method)
    return _with_product(qs)


def order_list_for_merchant(*, merchant: User, status: str | None = None):
    """Orders of the merchant's products, newest first (index order_merchant_sales_idx)."""
    qs = Order.objects.filter(merchant=merchant)
    if status:
        qs = qs.filter(status=status)
    return _with_product(qs)


def order_get_visible(*, order_id: UUID, user: User) -> Order:
    """An order as its buyer or its merchant sees it; anyone else: 404, never 403."""
    order = (
        Order.objects.select_related("product", "payment").filter(Q(user=user) | Q(merchant=user), pk=order_id).first()
    )
    if order is None:
        raise OrderNotFound()
    return order


def held_units_by_product() -> dict:
    """{product id: units held by its PENDING and COMPLETED orders} in one query."""
    rows = (
        Order.objects.filter(status__in=Order.HOLDING_STATUSES)
        .values("product_id")
        .annotate(units=Sum("quantity"))
        .order_by()
    )
    return {row["product_id"]: row["units"] for row in rows}


# --- which idempotent requests call Stripe between transactions (paymentflow.api.idempotency) --


def is_gateway_purchase_request(request, **_) -> bool:
    data = request.data
    return isinstance(data, dict) and data.get("payment_method") == Order.PaymentMethod.GATEWAY


def is_gateway_refund_request(request, *, pk, **_) -> bool:
    return Order.objects.filter(pk=pk, payment_method=Order.PaymentMethod.GATEWAY).exists()
