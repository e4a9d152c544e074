"""Back office: orders are read-only; the one write is "Refund selected orders", which shows
the orders and their amounts first, asks for a reason, and then goes through
`orders.services.order_refund` exactly as the merchant's API call does."""

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html

from orders import services
from orders.models import Order
from orders.services import REASON_MAX_LENGTH
from paymentflow.admin import ReadOnlyAdminMixin
from paymentflow.api.exceptions import ApplicationError
from wallets.exceptions import InsufficientFunds, WalletLocked
from wallets.models import Wallet

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
    "card_payment",
    "refund_state",
    "failure_reason",
    "refund_reason",
    "refunded_by",
    "completed_at",
    "cancelled_at",
    "refunded_at",
    "created_at",
    "updated_at",
]


class RefundForm(forms.Form):
    reason = forms.CharField(
        max_length=REASON_MAX_LENGTH,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Recorded on each order as its refund reason; the buyer and the merchant see it.",
    )


def refusal_message(order: Order, refusal: ApplicationError) -> str:
    """A refund's refusal, saying whose wallet refused it: a refund takes the money from
    the merchant (short, or locked) and, for a wallet order, gives it to the buyer (locked)."""
    if isinstance(refusal, InsufficientFunds | WalletLocked):
        if (
            isinstance(refusal, InsufficientFunds)
            or Wallet.objects.filter(user_id=order.merchant_id, is_locked=True).exists()
        ):
            return f"Order {order.pk}: the merchant's wallet ({order.merchant.email}) refused: {refusal.message}"
        return f"Order {order.pk}: the buyer's wallet ({order.user.email}) refused: {refusal.message}"
    return f"Order {order.pk}: {refusal.message}"


@admin.register(Order)
class OrderAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    # Narrow enough for a laptop: a short id (linking to the order), no quantity (on the page).
    list_display = ["short_id", "created_at", "status", "payment_method", "user", "product", "amount"]
    list_filter = ["status", "payment_method", "payment__refund_status", "payment__needs_attention", "created_at"]
    list_select_related = ["user", "merchant", "product", "payment"]
    search_fields = [
        "=id",
        "user__email",
        "merchant__email",
        "=payment__stripe_session_id",
        "=payment__stripe_payment_intent_id",
    ]
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

    @admin.display(description="Card payment")
    def card_payment(self, obj):
        if obj.payment is None:
            return "-"
        url = reverse("admin:payments_checkoutpayment_change", args=[obj.payment.pk])
        return format_html('<a href="{}">{}</a> {}', url, obj.payment.status, obj.payment.stripe_session_id or "")

    @admin.display(description="Refund")
    def refund_state(self, obj):
        payment = obj.payment
        if payment is None or (payment.refund_status is None and not payment.needs_attention):
            return "-"
        state = payment.get_refund_status_display() if payment.refund_status else "none"
        if payment.needs_attention:
            return f"{state}; needs staff: {payment.attention_reason}"
        return state

    @admin.action(description="Refund selected orders (money back, stock back)…", permissions=["refund"])
    def refund_orders(self, request, queryset):
        orders = list(queryset.select_related("user", "merchant", "product").order_by("created_at"))
        form = RefundForm(request.POST if "confirm" in request.POST else None)
        if form.is_bound and form.is_valid():
            self._refund(request, orders, reason=form.cleaned_data["reason"])
            return None  # back to the list, with the messages
        context = {
            **self.admin_site.each_context(request),
            "title": "Refund these orders?",
            "opts": self.model._meta,
            "orders": orders,
            "total": sum((o.amount for o in orders), start=0),
            "form": form,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "media": self.media,
        }
        return TemplateResponse(request, "admin/orders/order/refund_confirmation.html", context)

    def _refund(self, request, orders, *, reason: str) -> None:
        """Each refund names the staff member: `refunded_by`, and the admin's history."""
        done = 0
        for order in orders:
            try:
                services.order_refund(
                    order_id=order.pk, merchant=order.merchant, reason=reason, staff_user=request.user
                )
            except ApplicationError as exc:
                self.message_user(request, refusal_message(order, exc), messages.ERROR)
                if Order.objects.filter(pk=order.pk, refunded_by=request.user).exists():  # begun, not finished
                    self.log_change(request, order, f"Card refund begun ({exc.message}). Reason: {reason}")
            else:
                done += 1
                self.log_change(request, order, f"Refunded. Reason: {reason}")
        if done:
            self.message_user(request, f"Refunded {done} order(s).", messages.SUCCESS)
