"""The back office's login locks out by account and by client address after a few failures
(django-axes), records each failure for staff, and is unlocked by a command the README names.
The API's login is not part of it (it has its own throttle)."""

import pytest
from axes.models import AccessAttempt, AccessFailureLog
from django.conf import settings
from django.core.management import call_command

from accounts.models import User
from accounts.tests.factories import DEFAULT_PASSWORD, UserFactory

pytestmark = pytest.mark.django_db

LOGIN = "/admin/login/"
LIMIT = settings.AXES_FAILURE_LIMIT


@pytest.fixture
def root():
    return User.objects.create_superuser("root@example.com", DEFAULT_PASSWORD)


def admin_login(client, email, password, address="192.0.2.1"):
    return client.post(LOGIN, {"username": email, "password": password}, REMOTE_ADDR=address)


def logged_in(client) -> bool:
    return "_auth_user_id" in client.session


def test_thirty_wrong_passwords_then_the_right_one_does_not_log_in(client, root):
    for attempt in range(30):
        admin_login(client, root.email, f"wrong-{attempt}")
    response = admin_login(client, root.email, DEFAULT_PASSWORD)
    assert response.status_code == 429
    assert "locked" in response.content.decode().lower()
    assert not logged_in(client)


def test_the_account_is_locked_whatever_the_address_and_the_spelling(client, root):
    for attempt in range(LIMIT):
        admin_login(client, "ROOT@Example.com" if attempt % 2 else root.email, "wrong", address=f"192.0.2.{attempt}")
    assert admin_login(client, root.email, DEFAULT_PASSWORD, address="198.51.100.7").status_code == 429
    assert not logged_in(client)


def test_the_address_is_locked_whatever_the_account(client, root):
    for attempt in range(LIMIT):
        admin_login(client, f"nobody{attempt}@example.com", "wrong")
    assert admin_login(client, root.email, DEFAULT_PASSWORD).status_code == 429
    assert not logged_in(client)


def test_fewer_failures_than_the_limit_still_log_in(client, root):
    for _ in range(LIMIT - 1):
        admin_login(client, root.email, "wrong")
    response = admin_login(client, root.email, DEFAULT_PASSWORD)
    assert response.status_code == 302 and logged_in(client)


def test_failures_are_recorded_for_staff_to_see(client, root):
    for _ in range(2):
        admin_login(client, root.email, "wrong", address="203.0.113.5")
    assert AccessFailureLog.objects.filter(username=root.email, ip_address="203.0.113.5").count() == 2
    client.force_login(root)
    page = client.get("/admin/axes/accessfailurelog/")
    assert page.status_code == 200 and root.email in page.content.decode()


def test_the_readme_command_unlocks_an_account(client, root):
    for _ in range(LIMIT):
        admin_login(client, root.email, "wrong")
    call_command("axes_reset_username", root.email)
    call_command("axes_reset_ip", "192.0.2.1")
    response = admin_login(client, root.email, DEFAULT_PASSWORD)
    assert response.status_code == 302 and logged_in(client)
    readme = (settings.BASE_DIR / "README.md").read_text()
    assert "axes_reset_username" in readme and "axes_reset_ip" in readme


def test_the_api_login_is_not_counted_here(api_client):
    user = UserFactory()
    for _ in range(LIMIT + 2):
        api_client.post("/api/v1/auth/login", {"email": user.email, "password": "wrong"}, format="json")
    response = api_client.post("/api/v1/auth/login", {"email": user.email, "password": DEFAULT_PASSWORD}, format="json")
    assert response.status_code == 200
    assert not AccessAttempt.objects.exists()
