"""The Authorization header's scheme, and the one rule of logout."""

from datetime import timedelta

import pytest
from rest_framework_simplejwt.tokens import RefreshToken

from accounts.services import user_issue_tokens
from accounts.tests.factories import UserFactory
from paymentflow.testing.assertions import assert_error

pytestmark = pytest.mark.django_db

ME = "/api/v1/auth/me"
LOGOUT = "/api/v1/auth/logout"
REFRESH = "/api/v1/auth/refresh"


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "bEaReR"])
def test_the_bearer_scheme_is_case_insensitive(api_client, scheme):
    user = UserFactory()
    api_client.credentials(HTTP_AUTHORIZATION=f"{scheme} {user_issue_tokens(user=user)['access_token']}")
    response = api_client.get(ME)
    assert response.status_code == 200, response.content
    assert response.json()["id"] == str(user.pk)


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Token abc", "Bearer", "Bearerx abc"])
def test_other_schemes_are_still_not_credentials(api_client, header):
    api_client.credentials(HTTP_AUTHORIZATION=header)
    assert api_client.get(ME).status_code == 401


class TestLogoutRule:
    """204 whenever the token is a refresh token issued to the caller, whatever its state (live,
    already revoked, expired): afterwards it cannot be used. 401 TOKEN_NOT_VALID when it is not
    one (garbage, forged, an access token, another user's): the client sent the wrong token."""

    @pytest.fixture
    def user(self):
        return UserFactory()

    @pytest.fixture
    def client(self, client_for, user):
        return client_for(user)

    def logout(self, client, token):
        return client.post(LOGOUT, {"refreshToken": token}, format="json")

    def test_a_live_token_is_revoked(self, client, api_client, user):
        token = user_issue_tokens(user=user)["refresh_token"]
        assert self.logout(client, token).status_code == 204
        assert_error(api_client.post(REFRESH, {"refreshToken": token}, format="json"), 401, "TOKEN_NOT_VALID")

    def test_an_already_revoked_token_is_204(self, client, user):
        token = user_issue_tokens(user=user)["refresh_token"]
        assert [self.logout(client, token).status_code for _ in range(2)] == [204, 204]

    def test_an_expired_token_of_the_caller_is_204(self, client, user):
        refresh = RefreshToken.for_user(user)
        refresh.set_exp(lifetime=-timedelta(seconds=1))
        assert self.logout(client, str(refresh)).status_code == 204

    @pytest.mark.parametrize("kind", ["garbage", "access", "another-users", "another-users-expired"])
    def test_a_token_that_is_not_the_callers_refresh_token_is_401(self, client, user, api_client, kind):
        other = UserFactory()
        expired = RefreshToken.for_user(other)
        expired.set_exp(lifetime=-timedelta(seconds=1))
        token = {
            "garbage": "not-a-token",
            "access": user_issue_tokens(user=user)["access_token"],
            "another-users": user_issue_tokens(user=other)["refresh_token"],
            "another-users-expired": str(expired),
        }[kind]
        assert_error(self.logout(client, token), 401, "TOKEN_NOT_VALID")
        if kind == "another-users":  # and it still works for its owner
            assert api_client.post(REFRESH, {"refreshToken": token}, format="json").status_code == 200
