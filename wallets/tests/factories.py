from decimal import Decimal

import factory
from django.conf import settings

from accounts.tests.factories import UserFactory
from wallets.models import Wallet
from wallets.services import wallet_deposit


class WalletFactory(factory.django.DjangoModelFactory):
    """An empty user wallet. Money only enters through the services: see `funded_wallet`."""

    class Meta:
        model = Wallet
        django_get_or_create = ("user",)

    user = factory.SubFactory(UserFactory)
    kind = Wallet.Kind.USER
    currency = factory.LazyFunction(lambda: settings.CURRENCY)


def funded_wallet(*, user=None, amount: Decimal | str = "100.00") -> Wallet:
    """A user wallet holding `amount`, put there by a real deposit (so the ledger reconciles)."""
    wallet = WalletFactory(user=user) if user is not None else WalletFactory()
    amount = Decimal(amount)
    if amount:
        wallet_deposit(wallet=wallet, amount=amount)
        wallet.refresh_from_db()
    return wallet
