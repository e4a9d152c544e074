"""Fixtures of the merchant webhook tests (`staff` and `reconcile` come from the root conftest)."""

import pytest

from webhooks.tests.receiver import Receiver


@pytest.fixture
def receiver():
    """A local webhook receiver (its own port); endpoints may point at it because the
    fixture also sets WEBHOOK_ALLOW_PRIVATE_URLS for the test."""
    server = Receiver()
    yield server
    server.stop()


@pytest.fixture
def private_urls_allowed(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = True
