"""Wallets and the append-only double-entry ledger.

- `Wallet`: a user's wallet (one per user, balance never negative) or a system account
  (`external:deposits`, ...), which may go negative and keeps no running balance: its
  balance is the sum of its legs (see `wallets.selectors.system_wallet_balance`).
- `JournalEntry`: one movement of money; its legs sum to zero.
- `LedgerEntry`: one leg of a journal entry on one wallet. A user-wallet leg carries the
  contract's `transaction` fields, including the balance before and after and a per-wallet
  `sequence` (1, 2, 3, ...) that orders the wallet's chain.

Rows of the ledger are written once and never changed: `save()` of an existing row,
`delete()`, and queryset `update()`/`delete()` raise; on PostgreSQL a trigger refuses
UPDATE and DELETE too (migration 0002). A mistake is corrected by a new entry.
"""

import uuid
from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Round

MONEY = {"max_digits": 14, "decimal_places": 2}
ZERO = Decimal("0.00")


def default_currency() -> str:
    return settings.CURRENCY


class LedgerImmutableError(Exception):
    """Raised on any attempt to change or delete a ledger row."""


class SystemAccount(models.TextChoices):
    """The platform's own accounts: where money comes from and goes to outside the users."""

    EXTERNAL_DEPOSITS = "external:deposits", "External deposits"
    EXTERNAL_WITHDRAWALS = "external:withdrawals", "External withdrawals"
    STRIPE_CLEARING = "stripe:clearing", "Stripe clearing"
    ADJUSTMENTS = "platform:adjustments", "Staff adjustments"


class Wallet(models.Model):
    class Kind(models.TextChoices):
        USER = "USER", "User wallet"
        SYSTEM = "SYSTEM", "System account"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.USER)
    # A user wallet has a user; a system account has a code instead.
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="wallet"
    )
    code = models.CharField(max_length=64, unique=True, null=True, blank=True, choices=SystemAccount.choices)
    # Running balance of a user wallet. A system account leaves it at 0 (derived from its legs).
    balance = models.DecimalField(**MONEY, default=ZERO)
    currency = models.CharField(max_length=3, default=default_currency)
    is_locked = models.BooleanField(default=False)
    # The `sequence` of the wallet's last leg; the next leg is last_sequence + 1.
    last_sequence = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        permissions = [("adjust_balance", "Can post a staff balance adjustment")]
        constraints = [
            models.CheckConstraint(
                condition=Q(kind="SYSTEM") | Q(balance__gte=0), name="wallet_user_balance_not_negative"
            ),
            models.CheckConstraint(
                condition=(Q(kind="USER", user__isnull=False, code__isnull=True))
                | Q(kind="SYSTEM", user__isnull=True, code__isnull=False),
                name="wallet_owner_matches_kind",
            ),
            models.CheckConstraint(condition=Q(last_sequence__gte=0), name="wallet_last_sequence_not_negative"),
        ]

    def __str__(self) -> str:
        if self.kind == self.Kind.SYSTEM:
            return f"{self.code}"
        return f"Wallet of {self.user}" if self.user_id else f"Wallet {self.pk}"

    @property
    def is_system(self) -> bool:
        return self.kind == self.Kind.SYSTEM


class AppendOnlyQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise LedgerImmutableError(f"{self.model.__name__} rows are append-only; post a correcting entry instead.")

    def delete(self):
        raise LedgerImmutableError(f"{self.model.__name__} rows are append-only; post a correcting entry instead.")

    def bulk_update(self, objs, fields, batch_size=None):
        raise LedgerImmutableError(f"{self.model.__name__} rows are append-only; post a correcting entry instead.")


class AppendOnlyModel(models.Model):
    """Inserted once, never updated or deleted (a guard, not business logic)."""

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        abstract = True

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise LedgerImmutableError(f"{type(self).__name__} {self.pk} is append-only and cannot be changed.")
        kwargs["force_insert"] = True
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise LedgerImmutableError(f"{type(self).__name__} {self.pk} is append-only and cannot be deleted.")


