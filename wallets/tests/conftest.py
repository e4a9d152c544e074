import pytest

from wallets.tests.factories import WalletFactory


@pytest.fixture
def buyer_wallet(buyer):
    return WalletFactory(user=buyer)
