"""Forged and unusable access tokens, for the auth tests and the security suite.

Each takes a user and returns a Bearer token string that the API must refuse (401).
"""

import base64
import json
from datetime import timedelta

import jwt
from rest_framework_simplejwt.tokens import AccessToken

from accounts.models import User
from accounts.services import user_issue_tokens

ANOTHER_KEY = "another-secret-key-that-is-long-enough-for-hs256"


def b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def tampered(user) -> str:
    """A real token whose payload was edited (role raised to MERCHANT); the signature no longer matches."""
    header, payload, signature = user_issue_tokens(user=user)["access_token"].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["role"] = "MERCHANT"
    return f"{header}.{b64(claims)}.{signature}"


def expired(user) -> str:
    token = AccessToken.for_user(user)
    token.set_exp(lifetime=-timedelta(seconds=1))
    return str(token)


def signed_with_another_key(user) -> str:
    claims = {"sub": str(user.pk), "token_type": "access", "exp": 9999999999, "jti": "abc", "role": user.role}
    return jwt.encode(claims, ANOTHER_KEY, algorithm="HS256")


def alg_none(user) -> str:
    claims = {"sub": str(user.pk), "token_type": "access", "exp": 9999999999, "jti": "x", "role": user.role}
    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}."


def refresh_as_access(user) -> str:
    return user_issue_tokens(user=user)["refresh_token"]


def of_an_inactive_user(user) -> str:
    """A valid token whose user is then deactivated (the user is changed in the database)."""
    token = user_issue_tokens(user=user)["access_token"]
    User.objects.filter(pk=user.pk).update(is_active=False)
    return token


BAD_TOKENS = {
    "tampered": tampered,
    "expired": expired,
    "other-key": signed_with_another_key,
    "alg-none": alg_none,
    "refresh-as-access": refresh_as_access,
    "inactive-user": of_an_inactive_user,
}
