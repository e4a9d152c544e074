"""Input and output of `/webhook-endpoints` (merchant webhooks, outbound)."""

from rest_framework import serializers

from paymentflow.api.serializers import (
    OptionalTextField,
    OutputSerializer,
    QuerySerializer,
    StrictBooleanField,
    StrictInputSerializer,
)
from webhooks.models import EVENT_TYPES, WebhookDelivery
from webhooks.urls_safety import MAX_URL_LENGTH


class WebhookEndpointInputSerializer(StrictInputSerializer):
    """An endpoint's fields; when changing one, send only those that change (`isActive` only then)."""

    url = serializers.CharField(max_length=MAX_URL_LENGTH, trim_whitespace=False)
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=EVENT_TYPES), required=False, allow_empty=True, max_length=20
    )
    description = OptionalTextField(max_length=255)
    is_active = StrictBooleanField(required=False)

    def validate(self, attrs):
        attrs = super().validate(attrs)
        if not self.partial and "is_active" in attrs:
            raise serializers.ValidationError({"is_active": ["Set isActive with PATCH."]})
        return attrs


class WebhookEndpointSerializer(OutputSerializer):
    """A merchant's webhook endpoint (its secret is shown only when it is created).
    `disabledReason` says why it was turned off (every attempt failing for a day)."""

    id = serializers.UUIDField(read_only=True)
    url = serializers.CharField(read_only=True)
    events = serializers.ListField(child=serializers.CharField(), read_only=True)
    description = serializers.CharField(read_only=True)
    is_active = serializers.BooleanField(read_only=True)
    disabled_reason = serializers.CharField(read_only=True, allow_null=True, source="disabled_reason_or_none")
    created_at = serializers.DateTimeField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True)


class WebhookEndpointCreatedSerializer(WebhookEndpointSerializer):
    """A newly registered endpoint, with the secret that signs its events: keep it now."""

    secret = serializers.CharField(read_only=True)


class WebhookDeliverySerializer(OutputSerializer):
    """One event sent (or to be sent) to an endpoint, and how its attempts went."""

    id = serializers.UUIDField(read_only=True)
    event_id = serializers.UUIDField(read_only=True)
    event_type = serializers.CharField(read_only=True)
    status = serializers.ChoiceField(choices=WebhookDelivery.Status.choices, read_only=True)
    attempts = serializers.IntegerField(read_only=True)
    last_status_code = serializers.IntegerField(read_only=True, allow_null=True)
    next_attempt_at = serializers.DateTimeField(read_only=True, allow_null=True)
    created_at = serializers.DateTimeField(read_only=True)
    delivered_at = serializers.DateTimeField(read_only=True, allow_null=True)


class WebhookDeliveryQuerySerializer(QuerySerializer):
    status = serializers.ChoiceField(choices=WebhookDelivery.Status.choices, required=False)
