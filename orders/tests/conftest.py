import io

import pytest
from django.core.management import call_command

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


@pytest.fixture
def reconcile():
    """reconcile() -> the command's stdout; raises CommandError on any drift (stock included)."""

    def run() -> str:
        out = io.StringIO()
        call_command("reconcile_ledger", "--no-progress", stdout=out, stderr=io.StringIO())
        return out.getvalue()

    return run
