from rest_framework import serializers

from orders.models import MAX_QUANTITY, Order
from orders.services import REASON_MAX_LENGTH
from paymentflow.api.serializers import StrictInputSerializer, StrictIntegerField


class OrderProductSerializer(serializers.Serializer):
    id = serializers.UUIDField(read_only=True)
    name = serializers.CharField(read_only=True)
    price = serializers.DecimalField(max_digits=14, decimal_places=2, read_only=True)


class OrderSerializer(serializers.ModelSerializer):
    """`order` on the wire."""

    user_id = serializers.UUIDField(read_only=True)
    product_id = serializers.UUIDField(read_only=True)
    merchant_id = serializers.UUIDField(read_only=True)
    product = OrderProductSerializer(read_only=True)

    class Meta:
        model = Order
        fields = [
            "id",
            "user_id",
            "product_id",
            "merchant_id",
            "product",
            "quantity",
            "unit_price",
            "amount",
            "currency",
            "status",
            "payment_method",
            "stripe_session_id",
            "checkout_url",
            "failure_reason",
            "completed_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class OrderCreateInputSerializer(StrictInputSerializer):
    product_id = serializers.UUIDField()
    payment_method = serializers.ChoiceField(choices=Order.PaymentMethod.choices)
    quantity = StrictIntegerField(min_value=1, max_value=MAX_QUANTITY, required=False, default=1)


class OrderRefundInputSerializer(StrictInputSerializer):
    reason = serializers.CharField(max_length=REASON_MAX_LENGTH, required=False, allow_blank=True, default="")


class OrderListQuerySerializer(serializers.Serializer):
    """`GET /orders` filters (query parameters arrive snake_cased by the middleware)."""

    status = serializers.ChoiceField(choices=Order.Status.choices, required=False)
    payment_method = serializers.ChoiceField(choices=Order.PaymentMethod.choices, required=False)


class OrderSalesQuerySerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=Order.Status.choices, required=False)
