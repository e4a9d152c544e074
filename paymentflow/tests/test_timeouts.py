"""The timeout chain: how long talking to Stripe may take, and what must outlast it
(paymentflow/timeouts.py; docs/ARCHITECTURE.md, "Operations: timeouts")."""

import ast
import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import stripe
import yaml
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


# --- One request: its Stripe deadline < gunicorn's worker timeout < the balancer's ----------------


def _gunicorn_timeout() -> float:
    """`timeout = N` of gunicorn.conf.py, as gunicorn reads it (no command line overrides it)."""
    config = ast.parse((ROOT / "gunicorn.conf.py").read_text())
    (value,) = [
        node.value.value
        for node in config.body
        if isinstance(node, ast.Assign) and [t.id for t in node.targets if isinstance(t, ast.Name)] == ["timeout"]
    ]
    return float(value)


def _seconds(pattern: str, text: str) -> float:
    (value,) = re.findall(pattern, text)
    return float(value)


def test_a_requests_stripe_deadline_ends_before_gunicorn_kills_its_worker_and_the_balancer_gives_up():
    deadline = settings.STRIPE_REQUEST_DEADLINE_SECONDS
    gunicorn = _gunicorn_timeout()
    haproxy = _seconds(r"\n\s*timeout server (\d+)s", (ROOT / "deploy/haproxy/haproxy.cfg").read_text())
    cluster = (ROOT / "paymentflow/testing/cluster.py").read_text()
    nginx = _seconds(r"proxy_read_timeout (\d+)s;", cluster)
    # No command line overrides gunicorn.conf.py's timeout: not docker-compose's, not the test cluster's.
    web = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["web"]["command"]
    assert "--timeout" not in web and "-t" not in web and '"--timeout"' not in cluster

    # requests waits up to the time left to connect, and again to read: twice the deadline at
    # worst, plus the request's database work (lock waits of 5 s: PURCHASE_LOCK_TIMEOUT_MS).
    assert 2 * deadline + 5 <= gunicorn
    assert gunicorn < haproxy and gunicorn < nginx
    assert deadline == 12 and (gunicorn, haproxy, nginx) == (30, 60, 60)  # what the documents say


def test_the_deadline_starts_with_the_request():
    """Early in the chain, so that it counts from the request's start (the API tests through
    a slow fake Stripe: orders/tests/test_card_refunds.py, "One Stripe deadline per request")."""
    middleware = settings.MIDDLEWARE
    assert middleware.index("payments.middleware.StripeDeadlineMiddleware") == (
        middleware.index("paymentflow.middleware.RequestIDMiddleware") + 1
    )
