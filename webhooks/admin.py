"""Back office: Stripe events, read-only, with one action: reprocess a FAILED (or stuck
RECEIVED) event through the same path as a delivery (`webhooks.services`). Merchant
webhook endpoints and deliveries, read-only, with one action: retry a delivery now."""

import json

from django.contrib import admin, messages
from django.utils.html import format_html

from paymentflow.admin import ReadOnlyAdminMixin
from webhooks.delivery import webhook_delivery_retry_now
from webhooks.exceptions import WebhookProcessingFailed
from webhooks.models import StripeEvent, WebhookDelivery, WebhookEndpoint
from webhooks.services import stripe_event_reprocess

REPROCESSABLE = (StripeEvent.Status.FAILED, StripeEvent.Status.RECEIVED)


@admin.register(StripeEvent)
class StripeEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["event_id", "type", "status", "attempts", "object_id", "outcome", "received_at", "processed_at"]
    list_filter = ["status", "type", "livemode", "received_at"]
    search_fields = ["event_id", "object_id"]
    date_hierarchy = "received_at"
    ordering = ["-received_at"]
    fields = [
        "event_id",
        "type",
        "status",
        "livemode",
        "object_id",
        "attempts",
        "outcome",
        "received_at",
        "processed_at",
        "last_error_display",
        "payload_display",
    ]
    readonly_fields = fields
    actions = ["reprocess"]

    def has_reprocess_permission(self, request):
        return request.user.has_perm("webhooks.reprocess_stripeevent")

    @admin.display(description="Last error")
    def last_error_display(self, obj):
        return format_html("<pre>{}</pre>", obj.last_error) if obj.last_error else "-"

    @admin.display(description="Payload")
    def payload_display(self, obj):
        return format_html("<pre>{}</pre>", json.dumps(obj.payload, indent=2, sort_keys=True))

    @admin.action(description="Reprocess selected failed events", permissions=["reprocess"])
    def reprocess(self, request, queryset):
        done, failed, skipped = 0, 0, 0
        for event in queryset.order_by("received_at"):
            if event.status not in REPROCESSABLE:
                skipped += 1
                continue
            try:
                event = stripe_event_reprocess(event=event)
            except WebhookProcessingFailed:
                failed += 1
                self.message_user(request, f"{event.event_id} failed again; see its last error.", messages.ERROR)
            else:
                done += 1
        if done:
            self.message_user(request, f"Reprocessed {done} event(s).", messages.SUCCESS)
        if skipped:
            self.message_user(request, f"Skipped {skipped} event(s) already handled.", messages.WARNING)


# --- merchant webhooks (outbound) ---------------------------------------------------------


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Merchants manage their endpoints through the API; staff look (the secret is never shown)."""

    list_display = ["url", "merchant", "is_active", "events", "failing_since", "disabled_reason", "created_at"]
    list_filter = ["is_active"]
    search_fields = ["url", "merchant__email", "id"]
    fields = [
        "id",
        "merchant",
        "url",
        "events",
        "description",
        "is_active",
        "failing_since",
        "disabled_reason",
        "created_at",
        "updated_at",
    ]
    readonly_fields = fields
    list_select_related = ["merchant"]


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["event_type", "event_id", "endpoint", "status", "attempts", "last_status_code", "next_attempt_at"]
    list_filter = ["status", "event_type", "created_at"]
    search_fields = ["event_id", "id", "endpoint__url", "endpoint__merchant__email"]
    date_hierarchy = "created_at"
    fields = [
        "id",
        "event_id",
        "event_type",
        "endpoint",
        "status",
        "attempts",
        "next_attempt_at",
        "locked_until",
        "last_status_code",
        "last_error",
        "response_excerpt",
        "created_at",
        "delivered_at",
        "payload_display",
    ]
    readonly_fields = fields
    list_select_related = ["endpoint"]
    actions = ["retry_now"]

    def has_retry_now_permission(self, request):
        return request.user.has_perm("webhooks.retry_webhookdelivery")

    @admin.display(description="Payload")
    def payload_display(self, obj):
        return format_html("<pre>{}</pre>", json.dumps(json.loads(obj.payload), indent=2))

    @admin.action(description="Retry selected deliveries now", permissions=["retry_now"])
    def retry_now(self, request, queryset):
        retried = sum(webhook_delivery_retry_now(delivery_id=pk) for pk in queryset.values_list("pk", flat=True))
        skipped = queryset.count() - retried
        if retried:
            self.message_user(request, f"Retrying {retried} delivery(ies) now.", messages.SUCCESS)
        if skipped:
            self.message_user(request, f"Skipped {skipped}: already delivered or in flight.", messages.WARNING)
