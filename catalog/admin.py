"""Back office. Stock is never typed into the product form: it changes only through the
"adjust stock" page, which goes through `product_adjust_stock` and records who and why.
Products are created by merchants (API) and never erased; staff may edit the descriptive
fields and deactivate."""

from decimal import Decimal

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from catalog import services
from catalog.exceptions import InvalidStockAdjustment
from catalog.models import MAX_UNITS, Product, StockAdjustment
from paymentflow.admin import ReadOnlyAdminMixin


class AdjustStockForm(forms.Form):
    delta = forms.IntegerField(
        label="Change of stock",
        min_value=-MAX_UNITS,
        max_value=MAX_UNITS,
        help_text="Units to add (positive) or remove (negative).",
    )
    reason = forms.CharField(max_length=255, help_text="Why: recorded with your name in the stock history.")

    def clean_delta(self):
        delta = self.cleaned_data["delta"]
        if delta == 0:
            raise forms.ValidationError("The change must not be zero.")
        return delta


class StockAdjustmentInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = StockAdjustment
    extra = 0
    can_delete = False
    fields = ["created_at", "delta", "units_before", "units_after", "source", "actor", "reason"]
    readonly_fields = fields
    ordering = ["-created_at"]
    verbose_name_plural = "Stock history (adjustments outside orders)"


class ProductForm(forms.ModelForm):
    # The database's CHECK (price > 0) would otherwise surface as "Constraint … is violated".
    price = forms.DecimalField(
        max_digits=14, decimal_places=2, min_value=Decimal("0.01"), help_text="Greater than 0, two decimals at most."
    )

    class Meta:
        model = Product
        fields = ["name", "description", "price", "is_active"]


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    form = ProductForm
    list_display = ["name", "merchant", "price", "currency", "available_units", "is_active", "created_at"]
    list_filter = ["is_active", ("merchant", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["name", "merchant__email"]
    list_select_related = ["merchant"]
    ordering = ["-created_at"]
    fields = [
        "id",
        "merchant",
        "name",
        "description",
        "price",
        "currency",
        "is_active",
        "available_units",
        "initial_units",
        "adjust_stock_link",
        "created_at",
        "updated_at",
    ]
    readonly_fields = [
        "id",
        "merchant",
        "currency",
        "available_units",
        "initial_units",
        "adjust_stock_link",
        "created_at",
        "updated_at",
    ]
    inlines = [StockAdjustmentInline]
    actions = ["deactivate_selected"]

    def has_add_permission(self, request):
        return False  # merchants create products through the API

    def has_delete_permission(self, request, obj=None):
        return False  # orders refer to products: deactivate instead

    @admin.display(description="Stock")
    def adjust_stock_link(self, obj):
        if obj is None or obj.pk is None:
            return "-"
        url = reverse("admin:catalog_product_adjust_stock", args=[obj.pk])
        return format_html('<a class="button" href="{}">Adjust stock</a>', url)

    def save_model(self, request, obj, form, change):
        changes = {name: form.cleaned_data[name] for name in form.changed_data if name in services.UPDATABLE_FIELDS}
        changes.pop("available_units", None)
        updated = services.product_update(product_id=obj.pk, actor=request.user, changes=changes, require_owner=False)
        obj.updated_at = updated.updated_at

    @admin.action(description="Deactivate selected products")
    def deactivate_selected(self, request, queryset):
        count = 0
        for pk in queryset.filter(is_active=True).order_by("pk").values_list("pk", flat=True):
            services.product_deactivate(product_id=pk, actor=request.user, require_owner=False)
            count += 1
        self.message_user(request, f"{count} product(s) deactivated.", messages.SUCCESS)

    def get_urls(self):
        custom = [
            path(
                "<path:object_id>/adjust-stock/",
                self.admin_site.admin_view(self.adjust_stock_view),
                name="catalog_product_adjust_stock",
            )
        ]
        return custom + super().get_urls()

    def adjust_stock_view(self, request, object_id):
        product = self.get_object(request, object_id)
        if product is None:
            raise Http404("No such product.")
        if not self.has_change_permission(request, product):
            raise PermissionDenied
        form = AdjustStockForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                adjustment = services.product_adjust_stock(
                    product_id=product.pk,
                    delta=form.cleaned_data["delta"],
                    reason=form.cleaned_data["reason"],
                    actor=request.user,
                    source=StockAdjustment.Source.ADMIN,
                )
            except InvalidStockAdjustment as exc:
                form.add_error(None, exc.message)
            else:
                self.message_user(
                    request,
                    f"Stock of “{product}” changed by {adjustment.delta:+d}: now {adjustment.units_after}.",
                    messages.SUCCESS,
                )
                return HttpResponseRedirect(reverse("admin:catalog_product_change", args=[product.pk]))
        context = {
            **self.admin_site.each_context(request),
            "title": f"Adjust stock: {product}",
            "opts": self.opts,
            "original": product,
            "form": form,
            "has_view_permission": True,
        }
        return TemplateResponse(request, "admin/catalog/product/adjust_stock.html", context)


@admin.register(StockAdjustment)
class StockAdjustmentAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Append-only history: visible, never added, changed or deleted here."""

    list_display = ["created_at", "product", "delta", "units_before", "units_after", "source", "actor", "reason"]
    list_filter = ["source"]
    search_fields = ["product__name", "reason", "actor__email"]
    list_select_related = ["product", "actor"]
    ordering = ["-created_at"]
