from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import validate_email
from rest_framework import serializers

from accounts.emails import EMAIL_MAX_LENGTH, InvalidEmail, normalize_email
from accounts.models import User
from paymentflow.api.serializers import OptionalTextField, StrictInputSerializer


class UserSerializer(serializers.ModelSerializer):
    class Meta:
        model = User
        fields = ["id", "email", "role", "first_name", "last_name", "created_at"]
        read_only_fields = fields


class EmailAddressField(serializers.CharField):
    """An email address, validated and returned in its normal form (accounts.emails)."""

    def __init__(self, **kwargs):
        super().__init__(max_length=EMAIL_MAX_LENGTH, **kwargs)

    def to_internal_value(self, data):
        try:
            email = normalize_email(super().to_internal_value(data))
            validate_email(email)
        except InvalidEmail as exc:
            raise serializers.ValidationError(str(exc)) from exc
        except DjangoValidationError as exc:
            raise serializers.ValidationError("Enter a valid email address.") from exc
        if len(email) > EMAIL_MAX_LENGTH:  # IDNA encoding lengthens a domain
            raise serializers.ValidationError(f"Ensure this field has no more than {EMAIL_MAX_LENGTH} characters.")
        return email


class RegisterInputSerializer(StrictInputSerializer):
    email = EmailAddressField()
    password = serializers.CharField(write_only=True, trim_whitespace=False, max_length=128)
    # Only these two roles exist for self-registration: staff is never reachable from here.
    role = serializers.ChoiceField(choices=User.Role.choices)
    first_name = OptionalTextField(max_length=150)
    last_name = OptionalTextField(max_length=150)

    def validate(self, attrs):
        attrs = super().validate(attrs)
        candidate = User(email=attrs["email"], first_name=attrs["first_name"], last_name=attrs["last_name"])
        try:
            validate_password(attrs["password"], user=candidate)
        except DjangoValidationError as exc:
            raise serializers.ValidationError({"password": list(exc.messages)}) from exc
        return attrs


class LoginInputSerializer(StrictInputSerializer):
    email = serializers.CharField(max_length=EMAIL_MAX_LENGTH)  # normalised by the login service
    password = serializers.CharField(write_only=True, trim_whitespace=False, max_length=128)


class RefreshInputSerializer(StrictInputSerializer):
    refresh_token = serializers.CharField(max_length=4096)


class AuthResponseSerializer(serializers.Serializer):
    user = UserSerializer()
    access_token = serializers.CharField()
    refresh_token = serializers.CharField()


class TokenPairSerializer(serializers.Serializer):
    access_token = serializers.CharField()
    refresh_token = serializers.CharField()
