"""Every write on a merchant's webhook endpoints (`/webhook-endpoints`). Each call acts on
the caller's own endpoints only: another merchant's is "not found"."""

import base64
import secrets

from django.db import transaction

from accounts.models import User
from webhooks.exceptions import TooManyWebhookEndpoints, WebhookEndpointNotFound, WebhookUrlNotAllowed
from webhooks.models import WebhookEndpoint
from webhooks.urls_safety import UnsafeWebhookUrl, check_webhook_url

#: Every event fans out to each endpoint inside the transaction of the sale: keep it small.
MAX_ENDPOINTS_PER_MERCHANT = 10


def new_endpoint_secret() -> str:
    """`whsec_` + base64 of 24 random bytes (the Standard Webhooks form)."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def _checked_url(url: str) -> str:
    try:
        check_webhook_url(url)
    except UnsafeWebhookUrl as exc:
        raise WebhookUrlNotAllowed(str(exc), details={"url": [str(exc)]}) from exc
    return url


def webhook_endpoint_create(
    *, merchant: User, url: str, events: list | None = None, description: str = ""
) -> WebhookEndpoint:
    """A new active endpoint with a fresh secret (the caller shows it once)."""
    url = _checked_url(url)  # resolves DNS: before any transaction
    # Two creations at the same moment may both pass: the cap only bounds the fan-out.
    if WebhookEndpoint.objects.filter(merchant=merchant).count() >= MAX_ENDPOINTS_PER_MERCHANT:
        raise TooManyWebhookEndpoints()
    return WebhookEndpoint.objects.create(
        merchant=merchant,
        url=url,
        events=sorted(set(events or [])),
        description=description,
        secret=new_endpoint_secret(),
    )


def webhook_endpoint_update(*, merchant: User, endpoint_id, **changes) -> WebhookEndpoint:
    """Change any of url (checked again), events, description, is_active. Turning an
    endpoint back on clears why it was disabled."""
    if "url" in changes:
        changes["url"] = _checked_url(changes["url"])
    if "events" in changes:
        changes["events"] = sorted(set(changes["events"]))
    with transaction.atomic():
        endpoint = WebhookEndpoint.objects.select_for_update().filter(pk=endpoint_id, merchant=merchant).first()
        if endpoint is None:
            raise WebhookEndpointNotFound()
        if changes.get("is_active") and not endpoint.is_active:
            changes.update(disabled_reason="", failing_since=None)
        for name, value in changes.items():
            setattr(endpoint, name, value)
        endpoint.save(update_fields=[*changes, "updated_at"])  # updated_at: auto_now
        return endpoint


def webhook_endpoint_delete(*, merchant: User, endpoint_id) -> None:
    """Gone, with its deliveries: nothing more is sent to it."""
    deleted, _ = WebhookEndpoint.objects.filter(pk=endpoint_id, merchant=merchant).delete()
    if not deleted:
        raise WebhookEndpointNotFound()
