"""Refusals of the Stripe webhook endpoint (the signature ones live in payments.gateway)
and of merchants' webhook endpoints."""

from paymentflow.api.exceptions import ApplicationError, ConflictError, NotFoundError


class WebhookProcessingFailed(ApplicationError):
    """The event was verified and stored but its handler failed: answered 500 so that
    Stripe delivers it again (the event is FAILED; a later delivery handles it again)."""

    status_code = 500
    code = "WEBHOOK_PROCESSING_FAILED"
    default_message = "The event could not be processed; it will be retried."


# --- merchant webhook endpoints (outbound) ------------------------------------------------


class WebhookEndpointNotFound(NotFoundError):
    """No such endpoint, or another merchant's (404, never 403)."""

    code = "NOT_FOUND"
    default_message = "Webhook endpoint not found."


class WebhookUrlNotAllowed(ApplicationError):
    """Not https, or resolving to an internal address (SSRF), or unresolvable."""

    code = "WEBHOOK_URL_NOT_ALLOWED"
    default_message = "This URL cannot receive webhooks."


class TooManyWebhookEndpoints(ConflictError):
    code = "TOO_MANY_WEBHOOK_ENDPOINTS"
    default_message = "This merchant already has the maximum number of webhook endpoints."
