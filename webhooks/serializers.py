"""Input and output of `/webhook-endpoints` (merchant webhooks, outbound)."""

from rest_framework import serializers

from paymentflow.api.serializers import OutputSerializer, QuerySerializer, StrictBooleanField, StrictInputSerializer
from webhooks.models import EVENT_TYPES, WebhookDelivery
from webhooks.urls_safety import MAX_URL_LENGTH


class NullAsEmptyCharField(serializers.CharField):
    """An optional text field: `null` means empty (clients in TypeScript send null)."""

    def __init__(self, **kwargs):
        super().__init__(allow_null=True, allow_blank=True, required=False, **kwargs)

    def to_internal_value(self, data):
        return "" if data is None else super().to_internal_value(data)

    def validate_empty_values(self, data):
        if data is None:
            return True, ""
        return super().validate_empty_values(data)


class WebhookEndpointInputSerializer(StrictInputSerializer):
    """POST body; PATCH uses it with partial=True (plus isActive)."""

    url = serializers.CharField(max_length=MAX_URL_LENGTH, trim_whitespace=False)
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=EVENT_TYPES), required=False, allow_empty=True, max_length=20
    )
    description = NullAsEmptyCharField(max_length=255)
    is_active = StrictBooleanField(required=False)

    def validate(self, attrs):
        attrs = super().validate(attrs)
        if not self.partial and "is_active" in attrs:
            raise serializers.ValidationError({"is_active": ["Set isActive with PATCH."]})
        return attrs


class WebhookEndpointSerializer(OutputSerializer):
    """`endpoint` on the wire (never the secret, except once: WebhookEndpointCreatedSerializer).
    `disabledReason` says why we turned an endpoint off (every attempt failing for a day)."""

    id = serializers.UUIDField(read_only=True)
    url = serializers.CharField(read_only=True)
    events = serializers.ListField(child=serializers.CharField(), read_only=True)
    description = serializers.CharField(read_only=True)
    is_active = serializers.BooleanField(read_only=True)
    disabled_reason = serializers.CharField(read_only=True, allow_null=True, source="disabled_reason_or_none")
    created_at = serializers.DateTimeField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True)


class WebhookEndpointCreatedSerializer(WebhookEndpointSerializer):
    secret = serializers.CharField(read_only=True)


class WebhookDeliverySerializer(OutputSerializer):
    """`delivery` on the wire."""

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
