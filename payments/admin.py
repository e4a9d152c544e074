"""Back office: card payments, read-only, with their refund state; one action settles a
refund flagged for staff through `payments.services.payment_settle_flagged` (Stripe is
asked again what it refunded, and the owner's money is moved accordingly)."""

from django.contrib import admin, messages

from paymentflow.admin import ReadOnlyAdminMixin
from paymentflow.api.exceptions import ApplicationError
from payments import services
from payments.models import CheckoutPayment

FIELDS = [
    "id",
    "kind",
    "payer",
    "amount",
    "currency",
    "status",
    "stripe_session_id",
    "stripe_payment_intent_id",
    "checkout_url",
    "expires_at",
    "paid_at",
    "refund_status",
    "stripe_refund_id",
    "refund_requested_at",
    "refund_attempt_started_at",
    "refund_attempt",
    "refunded_at",
    "needs_attention",
    "attention_reason",
    "settled_by",
    "created_at",
    "updated_at",
]


@admin.register(CheckoutPayment)
class CheckoutPaymentAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["created_at", "kind", "payer", "amount", "status", "refund_status", "needs_attention"]
    list_filter = ["needs_attention", "refund_status", "status", "kind", "created_at"]
    list_select_related = ["payer"]
    search_fields = ["=id", "payer__email", "=stripe_session_id", "=stripe_payment_intent_id", "=stripe_refund_id"]
    date_hierarchy = "created_at"
    ordering = ["-created_at"]
    fields = FIELDS
    readonly_fields = FIELDS
    actions = ["settle"]

    def has_settle_permission(self, request):
        return request.user.has_perm("payments.change_checkoutpayment")

    @admin.action(description="Settle selected refunds (ask Stripe again, then move the money)", permissions=["settle"])
    def settle(self, request, queryset):
        settled = 0
        for payment in queryset.order_by("created_at"):
            try:
                payment = services.payment_settle_flagged(payment_id=payment.pk, staff_user=request.user)
            except ApplicationError as exc:
                self.message_user(request, f"Payment {payment.pk}: {exc.message}", messages.ERROR)
                continue
            if payment.needs_attention:  # tried, not settled: the history says who tried
                self.message_user(request, f"Payment {payment.pk}: {payment.attention_reason}", messages.WARNING)
                self.log_change(request, payment, f"Settle tried; still flagged: {payment.attention_reason}")
            else:
                settled += 1
                self.log_change(request, payment, f"Settled (refund {payment.get_refund_status_display()}).")
        if settled:
            self.message_user(request, f"{settled} payment(s) settled.", messages.SUCCESS)
