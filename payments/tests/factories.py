from datetime import timedelta
from decimal import Decimal

import factory
from django.conf import settings
from django.utils import timezone

from accounts.tests.factories import UserFactory
from payments.models import CheckoutPayment


class CheckoutPaymentFactory(factory.django.DjangoModelFactory):
    """A PENDING card payment as `payments.services.payment_create` leaves it (no Stripe
    call, no session yet unless given one)."""

    class Meta:
        model = CheckoutPayment

    kind = "order"
    payer = factory.SubFactory(UserFactory)
    amount = Decimal("25.00")
    currency = factory.LazyFunction(lambda: settings.CURRENCY)
    expires_at = factory.LazyFunction(lambda: timezone.now() + timedelta(minutes=31))
