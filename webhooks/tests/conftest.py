# A superuser, shared with the wallets tests (`reconcile` comes from paymentflow.testing.fixtures).
import pytest

from wallets.tests.conftest import staff  # noqa: F401
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
