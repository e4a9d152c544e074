"""One card payment through Stripe Checkout, for whatever it pays (a card order, a top-up).

Its lifecycle, changed only by `payments.services` (`_change` checks both maps):

    status          PENDING ──► SUCCEEDED   paid, and applied by its owner (money moved)
                       ├──────► FAILED      Stripe could not open the session, the delayed
                       │                    payment failed, or the payment could not be applied
                       └──────► EXPIRED     the session expired, or the buyer cancelled

    refund_status   None ──► PENDING ──► SUCCEEDED
                      │         └──► None   (Stripe said no refund exists: the hold goes back)
                      └──────────────► SUCCEEDED   (a refund made at Stripe without us)

A refund is PENDING from the moment it is decided until Stripe confirms it: for a
SUCCEEDED payment the owner's money is held meanwhile (the merchant debited), for a
payment that was never applied (late, refused, or paid with the wrong amount) there is
nothing to hold. `needs_attention` flags what only staff can settle (a refund Stripe made
that the owner cannot cover, a partial refund, a refund Stripe refuses), with the reason.

Stripe's ids are NULL until known (never ""), so "unknown" has one spelling and the
session id can be unique.
"""

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q

MONEY = {"max_digits": 14, "decimal_places": 2}


class CheckoutPayment(models.Model):
    class Status(models.TextChoices):
        PENDING = "PENDING", "Pending"
        SUCCEEDED = "SUCCEEDED", "Succeeded"
        FAILED = "FAILED", "Failed"
        EXPIRED = "EXPIRED", "Expired"

    class RefundStatus(models.TextChoices):
        PENDING = "PENDING", "In progress"
        SUCCEEDED = "SUCCEEDED", "Refunded"

    ALLOWED_TRANSITIONS: dict[str, frozenset[str]] = {
        Status.PENDING: frozenset({Status.SUCCEEDED, Status.FAILED, Status.EXPIRED}),
    }
    ALLOWED_REFUND_TRANSITIONS: dict[str | None, frozenset[str | None]] = {
        None: frozenset({RefundStatus.PENDING, RefundStatus.SUCCEEDED}),
        RefundStatus.PENDING: frozenset({None, RefundStatus.SUCCEEDED}),
    }

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    #: What the payment is for: a kind registered in `payments.hooks` ("order", "topup").
    kind = models.CharField(max_length=16)
    # Indexed by the partial index of open checkouts (Meta), which leads with it.
    payer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="checkout_payments", db_index=False
    )
    amount = models.DecimalField(**MONEY)
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    stripe_session_id = models.CharField(max_length=255, unique=True, null=True, blank=True)
    stripe_payment_intent_id = models.CharField(max_length=255, null=True, blank=True, db_index=True)
    checkout_url = models.URLField(max_length=2048, null=True, blank=True)
    #: When the Checkout Session stops taking payments (sent to Stripe as `expires_at`).
    expires_at = models.DateTimeField()
    paid_at = models.DateTimeField(null=True, blank=True)

    refund_status = models.CharField(max_length=16, choices=RefundStatus.choices, null=True, blank=True)
    stripe_refund_id = models.CharField(max_length=255, null=True, blank=True)
    refund_requested_at = models.DateTimeField(null=True, blank=True)
    #: Set while one process asks Stripe to refund (a lease: nobody else starts a refund of
    #: this payment until it is cleared or REFUND_LEASE_SECONDS have passed).
    refund_attempt_started_at = models.DateTimeField(null=True, blank=True)
    #: Refund attempts started so far; the current one's number is its lease's token: only
    #: the process holding it writes an attempt's outcome (a holder taken over writes nothing).
    refund_attempt = models.PositiveIntegerField(default=0)
    refunded_at = models.DateTimeField(null=True, blank=True)
    needs_attention = models.BooleanField(default=False)
    attention_reason = models.CharField(max_length=500, blank=True, default="")
    # The staff member whose "settle" (back office) cleared the flag.
    settled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+", db_index=False
    )

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "card payment"
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="payment_amount_positive"),
            models.CheckConstraint(
                condition=Q(status__in=["PENDING", "SUCCEEDED", "FAILED", "EXPIRED"]), name="payment_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(status="SUCCEEDED", paid_at__isnull=False) | (~Q(status="SUCCEEDED") & Q(paid_at=None)),
                name="payment_paid_at_iff_succeeded",
            ),
            # Only money Stripe took can be refunded, and only once the payment is settled.
            models.CheckConstraint(
                condition=Q(refund_status=None)
                | Q(
                    refund_status__in=["PENDING", "SUCCEEDED"],
                    status__in=["SUCCEEDED", "FAILED", "EXPIRED"],
                    stripe_payment_intent_id__isnull=False,
                    refund_requested_at__isnull=False,
                ),
                name="payment_refund_needs_a_settled_payment",
            ),
            models.CheckConstraint(
                condition=~Q(refund_status="SUCCEEDED") | Q(stripe_refund_id__isnull=False, refunded_at__isnull=False),
                name="payment_refunded_has_its_refund",
            ),
            models.CheckConstraint(
                # IS NOT NULL: a NULL refund status would make the comparison NULL, which a CHECK lets pass.
                condition=Q(refund_attempt_started_at=None) | Q(refund_status__isnull=False, refund_status="PENDING"),
                name="payment_refund_attempt_only_in_progress",
            ),
        ]
        indexes = [
            # MAX_PENDING_CHECKOUTS: a payer's open checkouts, never their history.
            models.Index(
                fields=["payer", "expires_at"], name="payment_open_by_payer_idx", condition=Q(status="PENDING")
            ),
            # The expiry sweep: the few PENDING payments by expiry.
            models.Index(fields=["expires_at"], name="payment_pending_expiry_idx", condition=Q(status="PENDING")),
            # The refund sweep: refunds whose outcome is not known yet.
            models.Index(
                fields=["refund_requested_at"], name="payment_refund_pending_idx", condition=Q(refund_status="PENDING")
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} payment {self.pk} ({self.status})"

    @property
    def refund_in_progress(self) -> bool:
        return self.refund_status == self.RefundStatus.PENDING
