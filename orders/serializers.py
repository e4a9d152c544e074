from rest_framework import serializers

from orders.models import MAX_QUANTITY, Order
from orders.services import REASON_MAX_LENGTH
from paymentflow.api.serializers import (
    OptionalTextField,
    OutputSerializer,
    QuerySerializer,
    StrictInputSerializer,
    StrictIntegerField,
)
from payments.models import CheckoutPayment


class OrderProductSerializer(OutputSerializer):
    id = serializers.UUIDField(read_only=True)
    name = serializers.CharField(read_only=True)
    price = serializers.DecimalField(max_digits=14, decimal_places=2, read_only=True)


# Declared field by field rather than a ModelSerializer (which rebuilds its fields from the
# model for every instance it renders), and built once per class (OutputSerializer).
class OrderSerializer(OutputSerializer):
    """An order: what was bought, for how much, how it is paid and where it stands."""

    id = serializers.UUIDField(read_only=True)
    user_id = serializers.UUIDField(read_only=True)
    product_id = serializers.UUIDField(read_only=True)
    merchant_id = serializers.UUIDField(read_only=True)
    product = OrderProductSerializer(read_only=True)
    quantity = serializers.IntegerField(read_only=True)
    unit_price = serializers.DecimalField(max_digits=14, decimal_places=2, read_only=True)
    amount = serializers.DecimalField(max_digits=14, decimal_places=2, read_only=True)
    currency = serializers.CharField(read_only=True)
    status = serializers.ChoiceField(choices=Order.Status.choices, read_only=True)
    payment_method = serializers.ChoiceField(choices=Order.PaymentMethod.choices, read_only=True)
    stripe_session_id = serializers.CharField(source="payment.stripe_session_id", read_only=True, allow_null=True)
    checkout_url = serializers.URLField(source="payment.checkout_url", read_only=True, allow_null=True)
    refund_status = serializers.ChoiceField(
        source="payment.refund_status",
        choices=CheckoutPayment.RefundStatus.choices,
        read_only=True,
        allow_null=True,
        help_text="Card orders: PENDING while a refund is being made (its outcome at Stripe not yet known; "
        "the merchant's money is held), SUCCEEDED once Stripe refunded the card; null otherwise.",
    )
    failure_reason = serializers.CharField(read_only=True, allow_null=True)
    completed_at = serializers.DateTimeField(read_only=True, allow_null=True)
    created_at = serializers.DateTimeField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True)


class OrderCreateInputSerializer(StrictInputSerializer):
    product_id = serializers.UUIDField()
    payment_method = serializers.ChoiceField(choices=Order.PaymentMethod.choices)
    quantity = StrictIntegerField(min_value=1, max_value=MAX_QUANTITY, required=False, default=1)


class OrderRefundInputSerializer(StrictInputSerializer):
    reason = OptionalTextField(max_length=REASON_MAX_LENGTH)


class OrderListQuerySerializer(QuerySerializer):
    """`GET /orders` filters (query parameters arrive snake_cased by the middleware)."""

    status = serializers.ChoiceField(choices=Order.Status.choices, required=False)
    payment_method = serializers.ChoiceField(choices=Order.PaymentMethod.choices, required=False)


class OrderSalesQuerySerializer(QuerySerializer):
    status = serializers.ChoiceField(choices=Order.Status.choices, required=False)
