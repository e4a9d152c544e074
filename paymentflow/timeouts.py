"""How long talking to Stripe may take, computed in one place (docs/ARCHITECTURE.md,
"Operations: timeouts"). Plain arithmetic on settings values, so that the settings can check
themselves at start-up with it.

- One Stripe call (`payments.gateway`) makes up to STRIPE_MAX_NETWORK_RETRIES + 1 tries of at
  most STRIPE_TIMEOUT_SECONDS each, with the SDK's backoff between them: `stripe_call_seconds`.
- A card refund's lease must outlast that, plus the writes that follow Stripe's answer:
  `refund_lease_seconds` (REFUND_LEASE_SECONDS may be set longer, never shorter).
"""

from django.core.exceptions import ImproperlyConfigured

#: The SDK's backoff before retry n: min(INITIAL * 2 ** (n - 1), MAX) seconds, with jitter
#: that only shortens it (stripe.HTTPClient.INITIAL_DELAY / MAX_DELAY; a test checks them).
SDK_RETRY_INITIAL_DELAY = 0.5
SDK_RETRY_MAX_DELAY = 5.0
#: What a refund attempt does after Stripe's last answer, under the payment's row lock (the
#: settlement, the owner's hooks, the database's own retries), with room to spare.
REFUND_LEASE_MARGIN_SECONDS = 30.0


def stripe_call_seconds(timeout: float, max_network_retries: int) -> float:
    """The longest one Stripe call may take: every try times out, each after the longest backoff."""
    backoff = sum(
        min(SDK_RETRY_INITIAL_DELAY * 2 ** (retry - 1), SDK_RETRY_MAX_DELAY)
        for retry in range(1, max_network_retries + 1)
    )
    return timeout * (max_network_retries + 1) + backoff


def refund_lease_seconds(timeout: float, max_network_retries: int, configured: float | None = None) -> float:
    """A refund attempt's lease: the longest Stripe call plus the margin, or `configured` when
    it is at least that (ImproperlyConfigured otherwise: a lease that runs out while its
    holder still waits for Stripe lets a second attempt start beside it)."""
    shortest = stripe_call_seconds(timeout, max_network_retries) + REFUND_LEASE_MARGIN_SECONDS
    if configured is None:
        return shortest
    if configured < shortest:
        raise ImproperlyConfigured(
            f"REFUND_LEASE_SECONDS must be at least {shortest:g} (STRIPE_TIMEOUT_SECONDS x (STRIPE_MAX_NETWORK_RETRIES"
            f" + 1), the SDK's backoff and {REFUND_LEASE_MARGIN_SECONDS:g} s), got {configured:g}."
        )
    return configured
