import uuid

from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.db import models
from django.db.models.functions import Lower

from accounts.emails import EMAIL_MAX_LENGTH, InvalidEmail, normalize_email


class UserManager(BaseUserManager):
    use_in_migrations = True

    def get_by_natural_key(self, username):
        try:
            email = normalize_email(username)
        except InvalidEmail:  # no such address can exist: a failed login, like an unknown one
            raise self.model.DoesNotExist() from None
        return self.get(email=email)

    def create_user(self, email, password=None, **extra_fields):
        if not email:
            raise ValueError("An email address is required.")
        user = self.model(email=normalize_email(email), **extra_fields)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_superuser(self, email, password=None, **extra_fields):
        extra_fields.update(is_staff=True, is_superuser=True)
        return self.create_user(email, password, **extra_fields)


class User(AbstractBaseUser, PermissionsMixin):
    """A buyer (USER) or a seller (MERCHANT); staff are made only by `createsuperuser`/admin."""

    class Role(models.TextChoices):
        USER = "USER", "User"
        MERCHANT = "MERCHANT", "Merchant"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Always in its normal form (accounts.emails), so the plain unique index is unique per address.
    email = models.EmailField(max_length=EMAIL_MAX_LENGTH, unique=True)
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.USER)
    first_name = models.CharField(max_length=150, blank=True, default="")
    last_name = models.CharField(max_length=150, blank=True, default="")
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # Stored lower-cased, so the plain unique index is also case-insensitive.
            models.CheckConstraint(condition=models.Q(email=Lower("email")), name="user_email_lowercase"),
            models.CheckConstraint(condition=models.Q(role__in=["USER", "MERCHANT"]), name="user_role_valid"),
        ]

    def __str__(self) -> str:
        return self.email

    @property
    def is_merchant(self) -> bool:
        return self.role == self.Role.MERCHANT
