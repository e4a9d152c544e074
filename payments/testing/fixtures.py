"""pytest fixtures for Stripe (registered in the root conftest.py via `pytest_plugins`).

- `stripe_unconfigured` (autouse): Stripe is "not configured" in every test that does not
  ask for `fake_stripe`, whatever the developer's environment holds.
- `fake_stripe`: a `FakeStripe` (one server per test process, state reset per test) with
  the settings pointing the real SDK at it for the duration of the test:
  STRIPE_SECRET_KEY, STRIPE_API_BASE, STRIPE_WEBHOOK_SECRET, no SDK retries (a test that
  wants them sets STRIPE_MAX_NETWORK_RETRIES) and a 5 s timeout.
"""

from __future__ import annotations

import pytest
from django.test import override_settings

from payments.testing.fake_stripe import FakeStripe


@pytest.fixture(autouse=True)
def stripe_unconfigured():
    with override_settings(STRIPE_SECRET_KEY="", STRIPE_WEBHOOK_SECRET="", STRIPE_API_BASE=""):
        yield


@pytest.fixture(scope="session")
def _fake_stripe_server():
    server = FakeStripe().start()
    yield server
    server.stop()


@pytest.fixture
def fake_stripe(_fake_stripe_server, stripe_unconfigured) -> FakeStripe:
    fake = _fake_stripe_server
    fake.reset()
    with override_settings(
        STRIPE_SECRET_KEY=fake.api_key,
        STRIPE_API_BASE=fake.url,
        STRIPE_WEBHOOK_SECRET=fake.webhook_secret,
        STRIPE_MAX_NETWORK_RETRIES=0,
        STRIPE_TIMEOUT_SECONDS=5,
    ):
        yield fake
    fake.reset()
