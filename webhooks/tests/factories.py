import factory

from accounts.tests.factories import MerchantFactory
from webhooks.endpoints import new_endpoint_secret
from webhooks.models import WebhookEndpoint


class WebhookEndpointFactory(factory.django.DjangoModelFactory):
    """An endpoint saved as is (no URL check: tests point them at their local receiver)."""

    class Meta:
        model = WebhookEndpoint

    merchant = factory.SubFactory(MerchantFactory)
    url = "https://hooks.example.com/payment-flow"
    events = factory.LazyFunction(list)
    secret = factory.LazyFunction(new_endpoint_secret)
