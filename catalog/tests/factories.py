from decimal import Decimal

import factory

from accounts.tests.factories import MerchantFactory
from catalog.models import Product


class ProductFactory(factory.django.DjangoModelFactory):
    """A product as `product_create` would make it (initial_units = starting stock)."""

    class Meta:
        model = Product

    merchant = factory.SubFactory(MerchantFactory)
    name = factory.Sequence(lambda n: f"Product {n}")
    description = "A fine product."
    price = Decimal("10.00")
    available_units = 10
    initial_units = factory.LazyAttribute(lambda o: o.available_units)
    is_active = True
