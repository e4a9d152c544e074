from decimal import Decimal

import factory
from django.conf import settings

from accounts.tests.factories import UserFactory
from payments.tests.factories import CheckoutPaymentFactory
from wallets.models import TopUp, Wallet
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


class TopUpFactory(factory.django.DjangoModelFactory):
    """A PENDING card top-up as `wallets.topups.topup_create` leaves it, with its PENDING
    card payment and a session id (no Stripe call)."""

    class Meta:
        model = TopUp

    wallet = factory.SubFactory(WalletFactory)
    user = factory.SelfAttribute("wallet.user")
    amount = Decimal("25.00")
    currency = factory.LazyFunction(lambda: settings.CURRENCY)
    payment = factory.SubFactory(
        CheckoutPaymentFactory,
        kind="topup",
        payer=factory.SelfAttribute("..user"),
        amount=factory.SelfAttribute("..amount"),
        stripe_session_id=factory.Sequence(lambda n: f"cs_test_factory_{n}"),
        checkout_url=factory.LazyAttribute(lambda p: f"https://checkout.stripe.com/c/pay/{p.stripe_session_id}"),
    )
