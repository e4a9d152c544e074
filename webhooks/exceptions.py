"""Refusals of the webhook endpoint (the signature ones live in payments.gateway)."""

from paymentflow.api.exceptions import ApplicationError


class WebhookProcessingFailed(ApplicationError):
    """The event was verified and stored but its handler failed: answered 500 so that
    Stripe delivers it again (the event is FAILED; a later delivery handles it again)."""

    status_code = 500
    code = "WEBHOOK_PROCESSING_FAILED"
    default_message = "The event could not be processed; it will be retried."
