"""The timeout chain: how long talking to Stripe may take, and what must outlast it
(paymentflow/timeouts.py; docs/ARCHITECTURE.md, "Operations: timeouts")."""

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import stripe
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings
from django.utils import timezone

from paymentflow import timeouts
from payments import services
from payments.models import CheckoutPayment

ROOT = Path(__file__).resolve().parent.parent.parent


def test_the_refund_lease_outlasts_the_longest_stripe_call_plus_a_margin():
    # 3 tries of 10 s, the SDK's backoff before retries 1 and 2 (0.5 s, 1 s), then the writes.
    assert timeouts.stripe_call_seconds(10, 2) == 31.5
    assert timeouts.refund_lease_seconds(10, 2) == 31.5 + timeouts.REFUND_LEASE_MARGIN_SECONDS
    assert timeouts.stripe_call_seconds(5, 0) == 5
    assert timeouts.stripe_call_seconds(10, 6) == 70 + 0.5 + 1 + 2 + 4 + 5 + 5  # the backoff is capped
    # A longer lease may be configured; a shorter one is refused.
    assert timeouts.refund_lease_seconds(10, 2, configured=600) == 600
    with pytest.raises(ImproperlyConfigured, match="REFUND_LEASE_SECONDS must be at least 61.5"):
        timeouts.refund_lease_seconds(10, 2, configured=60)


def test_the_backoff_is_the_sdks():
    assert (timeouts.SDK_RETRY_INITIAL_DELAY, timeouts.SDK_RETRY_MAX_DELAY) == (
        stripe.HTTPClient.INITIAL_DELAY,
        stripe.HTTPClient.MAX_DELAY,
    )
    client = stripe.RequestsClient()
    for retry in range(1, 8):
        longest = timeouts.stripe_call_seconds(0, retry) - timeouts.stripe_call_seconds(0, retry - 1)
        assert max(client._sleep_time_seconds(retry) for _ in range(200)) <= longest


def test_the_configured_lease_is_derived_from_the_stripe_settings_and_used_by_the_refunds():
    derived = timeouts.refund_lease_seconds(settings.STRIPE_TIMEOUT_SECONDS, settings.STRIPE_MAX_NETWORK_RETRIES)
    assert derived == settings.REFUND_LEASE_SECONDS
    assert services.refund_lease() == timedelta(seconds=settings.REFUND_LEASE_SECONDS)
    with override_settings(REFUND_LEASE_SECONDS=90):
        assert services.refund_lease() == timedelta(seconds=90)


def _settings_with(**environ) -> subprocess.CompletedProcess:
    env = {**os.environ, "DJANGO_DEBUG": "1", **environ}
    return subprocess.run(
        [sys.executable, "-c", "import paymentflow.settings.base as s; print(s.REFUND_LEASE_SECONDS)"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_settings_refuse_a_lease_shorter_than_a_stripe_call_and_derive_it_from_the_stripe_settings():
    refused = _settings_with(REFUND_LEASE_SECONDS="30")
    assert refused.returncode != 0 and "REFUND_LEASE_SECONDS must be at least 61.5" in refused.stderr
    assert _settings_with(REFUND_LEASE_SECONDS="300").stdout.strip() == "300.0"
    derived = _settings_with(STRIPE_TIMEOUT_SECONDS="20", STRIPE_MAX_NETWORK_RETRIES="1")
    assert derived.stdout.strip() == str(20 * 2 + 0.5 + timeouts.REFUND_LEASE_MARGIN_SECONDS)


def test_a_lease_is_held_for_refund_lease_and_no_longer():
    payment = CheckoutPayment(refund_attempt_started_at=timezone.now())
    started = payment.refund_attempt_started_at
    assert services._lease_is_held(payment, started + services.refund_lease() - timedelta(seconds=1))
    assert not services._lease_is_held(payment, started + services.refund_lease())
