import json

import jwt
import pytest
from django.conf import settings
from django.test import override_settings
from rest_framework_simplejwt.tokens import AccessToken

from accounts.models import User
from accounts.tests import tokens
from accounts.tests.factories import DEFAULT_PASSWORD, UserFactory
from paymentflow.testing.assertions import assert_error

pytestmark = pytest.mark.django_db

REGISTER = "/api/v1/auth/register"
LOGIN = "/api/v1/auth/login"
REFRESH = "/api/v1/auth/refresh"
LOGOUT = "/api/v1/auth/logout"
ME = "/api/v1/auth/me"

SEED_REGISTRATION = {"email": "buyer@example.com", "password": "SecurePass123!", "role": "USER"}


def register(client, **overrides):
    return client.post(REGISTER, {**SEED_REGISTRATION, **overrides}, format="json")


class TestRegister:
    def test_seed_example_returns_user_and_tokens(self, api_client):
        response = register(api_client, firstName="Ada", lastName="Lovelace")

        assert response.status_code == 201
        body = response.json()
        assert set(body) == {"user", "accessToken", "refreshToken"}
        assert set(body["user"]) == {"id", "email", "role", "firstName", "lastName", "createdAt"}
        assert body["user"]["email"] == "buyer@example.com"
        assert body["user"]["role"] == "USER"
        assert body["user"]["firstName"] == "Ada"
        user = User.objects.get(email="buyer@example.com")
        assert user.password.startswith("md5$")  # hashed (tests use the fast hasher)
        assert not user.is_staff and not user.is_superuser

    def test_email_is_stored_lower_cased(self, api_client):
        response = register(api_client, email="  Buyer@Example.COM ")
        assert response.status_code == 201, response.json()
        assert response.json()["user"]["email"] == "buyer@example.com"

    @pytest.mark.parametrize("email", ["buyer@example.com", "BUYER@example.com", "Buyer@Example.Com"])
    def test_duplicate_email_in_any_case_is_409(self, api_client, email):
        assert register(api_client).status_code == 201
        assert_error(register(api_client, email=email), 409, "EMAIL_TAKEN")
        assert User.objects.count() == 1

    def test_weak_password_names_the_field(self, api_client):
        body = assert_error(register(api_client, password="12345678"), 400, "VALIDATION_ERROR")
        assert "password" in body["details"]
        assert not User.objects.exists()

    def test_short_password_is_refused(self, api_client):
        body = assert_error(register(api_client, password="Ab1!"), 400, "VALIDATION_ERROR")
        assert "password" in body["details"]

    @pytest.mark.parametrize("role", ["ADMIN", "STAFF", "", None])
    def test_unknown_role_is_refused(self, api_client, role):
        body = assert_error(register(api_client, role=role), 400, "VALIDATION_ERROR")
        assert "role" in body["details"]

    @pytest.mark.parametrize("extra", [{"isStaff": True}, {"isSuperuser": True}])
    def test_registration_cannot_create_staff(self, api_client, extra):
        assert_error(register(api_client, **extra), 400, "VALIDATION_ERROR")
        assert not User.objects.filter(is_staff=True).exists()
        assert not User.objects.filter(is_superuser=True).exists()

    def test_missing_fields_are_named_in_camel_case(self, api_client):
        body = assert_error(api_client.post(REGISTER, {}, format="json"), 400, "VALIDATION_ERROR")
        assert {"email", "password", "role"} <= set(body["details"])

    def test_bad_email_is_refused(self, api_client):
        body = assert_error(register(api_client, email="not-an-email"), 400, "VALIDATION_ERROR")
        assert "email" in body["details"]

    def test_a_merchant_can_register(self, api_client):
        response = register(api_client, email="shop@example.com", role="MERCHANT")
        assert response.status_code == 201
        assert response.json()["user"]["role"] == "MERCHANT"


class TestLogin:
    def test_login_returns_user_and_tokens(self, api_client):
        register(api_client)
        response = api_client.post(LOGIN, {"email": "Buyer@Example.com", "password": "SecurePass123!"}, format="json")
        assert response.status_code == 200
        body = response.json()
        assert body["user"]["email"] == "buyer@example.com"
        assert body["accessToken"] and body["refreshToken"]

    def test_wrong_password_is_401(self, api_client):
        register(api_client)
        response = api_client.post(LOGIN, {"email": "buyer@example.com", "password": "WrongPass123!"}, format="json")
        body = assert_error(response, 401, "INVALID_CREDENTIALS")
        assert "SecurePass" not in json.dumps(body)

    def test_unknown_email_is_the_same_401(self, api_client):
        response = api_client.post(LOGIN, {"email": "nobody@example.com", "password": "x" * 12}, format="json")
        assert_error(response, 401, "INVALID_CREDENTIALS")

    def test_inactive_user_cannot_log_in(self, api_client):
        UserFactory(email="gone@example.com", is_active=False)
        response = api_client.post(LOGIN, {"email": "gone@example.com", "password": DEFAULT_PASSWORD}, format="json")
        assert_error(response, 401, "INVALID_CREDENTIALS")

    def test_stale_bearer_token_does_not_block_login(self, api_client):
        register(api_client)
        api_client.credentials(HTTP_AUTHORIZATION="Bearer garbage")
        response = api_client.post(LOGIN, {"email": "buyer@example.com", "password": "SecurePass123!"}, format="json")
        assert response.status_code == 200