class JournalEntry(AppendOnlyModel):
    """One movement of money. Its legs (`LedgerEntry`) sum to zero."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # What the movement is about, e.g. ("order", "<order id>"); ties the legs to their cause.
    reference_type = models.CharField(max_length=32, null=True, blank=True)
    reference_id = models.CharField(max_length=64, null=True, blank=True)
    description = models.CharField(max_length=255, blank=True, default="")
    # The staff member who posted it (ADJUSTMENT), else null.
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "journal entries"
        indexes = [models.Index(fields=["reference_type", "reference_id"], name="journal_reference_idx")]

    def __str__(self) -> str:
        return f"Journal {self.pk} {self.reference}".rstrip()

    @property
    def reference(self) -> str:
        """`order:<id>`, or the type alone when the entry refers to no object (`adjustment`)."""
        return ":".join(part for part in (self.reference_type, self.reference_id) if part)


class StaffNote(AppendOnlyModel):
    """Staff's internal note on a journal entry (why an adjustment was posted). Only staff see
    it; the customer's ledger shows the entry's `description`. A table of its own, so the
    ledger's tables (and the wallet purchase's database function that inserts into them)
    keep their columns."""

    journal = models.OneToOneField(JournalEntry, on_delete=models.PROTECT, primary_key=True, related_name="staff_note")
    note = models.TextField()
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.note


class LedgerEntry(AppendOnlyModel):
    """One leg of a journal entry on one wallet: the contract's `transaction`."""

    class Type(models.TextChoices):
        DEPOSIT = "DEPOSIT", "Deposit"
        WITHDRAWAL = "WITHDRAWAL", "Withdrawal"
        PAYMENT = "PAYMENT", "Payment"
        REVENUE = "REVENUE", "Revenue"
        REFUND = "REFUND", "Refund"
        ADJUSTMENT = "ADJUSTMENT", "Adjustment"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    journal = models.ForeignKey(JournalEntry, on_delete=models.PROTECT, related_name="legs")
    # Indexed by the UNIQUE (wallet, sequence) constraint, which leads with it.
    wallet = models.ForeignKey(Wallet, on_delete=models.PROTECT, related_name="entries", db_index=False)
    type = models.CharField(max_length=16, choices=Type.choices)
    # Always positive; `delta` is the signed effect on the wallet (+amount credit, -amount debit).
    amount = models.DecimalField(**MONEY)
    delta = models.DecimalField(**MONEY)
    # Set on user-wallet legs (the wallet's running balance); null on system-account legs.
    balance_before = models.DecimalField(**MONEY, null=True, blank=True)
    balance_after = models.DecimalField(**MONEY, null=True, blank=True)
    # Per-wallet position in the chain (1, 2, 3, ...) on user-wallet legs; null on system legs.
    sequence = models.BigIntegerField(null=True, blank=True)
    currency = models.CharField(max_length=3)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "ledger entry"
        verbose_name_plural = "ledger entries"
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="ledger_amount_positive"),
            models.CheckConstraint(
                condition=Q(delta=F("amount")) | Q(delta=-F("amount")), name="ledger_delta_is_signed_amount"
            ),
            models.CheckConstraint(
                condition=(
                    Q(balance_before__isnull=True, balance_after__isnull=True, sequence__isnull=True)
                    | Q(
                        balance_before__isnull=False,
                        balance_after__isnull=False,
                        sequence__gte=1,
                        # Round(.., 2) is the identity on PostgreSQL's exact numeric; on the
                        # embedded SQLite, which keeps decimals as binary floats, it makes
                        # 0.10 + 0.20 equal 0.30 again.
                        balance_after=Round(F("balance_before") + F("delta"), 2),
                    )
                ),
                name="ledger_balance_chain_consistent",
            ),
            # Two legs can never claim the same place in a wallet's chain; also the index
            # behind "newest first" on a wallet's history.
            models.UniqueConstraint(fields=["wallet", "sequence"], name="ledger_wallet_sequence_unique"),
        ]
        indexes = [
            models.Index(fields=["wallet", "type", "-sequence"], name="ledger_wallet_type_seq_idx"),
            models.Index(fields=["created_at"], name="ledger_created_at_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.delta:+} {self.currency} on {self.wallet_id}"


class TopUp(models.Model):
    """A wallet top-up by card through Stripe Checkout (`wallets.topups` holds its services;
    its `payment`, a `payments.CheckoutPayment`, holds everything Stripe).

    PENDING until its payment succeeds (COMPLETED: one DEPOSIT from `stripe:clearing`,
    reference ("topup", id)), fails (FAILED) or expires (EXPIRED). A payment that cannot be
    credited (the wallet locked meanwhile, the deposit limit lowered) fails the top-up and
    is refunded by `payments`. A refund made at Stripe (the Dashboard) takes the money back:
    REFUNDED.
    """

    class Status(models.TextChoices):
        PENDING = "PENDING", "Pending"
        COMPLETED = "COMPLETED", "Completed"
        FAILED = "FAILED", "Failed"
        EXPIRED = "EXPIRED", "Expired"
        REFUNDED = "REFUNDED", "Refunded"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="topups")
    wallet = models.ForeignKey(Wallet, on_delete=models.PROTECT, related_name="topups")
    amount = models.DecimalField(**MONEY)
    currency = models.CharField(max_length=3, default=default_currency)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    payment = models.OneToOneField("payments.CheckoutPayment", on_delete=models.PROTECT, related_name="+")
    failure_reason = models.CharField(max_length=255, blank=True, default="")
    completed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "top-up"
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="topup_amount_positive"),
            models.CheckConstraint(
                condition=Q(status__in=["COMPLETED", "REFUNDED"], completed_at__isnull=False)
                | (~Q(status__in=["COMPLETED", "REFUNDED"]) & Q(completed_at__isnull=True)),
                name="topup_completed_at_iff_credited",
            ),
        ]
        indexes = [
            models.Index(fields=["user", "-created_at"], name="topup_user_created_idx"),
        ]

    def __str__(self) -> str:
        return f"Top-up {self.pk} {self.amount} {self.currency} {self.status}"
