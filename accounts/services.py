"""Every write on accounts: registration, tokens, refresh rotation, logout."""

from django.contrib.auth import authenticate
from django.db import IntegrityError, transaction
from rest_framework_simplejwt.exceptions import TokenBackendError, TokenBackendExpiredToken, TokenError
from rest_framework_simplejwt.state import token_backend
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken
from rest_framework_simplejwt.tokens import RefreshToken
from rest_framework_simplejwt.utils import aware_utcnow, datetime_from_epoch, datetime_to_epoch

from accounts.emails import InvalidEmail, normalize_email
from accounts.exceptions import EmailTaken, InvalidCredentials, TokenNotValid
from accounts.models import User
from accounts.signals import user_registered


def user_register(*, email: str, password: str, role: str, first_name: str = "", last_name: str = "") -> User:
    """Create a buyer or merchant (never staff) together with everything a user owns."""
    email = normalize_email(email)
    try:
        with transaction.atomic():
            if User.objects.filter(email=email).exists():
                raise EmailTaken()
            user = User(email=email, role=role, first_name=first_name, last_name=last_name)
            user.set_password(password)
            user.save()
            user_registered.send(sender=User, user=user)  # wallets create the user's wallet
    except IntegrityError as exc:  # two registrations of one email at the same moment
        raise EmailTaken() from exc
    return user


def user_issue_tokens(*, user: User) -> dict:
    """A fresh access/refresh pair carrying `sub`, `email` and `role`."""
    refresh = RefreshToken.for_user(user)
    refresh["email"] = user.email
    refresh["role"] = user.role
    return {"access_token": str(refresh.access_token), "refresh_token": str(refresh)}


def user_login(*, email: str, password: str, request=None) -> User:
    try:
        email = normalize_email(email)
    except InvalidEmail:
        raise InvalidCredentials() from None  # no account can have that address
    user = authenticate(request, username=email, password=password)
    # Staff work in the back office (/admin/), never through the API: their right password
    # gets the wrong-password answer, which does not even tell that the account exists.
    if user is None or is_staff_account(user):
        raise InvalidCredentials()
    return user


def is_staff_account(user: User) -> bool:
    return user.is_staff or user.is_superuser


def _verified_refresh_payload(raw_token: str, *, allow_expired: bool = False) -> dict:
    """Signature, expiry (unless `allow_expired`) and type checked; the blacklist is the caller's business."""
    try:
        payload = token_backend.decode(raw_token, verify=True)
    except TokenBackendExpiredToken as exc:
        if not allow_expired:
            raise TokenNotValid() from exc
        # PyJWT checks the signature before the expiry: only a token we signed gets here.
        payload = token_backend.decode(raw_token, verify=False)
    except (TokenBackendError, TokenError) as exc:
        raise TokenNotValid() from exc
    if payload.get("token_type") != "refresh" or not payload.get("jti") or not payload.get("sub"):
        raise TokenNotValid()
    return payload


def token_refresh(*, refresh_token: str) -> dict:
    """Rotate: the presented refresh token is blacklisted and a new pair issued.

    The token's outstanding row is locked first, so two concurrent refreshes with one
    token cannot both succeed.
    """
    payload = _verified_refresh_payload(refresh_token)
    with transaction.atomic():
        outstanding = OutstandingToken.objects.select_for_update(of=("self",)).filter(jti=payload["jti"]).first()
        if outstanding is None or BlacklistedToken.objects.filter(token=outstanding).exists():
            raise TokenNotValid()
        user = User.objects.filter(pk=payload["sub"], is_active=True).first()
        if user is None or is_staff_account(user):  # deactivated, or made staff since the login
            raise TokenNotValid()
        BlacklistedToken.objects.create(token=outstanding)
        return user_issue_tokens(user=user)


def token_revoke(*, user: User, refresh_token: str) -> None:
    """Logout, one rule: any refresh token we issued to the caller, whatever its state (live,
    already revoked, expired), ends unusable and the call succeeds; anything else (garbage,
    forged, an access token, another user's) is TOKEN_NOT_VALID, since the client sent the
    wrong token and its own is still alive."""
    payload = _verified_refresh_payload(refresh_token, allow_expired=True)
    if payload["sub"] != str(user.pk):
        raise TokenNotValid()
    if payload["exp"] <= datetime_to_epoch(aware_utcnow()):
        return  # expired: nothing can use it any more
    outstanding, _ = OutstandingToken.objects.get_or_create(
        jti=payload["jti"],
        defaults={"user": user, "token": refresh_token, "expires_at": datetime_from_epoch(payload["exp"])},
    )
    BlacklistedToken.objects.get_or_create(token=outstanding)
