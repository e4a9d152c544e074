"""Brute-force protection of the back office's login (django-axes), and only of it.

Staff can move money from the admin, so its login locks out after `AXES_FAILURE_LIMIT`
failures, counted by account and, separately, by client address (settings: the lockout
parameters, the cool-off). Failed attempts are stored (axes' database handler) and shown to
staff under "Axes" in the admin; README, "Back office", says how to unlock.

The API's JWT login is not counted here: it has its own per-address throttle
(paymentflow.api.throttling), and a failed API login must not lock a staff member out of the
back office. These are the adaptations axes needs for that and for our email login.
"""

from axes.backends import AxesStandaloneBackend
from axes.handlers.database import AxesDatabaseHandler
from rest_framework.throttling import BaseThrottle

from accounts.emails import InvalidEmail, normalize_email


class BackOfficeLoginBackend(AxesStandaloneBackend):
    """Refuses a locked-out back-office login; says nothing about a login made without a
    request (axes' own backend raises then: the test client's `login()`, scripts)."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)


class BackOfficeAxesHandler(AxesDatabaseHandler):
    """Axes' database handler, recording only logins made through the admin's login page."""

    def _is_back_office(self, request) -> bool:
        return request is not None and self.is_admin_request(request)

    def user_login_failed(self, sender, credentials, request=None, **kwargs):
        if self._is_back_office(request):
            super().user_login_failed(sender, credentials, request, **kwargs)

    def user_logged_in(self, sender, request, user, **kwargs):
        if self._is_back_office(request):
            super().user_logged_in(sender, request, user, **kwargs)

    def user_logged_out(self, sender, request, user, **kwargs):
        if self._is_back_office(request):
            super().user_logged_out(sender, request, user, **kwargs)


def attempted_email(request, credentials) -> str:
    """AXES_USERNAME_CALLABLE: the address typed in (the admin's form calls the field
    `username`), in its normal form, so `Root@Example.com` and `root@example.com` count as
    one account."""
    typed = (credentials or {}).get("username") or (credentials or {}).get("email")
    if typed is None:
        typed = request.POST.get("username", "")
    try:
        return normalize_email(typed)
    except InvalidEmail:
        return typed


def client_address(request) -> str:
    """AXES_CLIENT_IP_CALLABLE: the client address as the API's throttle sees it (REMOTE_ADDR,
    or X-Forwarded-For behind NUM_PROXIES proxies)."""
    return BaseThrottle().get_ident(request)