def _refusal(response) -> dict:
    """An error body without what differs per request (the timestamp)."""
    body = assert_error(response, 401, "INVALID_CREDENTIALS")
    return {key: value for key, value in body.items() if key != "timestamp"} | {"headers": _headers(response)}


def _headers(response) -> dict:
    return {name: value for name, value in response.items() if name.lower() not in ("x-request-id", "date")}


class TestStaffCannotUseTheApi:
    """Staff work in the back office (/admin/); the API's login answers a staff account with
    the wrong-password 401, so it does not even tell that the account exists."""

    @pytest.mark.parametrize(
        "flags", [{"is_staff": True}, {"is_superuser": True}, {"is_staff": True, "is_superuser": True}]
    )
    def test_a_staff_login_is_the_wrong_password_401(self, api_client, flags):
        UserFactory(email="ops@example.com", **flags)
        UserFactory(email="buyer@example.com")
        right = api_client.post(LOGIN, {"email": "ops@example.com", "password": DEFAULT_PASSWORD}, format="json")
        wrong = api_client.post(LOGIN, {"email": "buyer@example.com", "password": "WrongPass123!"}, format="json")
        unknown = api_client.post(LOGIN, {"email": "nobody@example.com", "password": DEFAULT_PASSWORD}, format="json")
        assert _refusal(right) == _refusal(wrong) == _refusal(unknown)
        assert "accessToken" not in right.content.decode()

    def test_the_demo_and_createsuperuser_admin_cannot_log_in(self, api_client, staff):
        response = api_client.post(LOGIN, {"email": "staff@example.com", "password": "StaffPass123!"}, format="json")
        assert_error(response, 401, "INVALID_CREDENTIALS")

    @pytest.mark.parametrize("flag", ["is_staff", "is_superuser"])
    def test_a_refresh_token_of_a_user_later_made_staff_is_refused(self, api_client, flag):
        refresh = register(api_client).json()["refreshToken"]
        User.objects.filter(email="buyer@example.com").update(**{flag: True})
        assert_error(api_client.post(REFRESH, {"refreshToken": refresh}, format="json"), 401, "TOKEN_NOT_VALID")

    @pytest.mark.parametrize("flag", ["is_staff", "is_superuser"])
    def test_an_access_token_of_a_user_later_made_staff_is_refused(self, api_client, flag):
        access = register(api_client).json()["accessToken"]
        api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
        assert api_client.get(ME).status_code == 200
        User.objects.filter(email="buyer@example.com").update(**{flag: True})
        assert_error(api_client.get(ME), 401, "TOKEN_NOT_VALID")


class TestTokens:
    def test_access_token_claims_and_lifetimes(self, api_client):
        body = register(api_client).json()
        access = AccessToken(body["accessToken"])
        assert access["sub"] == body["user"]["id"]
        assert access["email"] == "buyer@example.com"
        assert access["role"] == "USER"
        assert access["exp"] - access["iat"] == 15 * 60
        refresh = jwt.decode(body["refreshToken"], options={"verify_signature": False})
        assert refresh["exp"] - refresh["iat"] == 7 * 24 * 3600

    def test_me_returns_the_user(self, api_client):
        body = register(api_client).json()
        api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {body['accessToken']}")
        response = api_client.get(ME)
        assert response.status_code == 200
        assert response.json() == body["user"]

    def test_me_without_token_is_401(self, api_client):
        response = api_client.get(ME)
        assert_error(response, 401, "NOT_AUTHENTICATED")
        assert response.headers["WWW-Authenticate"].startswith("Bearer")

    @pytest.mark.parametrize(
        "forge", [tokens.tampered, tokens.expired, tokens.alg_none, tokens.signed_with_another_key]
    )
    def test_forged_or_expired_token_is_401(self, api_client, forge):
        user = User.objects.get(pk=register(api_client).json()["user"]["id"])
        api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {forge(user)}")
        assert_error(api_client.get(ME), 401, "TOKEN_NOT_VALID")

    def test_refresh_token_is_not_an_access_token(self, api_client):
        refresh = register(api_client).json()["refreshToken"]
        api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {refresh}")
        assert_error(api_client.get(ME), 401, "TOKEN_NOT_VALID")


