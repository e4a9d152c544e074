import factory

from accounts.models import User

DEFAULT_PASSWORD = "SecurePass123!"


class UserFactory(factory.django.DjangoModelFactory):
    """A buyer. Goes through the manager, so the password is hashed as at registration."""

    class Meta:
        model = User
        django_get_or_create = ("email",)

    email = factory.Sequence(lambda n: f"user{n}@example.com")
    role = User.Role.USER
    first_name = "Test"
    last_name = factory.Sequence(lambda n: f"User{n}")
    password = factory.PostGenerationMethodCall("set_password", DEFAULT_PASSWORD)

    @classmethod
    def _after_postgeneration(cls, instance, create, results=None):
        if create:
            instance.save(update_fields=["password"])


class MerchantFactory(UserFactory):
    email = factory.Sequence(lambda n: f"merchant{n}@example.com")
    role = User.Role.MERCHANT
