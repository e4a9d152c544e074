import pytest

from catalog.tests.factories import ProductFactory
from wallets.tests.factories import WalletFactory, funded_wallet


@pytest.fixture
def merchant_wallet(merchant):
    return WalletFactory(user=merchant)


@pytest.fixture
def funded_buyer_wallet(buyer):
    return funded_wallet(user=buyer, amount="500.00")


@pytest.fixture
def product(merchant, merchant_wallet):
    return ProductFactory(merchant=merchant, price="25.00", available_units=10)