class TestRefreshAndLogout:
    def test_refresh_rotates_and_the_old_token_stops_working(self, api_client):
        first = register(api_client).json()["refreshToken"]
        response = api_client.post(REFRESH, {"refreshToken": first}, format="json")
        assert response.status_code == 200
        body = response.json()
        assert set(body) == {"accessToken", "refreshToken"}
        assert body["refreshToken"] != first
        assert AccessToken(body["accessToken"])["email"] == "buyer@example.com"

        assert_error(api_client.post(REFRESH, {"refreshToken": first}, format="json"), 401, "TOKEN_NOT_VALID")
        # The rotated token still works once.
        assert api_client.post(REFRESH, {"refreshToken": body["refreshToken"]}, format="json").status_code == 200

    def test_access_token_cannot_refresh(self, api_client):
        access = register(api_client).json()["accessToken"]
        assert_error(api_client.post(REFRESH, {"refreshToken": access}, format="json"), 401, "TOKEN_NOT_VALID")

    def test_garbage_refresh_token_is_401(self, api_client):
        assert_error(api_client.post(REFRESH, {"refreshToken": "nope"}, format="json"), 401, "TOKEN_NOT_VALID")

    def test_missing_refresh_token_is_400(self, api_client):
        body = assert_error(api_client.post(REFRESH, {}, format="json"), 400, "VALIDATION_ERROR")
        assert "refreshToken" in body["details"]

    def test_logout_then_refresh_is_401(self, api_client):
        tokens = register(api_client).json()
        api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens['accessToken']}")
        response = api_client.post(LOGOUT, {"refreshToken": tokens["refreshToken"]}, format="json")
        assert response.status_code == 204
        assert response.content == b""
        # Logging out twice is fine; refreshing is not.
        assert api_client.post(LOGOUT, {"refreshToken": tokens["refreshToken"]}, format="json").status_code == 204
        api_client.credentials()
        assert_error(
            api_client.post(REFRESH, {"refreshToken": tokens["refreshToken"]}, format="json"), 401, "TOKEN_NOT_VALID"
        )

    def test_logout_needs_authentication(self, api_client):
        tokens = register(api_client).json()
        assert_error(
            api_client.post(LOGOUT, {"refreshToken": tokens["refreshToken"]}, format="json"), 401, "NOT_AUTHENTICATED"
        )

    def test_cannot_log_out_another_users_token(self, api_client, client_for):
        victim = register(api_client).json()
        attacker = client_for(UserFactory())
        response = attacker.post(LOGOUT, {"refreshToken": victim["refreshToken"]}, format="json")
        assert_error(response, 401, "TOKEN_NOT_VALID")
        assert api_client.post(REFRESH, {"refreshToken": victim["refreshToken"]}, format="json").status_code == 200


class TestThrottling:
    @override_settings(AUTH_THROTTLE_RATE="3/minute")
    def test_login_is_throttled_per_address(self, api_client):
        payload = {"email": "buyer@example.com", "password": "WrongPass123!"}
        statuses = [api_client.post(LOGIN, payload, format="json").status_code for _ in range(3)]
        assert statuses == [401, 401, 401]
        response = api_client.post(LOGIN, payload, format="json")
        body = assert_error(response, 429, "THROTTLED")
        assert int(response.headers["Retry-After"]) > 0
        assert body["error"] == "Too Many Requests"
        # Another client address is counted apart.
        other = api_client.post(LOGIN, payload, format="json", REMOTE_ADDR="10.9.8.7")
        assert other.status_code == 401

    @override_settings(AUTH_THROTTLE_RATE="2/minute")
    def test_register_is_throttled(self, api_client):
        assert register(api_client, email="a@example.com").status_code == 201
        assert register(api_client, email="b@example.com").status_code == 201
        assert_error(register(api_client, email="c@example.com"), 429, "THROTTLED")
        assert not User.objects.filter(email="c@example.com").exists()

    @override_settings(AUTH_THROTTLE_RATE="2/minute")
    def test_counters_live_in_the_shared_cache(self, api_client):
        assert "RedisCache" in settings.CACHES["default"]["BACKEND"]
        from django.core.cache import cache

        register(api_client, email="a@example.com")
        assert cache.keys("throttle:*")  # django-redis: the counter is in Redis, for every process
