"""The API's authentication: simplejwt's Bearer tokens, with the scheme name compared
case-insensitively, as HTTP requires (RFC 9110, 11.1): `bearer <token>` is `Bearer <token>`.
Staff accounts never use the API (accounts.services.user_login): a token issued before its
user was made staff stops working at once, not when it expires."""

from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme
from rest_framework_simplejwt import authentication
from rest_framework_simplejwt.exceptions import InvalidToken

from accounts.services import is_staff_account

# {b"bearer": b"Bearer"}: each configured scheme (SIMPLE_JWT AUTH_HEADER_TYPES) by its lower case.
_SCHEMES = {scheme.lower(): scheme for scheme in authentication.AUTH_HEADER_TYPE_BYTES}


class JWTAuthentication(authentication.JWTAuthentication):
    def get_raw_token(self, header: bytes) -> bytes | None:
        parts = header.split(None, 1)
        if parts and parts[0].lower() in _SCHEMES:
            header = b" ".join([_SCHEMES[parts[0].lower()], *parts[1:]])
        return super().get_raw_token(header)

    def get_user(self, validated_token):
        user = super().get_user(validated_token)  # the one query: the user's row, read anyway
        if is_staff_account(user):
            raise InvalidToken()
        return user


class JWTScheme(SimpleJWTScheme):
    """Documents `JWTAuthentication` in the OpenAPI schema as simplejwt's own (`jwtAuth`)."""

    target_class = JWTAuthentication
