"""Reads of merchants' webhook endpoints and deliveries, always scoped to the merchant."""

from accounts.models import User
from webhooks.exceptions import WebhookEndpointNotFound
from webhooks.models import WebhookDelivery, WebhookEndpoint


def webhook_endpoint_list(*, merchant: User):
    """The merchant's endpoints, newest first (index webhook_endpoint_merchant_idx)."""
    return WebhookEndpoint.objects.filter(merchant=merchant).order_by("-created_at", "-id")


def webhook_endpoint_get(*, merchant: User, endpoint_id) -> WebhookEndpoint:
    endpoint = WebhookEndpoint.objects.filter(pk=endpoint_id, merchant=merchant).first()
    if endpoint is None:
        raise WebhookEndpointNotFound()
    return endpoint


def webhook_delivery_list(*, merchant: User, endpoint_id, status: str | None = None):
    """Deliveries of one of the merchant's endpoints, newest first (webhook_delivery_endpoint_idx)."""
    endpoint = webhook_endpoint_get(merchant=merchant, endpoint_id=endpoint_id)
    deliveries = WebhookDelivery.objects.filter(endpoint=endpoint).defer("payload", "response_excerpt")
    if status:
        deliveries = deliveries.filter(status=status)
    return deliveries.order_by("-created_at", "-id")
