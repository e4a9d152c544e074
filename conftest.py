"""Fixtures shared by every app's tests: API clients, users, and a clean cache per test."""

import os

import pytest
from rest_framework.test import APIClient

from accounts.services import user_issue_tokens
from accounts.tests.factories import MerchantFactory, UserFactory
from paymentflow.testing.isolation import clear_cache, drop_abandoned_test_databases

pytest_plugins = ["paymentflow.testing.fixtures", "payments.testing.fixtures"]


def pytest_sessionstart(session):
    if "PYTEST_XDIST_WORKER" not in os.environ:  # once per run, before any test database exists
        drop_abandoned_test_databases()


@pytest.fixture(autouse=True)
def _clean_cache():
    # Only this run's (and this xdist worker's) keys: settings/test.py gives them a prefix.
    clear_cache()
    yield


@pytest.fixture
def api_client():
    return APIClient()


@pytest.fixture
def buyer(db):
    return UserFactory()


@pytest.fixture
def merchant(db):
    return MerchantFactory()


@pytest.fixture
def staff(db):
    """A superuser, for the back-office tests."""
    from accounts.models import User

    return User.objects.create_superuser("staff@example.com", "StaffPass123!")


@pytest.fixture
def client_for():
    """client_for(user) -> an APIClient sending that user's Bearer access token."""

    def make(user):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {user_issue_tokens(user=user)['access_token']}")
        return client

    return make


@pytest.fixture
def buyer_client(buyer, client_for):
    return client_for(buyer)


@pytest.fixture
def merchant_client(merchant, client_for):
    return client_for(merchant)
