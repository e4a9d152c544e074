"""Back office: Stripe events, read-only, with one action: reprocess a FAILED (or stuck
RECEIVED) event through the same path as a delivery (`webhooks.services`)."""

import json

from django.contrib import admin, messages
from django.utils.html import format_html

from paymentflow.admin import ReadOnlyAdminMixin
from webhooks.exceptions import WebhookProcessingFailed
from webhooks.models import StripeEvent
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
