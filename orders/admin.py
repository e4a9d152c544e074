"""Back office: orders are read-only; the one write is the "Refund" action, which goes
through `orders.services.order_refund` exactly as the merchant's API call does."""

from django.contrib import admin, messages

from orders import services
from orders.models import Order
from paymentflow.admin import ReadOnlyAdminMixin
from paymentflow.api.exceptions import ApplicationError

FIELDS = [
    "id",
    "status",
    "payment_method",
    "user",
    "merchant",
    "product",
    "quantity",
    "unit_price",
    "amount",
    "currency",
    "stripe_session_id",
    "stripe_payment_intent_id",
    "stripe_refund_id",
    "refund_required",
    "checkout_url",
    "checkout_expires_at",
    "failure_reason",
    "refund_reason",
    "refund_requested_at",
    "completed_at",
    "cancelled_at",
    "refunded_at",
    "created_at",
    "updated_at",
]


@admin.register(Order)
class OrderAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    # Narrow enough for a laptop: a short id (linking to the order), no quantity (on the page).
    list_display = ["short_id", "created_at", "status", "payment_method", "user", "product", "amount"]
    list_filter = ["status", "payment_method", "refund_required", "created_at"]
    list_select_related = ["user", "merchant", "product"]
    search_fields = ["=id", "user__email", "merchant__email", "=stripe_session_id", "=stripe_payment_intent_id"]
    date_hierarchy = "created_at"
    ordering = ["-created_at"]
    readonly_fields = FIELDS
    fields = FIELDS
    actions = ["refund_orders"]

    @admin.display(description="Order", ordering="id")
    def short_id(self, obj):
        return str(obj.pk)[:8]

    def has_refund_permission(self, request):
        return request.user.has_perm("orders.change_order")

    @admin.action(description="Refund selected orders (money back, stock back)", permissions=["refund"])
    def refund_orders(self, request, queryset):
        done = 0
        for order in queryset.select_related("merchant"):
            try:
                services.order_refund(order_id=order.pk, merchant=order.merchant, reason="Refunded by staff.")
            except ApplicationError as exc:
                self.message_user(request, f"Order {order.pk}: {exc.message}", messages.ERROR)
            else:
                done += 1
        if done:
            self.message_user(request, f"Refunded {done} order(s).", messages.SUCCESS)
