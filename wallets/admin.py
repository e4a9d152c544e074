"""Back office: wallets (read-only balance, lock / unlock, recent legs, adjust balance) and
the ledger (read-only). Nothing here writes a balance except through `wallets.services`."""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Case, F, OuterRef, Subquery, Sum, When
from django.db.models.functions import Coalesce
from django.forms.models import BaseInlineFormSet
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from paymentflow.admin import ReadOnlyAdminMixin
from paymentflow.api.exceptions import ApplicationError
from wallets import services
from wallets.models import ZERO, JournalEntry, LedgerEntry, TopUp, Wallet
from wallets.selectors import money

RECENT_LEGS = 20
LEG_FIELDS = ["created_at", "type", "delta", "balance_before", "balance_after", "sequence", "journal"]


class RecentLegsFormSet(BaseInlineFormSet):
    """Only the wallet's most recent legs: a busy wallet's page must not load its history."""

    def get_queryset(self):
        if not hasattr(self, "_queryset"):
            self._queryset = self.queryset.select_related("journal").order_by("-sequence", "-created_at")[:RECENT_LEGS]
        return self._queryset


class RecentLegsInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = LedgerEntry
    fk_name = "wallet"
    formset = RecentLegsFormSet
    fields = LEG_FIELDS
    readonly_fields = LEG_FIELDS
    extra = 0
    verbose_name_plural = f"Recent ledger entries (latest {RECENT_LEGS})"


class AdjustBalanceForm(forms.Form):
    amount = forms.DecimalField(
        max_digits=14, decimal_places=2, help_text="Signed: 25.00 credits the wallet, -25.00 debits it."
    )
    description = forms.CharField(
        label="Description shown to the customer",
        max_length=255,
        help_text="The customer sees this on the transaction in their wallet history, e.g. “Goodwill credit”.",
    )
    internal_note = forms.CharField(
        label="Internal note (staff only)",
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Why you are posting it: recorded with your name, never shown to the customer.",
    )

    def clean_amount(self):
        amount = self.cleaned_data["amount"]
        if amount == 0:
            raise forms.ValidationError("The amount cannot be zero.")
        return amount


@admin.register(Wallet)
class WalletAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["__str__", "kind", "ledger_balance", "currency", "is_locked", "updated_at"]
    list_filter = ["kind", "is_locked"]
    list_select_related = ["user"]
    search_fields = ["user__email", "code", "id"]
    readonly_fields = [
        "id",
        "kind",
        "user",
        "code",
        "ledger_balance",
        "currency",
        "is_locked",
        "last_sequence",
        "created_at",
        "updated_at",
        "adjust_link",
    ]
    fields = readonly_fields
    inlines = [RecentLegsInline]
    # View-only (ReadOnlyAdminMixin): saving the form would write the balance read at page
    # load back over whatever moved since. Locking goes through the actions, money through
    # "Adjust balance" (wallets.services).
    actions = ["lock_wallets", "unlock_wallets"]

    def get_queryset(self, request):
        # A system account keeps no running balance (its `balance` column stays 0): its
        # balance is the sum of its legs, computed here for the rows shown, as reconcile does.
        legs_total = (
            LedgerEntry.objects.filter(wallet=OuterRef("pk")).order_by().values("wallet").annotate(t=Sum("delta"))
        )
        return (
            super()
            .get_queryset(request)
            .annotate(
                shown_balance=Case(
                    When(kind=Wallet.Kind.SYSTEM, then=Coalesce(Subquery(legs_total.values("t")), ZERO)),
                    default=F("balance"),
                )
            )
        )

    @admin.display(description="Balance", ordering="shown_balance")
    def ledger_balance(self, obj):
        return money(obj.shown_balance)

    def has_lock_permission(self, request):
        return request.user.has_perm("wallets.change_wallet")

    def has_adjust_permission(self, request):
        return request.user.has_perm("wallets.adjust_balance")

    @admin.display(description="Balance adjustment")
    def adjust_link(self, obj):
        if obj is None or obj.is_system:
            return "-"
        url = reverse("admin:wallets_wallet_adjust", args=[obj.pk])
        return format_html('<a class="button" href="{}">Adjust balance</a>', url)

    @admin.action(description="Lock selected wallets", permissions=["lock"])
    def lock_wallets(self, request, queryset):
        count = services.wallet_set_locked(wallet_ids=queryset.values_list("pk", flat=True), locked=True)
        self.message_user(request, f"Locked {count} wallet(s).", messages.SUCCESS)

    @admin.action(description="Unlock selected wallets", permissions=["lock"])
    def unlock_wallets(self, request, queryset):
        count = services.wallet_set_locked(wallet_ids=queryset.values_list("pk", flat=True), locked=False)
        self.message_user(request, f"Unlocked {count} wallet(s).", messages.SUCCESS)

    def get_urls(self):
        custom = [
            path(
                "<uuid:object_id>/adjust/",
                self.admin_site.admin_view(self.adjust_view),
                name="wallets_wallet_adjust",
            )
        ]
        return custom + super().get_urls()

    def adjust_view(self, request, object_id):
        if not self.has_adjust_permission(request):
            raise PermissionDenied
        wallet = get_object_or_404(Wallet.objects.select_related("user"), pk=object_id, kind=Wallet.Kind.USER)
        form = AdjustBalanceForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                services.wallet_adjust(
                    wallet=wallet,
                    amount=form.cleaned_data["amount"],
                    description=form.cleaned_data["description"],
                    internal_note=form.cleaned_data["internal_note"],
                    staff_user=request.user,
                )
            except ApplicationError as exc:
                form.add_error(None, exc.message)
            else:
                self.message_user(
                    request, f"Adjusted {wallet} by {form.cleaned_data['amount']:+.2f}.", messages.SUCCESS
                )
                return redirect("admin:wallets_wallet_change", wallet.pk)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "original": wallet,
            "wallet": wallet,
            "form": form,
            "title": f"Adjust balance: {wallet}",
        }
        return TemplateResponse(request, "admin/wallets/wallet/adjust_balance.html", context)


class JournalLegsInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = LedgerEntry
    fk_name = "journal"
    fields = ["wallet", "type", "amount", "delta", "balance_before", "balance_after", "sequence"]
    readonly_fields = fields
    extra = 0


@admin.register(JournalEntry)
class JournalEntryAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["created_at", "reference_type", "reference_id", "description", "created_by"]
    list_filter = ["reference_type", "created_at"]
    list_select_related = ["created_by", "staff_note"]
    fields = ["id", "reference_type", "reference_id", "description", "internal_note", "created_by", "created_at"]
    readonly_fields = fields

    @admin.display(description="Internal note (staff only)")
    def internal_note(self, obj):
        note = getattr(obj, "staff_note", None)
        return note.note if note else "-"

    search_fields = ["reference_id", "reference_type", "description"]
    date_hierarchy = "created_at"
    inlines = [JournalLegsInline]


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "created_at",
        "wallet",
        "type",
        "delta",
        "balance_before",
        "balance_after",
        "reference",
        "created_by",
    ]
    list_filter = ["type", "created_at", "wallet__kind"]
    list_select_related = ["wallet__user", "journal__created_by"]
    search_fields = ["journal__reference_id", "journal__reference_type", "wallet__user__email", "wallet__code"]
    date_hierarchy = "created_at"
    ordering = ["-created_at"]

    @admin.display(description="Reference")
    def reference(self, obj):
        return obj.journal.reference or "-"

    @admin.display(description="Posted by")
    def created_by(self, obj):
        return obj.journal.created_by or "-"


@admin.register(TopUp)
class TopUpAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Card top-ups, read-only: they change only through their card payment (wallets.topups)."""

    list_display = ["created_at", "user", "amount", "currency", "status", "payment"]
    list_filter = ["status", "created_at"]
    list_select_related = ["user", "payment"]
    search_fields = ["user__email", "=payment__stripe_session_id", "=payment__stripe_payment_intent_id", "=id"]
    date_hierarchy = "created_at"
    ordering = ["-created_at"]
    fields = [
        "id",
        "user",
        "wallet",
        "amount",
        "currency",
        "status",
        "failure_reason",
        "payment",
        "completed_at",
        "created_at",
        "updated_at",
    ]
    readonly_fields = fields
