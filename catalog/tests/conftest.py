import pytest

from accounts.tests.factories import MerchantFactory
from catalog.tests.factories import ProductFactory


@pytest.fixture
def product(merchant):
    return ProductFactory(merchant=merchant)


@pytest.fixture
def other_merchant(db):
    return MerchantFactory()


@pytest.fixture
def other_merchant_client(other_merchant, client_for):
    return client_for(other_merchant)


@pytest.fixture(autouse=True)
def _close_cache_breaker():
    """Each test starts with the list cache in use (an outage test may have tripped it)."""
    from catalog.cache import reset_bypass

    reset_bypass()
    yield
    reset_bypass()
