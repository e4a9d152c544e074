import pytest

from wallets.tests.factories import WalletFactory


@pytest.fixture
def buyer_wallet(buyer):
    return WalletFactory(user=buyer)


@pytest.fixture
def staff(db):
    from accounts.models import User

    return User.objects.create_superuser("staff@example.com", "StaffPass123!")
