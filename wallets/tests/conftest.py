import io

import pytest
from django.core.management import call_command

from wallets.tests.factories import WalletFactory


@pytest.fixture
def buyer_wallet(buyer):
    return WalletFactory(user=buyer)


@pytest.fixture
def staff(db):
    from accounts.models import User

    return User.objects.create_superuser("staff@example.com", "StaffPass123!")


@pytest.fixture
def reconcile():
    """reconcile() -> the command's stdout; raises CommandError on drift."""

    def run() -> str:
        out = io.StringIO()
        call_command("reconcile_ledger", "--no-progress", stdout=out, stderr=io.StringIO())
        return out.getvalue()

    return run
