"""Demo money for `manage.py seed_demo` (demo/)."""

from decimal import Decimal

from accounts.models import User
from wallets.models import JournalEntry
from wallets.services import wallet_deposit, wallet_get_or_create

DEMO_BALANCE = Decimal("500.00")
DEMO_REFERENCE = ("seed", "demo-buyer-funds")


def seed_demo_funds(*, email: str, amount: Decimal = DEMO_BALANCE) -> bool:
    """Deposit `amount` into the demo user's wallet once; False if it was already done."""
    user = User.objects.filter(email=email).first()
    if user is None:
        return False
    reference_type, reference_id = DEMO_REFERENCE
    if JournalEntry.objects.filter(reference_type=reference_type, reference_id=reference_id).exists():
        return False
    wallet_deposit(
        wallet=wallet_get_or_create(user=user),
        amount=amount,
        description="Demo funds",
        reference_type=reference_type,
        reference_id=reference_id,
    )
    return True
