"""Every verified Stripe event, stored once (unique on Stripe's `evt_...` id)."""

from django.db import models


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
