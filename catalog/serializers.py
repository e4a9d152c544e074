from rest_framework import serializers

from catalog.models import DESCRIPTION_MAX_LENGTH, MAX_UNITS, NAME_MAX_LENGTH, Product
from catalog.selectors import ProductFilters
from paymentflow.api.serializers import (
    MoneyField,
    OptionalTextField,
    PlainDecimalField,
    QuerySerializer,
    StrictBooleanField,
    StrictInputSerializer,
    StrictIntegerField,
)


class ProductSerializer(serializers.ModelSerializer):
    """A product a merchant offers: its price, the units in stock and whether it is on sale."""

    # Never the merchant's email: other users see a merchant by id only.

    merchant_id = serializers.UUIDField(read_only=True)

    class Meta:
        model = Product
        fields = [
            "id",
            "merchant_id",
            "name",
            "description",
            "price",
            "currency",
            "available_units",
            "is_active",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class ProductInputSerializer(StrictInputSerializer):
    """A product's fields; when changing a product, send only those that change."""

    name = serializers.CharField(max_length=NAME_MAX_LENGTH)
    description = OptionalTextField(max_length=DESCRIPTION_MAX_LENGTH)
    price = MoneyField()
    available_units = StrictIntegerField(min_value=0, max_value=MAX_UNITS)
    is_active = StrictBooleanField(required=False, default=True)


class ProductListQuerySerializer(QuerySerializer):
    """The public list's filters (query parameters arrive snake_cased by the middleware)."""

    search = serializers.CharField(required=False, allow_blank=True, max_length=NAME_MAX_LENGTH)
    merchant_id = serializers.UUIDField(required=False)
    min_price = PlainDecimalField(max_digits=14, decimal_places=2, min_value=0, required=False)
    max_price = PlainDecimalField(max_digits=14, decimal_places=2, min_value=0, required=False)

    def validate(self, attrs):
        low, high = attrs.get("min_price"), attrs.get("max_price")
        if low is not None and high is not None and low > high:
            raise serializers.ValidationError({"max_price": ["Must be greater than or equal to minPrice."]})
        return attrs

    def to_filters(self) -> ProductFilters:
        data = self.validated_data
        return ProductFilters(
            search=data.get("search", ""),
            merchant_id=data.get("merchant_id"),
            min_price=data.get("min_price"),
            max_price=data.get("max_price"),
        )
