"""Orders test data. Orders are made through the services (so stock and the ledger
reconcile); `OrderFactory` is only for read-side tests that need many rows quickly and
keeps the books right by taking the units from a product made for it."""

from decimal import Decimal

import factory

from accounts.tests.factories import UserFactory
from catalog.tests.factories import ProductFactory
from orders.models import Order
from payments.tests.factories import CheckoutPaymentFactory
from wallets.tests.factories import funded_wallet


class OrderFactory(factory.django.DjangoModelFactory):
    """A PENDING card order (no money moved, units held) and its PENDING card payment, with
    no Checkout Session unless `payment__stripe_session_id` is given. Its product is
    created with the units already taken, so `reconcile_ledger`'s stock check still adds up."""

    class Meta:
        model = Order

    user = factory.SubFactory(UserFactory)
    quantity = 1
    product = factory.SubFactory(
        ProductFactory,
        available_units=9,
        initial_units=factory.LazyAttribute(lambda p: p.available_units + p.factory_parent.quantity),
    )
    merchant = factory.LazyAttribute(lambda o: o.product.merchant)
    unit_price = factory.LazyAttribute(lambda o: o.product.price)
    amount = factory.LazyAttribute(lambda o: o.unit_price * o.quantity)
    status = Order.Status.PENDING
    payment_method = Order.PaymentMethod.GATEWAY
    payment = factory.SubFactory(
        CheckoutPaymentFactory,
        kind="order",
        payer=factory.SelfAttribute("..user"),
        amount=factory.SelfAttribute("..amount"),
    )


def funded_buyer(amount: Decimal | str = "500.00"):
    """A USER with `amount` in the wallet, deposited through the ledger."""
    user = UserFactory()
    funded_wallet(user=user, amount=amount)
    return user
