"""Refusals of the card payment services, mapped to HTTP by paymentflow.api.exceptions.

The gateway's own (GATEWAY_ERROR 502, GATEWAY_NOT_CONFIGURED 503, the webhook signature
refusals) live in `payments.gateway`, next to the Stripe calls that raise them.
"""

from paymentflow.api.exceptions import ConflictError


class TooManyPendingCheckouts(ConflictError):
    code = "TOO_MANY_PENDING_CHECKOUTS"
    default_message = "Too many open card checkouts."

    def __init__(self, *, limit: int):
        super().__init__(
            f"You already have {limit} card checkout(s) open, the most allowed at once. "
            "Pay or cancel one of them, or wait until it expires.",
            details={"limit": limit},
        )


class PaymentNotRefundable(ConflictError):
    code = "PAYMENT_NOT_REFUNDABLE"
    default_message = "Only a succeeded card payment can be refunded, once."


class RefundInProgress(ConflictError):
    """Another request is asking Stripe to refund this payment right now."""

    code = "REFUND_IN_PROGRESS"
    default_message = "A refund of this payment is being made right now; try again in a minute."
