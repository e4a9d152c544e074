"""Both directions: every verified Stripe event, stored once (unique on Stripe's `evt_...`
id); and merchants' webhook endpoints with one delivery row per (event, endpoint), the
outbox and the record of what became of it."""

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q


class StripeEvent(models.Model):
    """One Stripe event as it was delivered, and what became of it.

    RECEIVED: stored, not yet handled (or being handled right now). PROCESSED: its effect
    took place (at most once). IGNORED: of no interest (another type, another integration's
    session). FAILED: the handler raised, or `payments` refused the event (a paid session
    that is not ours to the cent: nothing moved, what Stripe took was refunded);
    `last_error` says why, and a later delivery (or the admin's "reprocess") handles it
    again, which a refused event's refund makes harmless.
    """

    class Status(models.TextChoices):
        RECEIVED = "RECEIVED", "Received"
        PROCESSED = "PROCESSED", "Processed"
        IGNORED = "IGNORED", "Ignored"
        FAILED = "FAILED", "Failed"

    event_id = models.CharField(max_length=255, unique=True)
    type = models.CharField(max_length=100, db_index=True)
    livemode = models.BooleanField(default=False)
    payload = models.JSONField()
    # The event's object (e.g. the Checkout Session id), to find an order's or top-up's events.
    object_id = models.CharField(max_length=255, blank=True, default="", db_index=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RECEIVED, db_index=True)
    attempts = models.PositiveIntegerField(default=0)
    # What handling did ("topup <id> completed", "awaiting payment", ...), for the back office.
    outcome = models.CharField(max_length=255, blank=True, default="")
    last_error = models.TextField(blank=True, default="")
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at"]
        verbose_name = "Stripe event"
        permissions = [("reprocess_stripeevent", "Can reprocess a failed Stripe event")]

    def __str__(self) -> str:
        return f"{self.event_id} {self.type} ({self.status})"

    @property
    def is_done(self) -> bool:
        return self.status in (self.Status.PROCESSED, self.Status.IGNORED)


EVENT_TYPES = ("order.completed", "order.refunded", "order.cancelled", "order.failed")


class WebhookEndpoint(models.Model):
    """A merchant's URL that receives its events, signed with `secret` (Standard Webhooks).

    `events` empty: every type. `failing_since`: the first failed attempt since the last
    success; when that is WEBHOOK_DISABLE_AFTER_HOURS old the endpoint is disabled and
    `disabled_reason` tells its merchant why.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    merchant = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="webhook_endpoints", db_index=False
    )  # served by webhook_endpoint_merchant_idx
    url = models.CharField(max_length=2000)
    events = models.JSONField(default=list, blank=True)
    description = models.CharField(max_length=255, blank=True, default="")
    # Needed in clear to sign; shown to the merchant once, at creation.
    secret = models.CharField(max_length=64)
    is_active = models.BooleanField(default=True)
    disabled_reason = models.CharField(max_length=255, blank=True, default="")
    failing_since = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # The merchant's list, and the event fan-out (which reads the active ones).
            models.Index(fields=["merchant", "-created_at", "-id"], name="webhook_endpoint_merchant_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.url} ({'active' if self.is_active else 'disabled'})"

    @property
    def disabled_reason_or_none(self) -> str | None:
        return self.disabled_reason or None


class WebhookDelivery(models.Model):
    """One event for one endpoint: the outbox row written in the transaction of the change
    it reports, and the source of truth of its delivery (tasks only wake workers up).

    `payload` is the exact body, signed anew but sent identical on every attempt under the
    same `event_id` (the `webhook-id` header). An attempt in flight holds a lease
    (`locked_until`); `attempts` is its fencing token: a worker records its outcome only if
    no other attempt began since (webhooks.delivery).
    """

    class Status(models.TextChoices):
        PENDING = "PENDING", "Pending"
        SUCCEEDED = "SUCCEEDED", "Succeeded"
        FAILED = "FAILED", "Failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries", db_index=False
    )  # served by webhook_delivery_endpoint_idx
    event_id = models.UUIDField()
    event_type = models.CharField(max_length=32)
    payload = models.TextField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    locked_until = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=255, blank=True, default="")
    # A short excerpt of the receiver's last answer, for staff; never the whole body.
    response_excerpt = models.CharField(max_length=500, blank=True, default="")
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "webhook deliveries"
        permissions = [("retry_webhookdelivery", "Can retry a webhook delivery now")]
        constraints = [
            models.UniqueConstraint(fields=["event_id", "endpoint"], name="webhook_delivery_once_per_endpoint"),
            models.CheckConstraint(
                condition=Q(status="PENDING") | Q(next_attempt_at__isnull=True, locked_until__isnull=True),
                name="webhook_delivery_finished_is_not_scheduled",
            ),
        ]
        indexes = [
            models.Index(fields=["endpoint", "-created_at", "-id"], name="webhook_delivery_endpoint_idx"),
            models.Index(fields=["next_attempt_at"], name="webhook_delivery_due_idx", condition=Q(status="PENDING")),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.event_id} -> {self.endpoint_id} ({self.status})"
