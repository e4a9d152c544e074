"""What the logs say: expected refusals are not errors, and every line carries the request id.

`django.request` does not propagate to the root logger (settings.LOGGING), so these tests read
the configured console handler's own output: what an operator sees.
"""

import io
import logging
import uuid

import pytest
from django.http import HttpResponse
from django.test import RequestFactory
from django.utils.log import log_response

from catalog.tests.factories import ProductFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def console():
    """The text the configured console handler writes during the test, for every logger."""
    handler = next(h for h in logging.getLogger("django.request").handlers if isinstance(h, logging.StreamHandler))
    stream = io.StringIO()
    previous = handler.setStream(stream)
    try:
        yield stream
    finally:
        handler.setStream(previous)


def test_a_503_gateway_not_configured_is_not_logged_as_an_error(buyer_client, console):
    product = ProductFactory()
    response = buyer_client.post(
        "/api/v1/orders", {"productId": str(product.pk), "paymentMethod": "GATEWAY"}, format="json"
    )
    assert response.status_code == 503 and response.json()["code"] == "GATEWAY_NOT_CONFIGURED"
    assert " ERROR " not in console.getvalue(), console.getvalue()


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("get", "/api/v1/orders/00000000-0000-4000-8000-000000000000", 404), ("delete", "/api/v1/auth/me", 405)],
)
def test_a_4xx_is_not_logged_as_an_error(buyer_client, console, method, path, status):
    assert getattr(buyer_client, method)(path).status_code == status
    assert " ERROR " not in console.getvalue(), console.getvalue()


def test_django_request_lines_carry_the_request_id(console):
    # Django logs a response after the middleware chain has returned (BaseHandler.get_response),
    # when RequestIDMiddleware has already left: the id is read from the request then.
    request = RequestFactory().get("/admin/broken/")
    request.request_id = uuid.uuid4().hex
    log_response("Internal Server Error: %s", request.path, response=HttpResponse(status=500), request=request)
    line = next(line for line in console.getvalue().splitlines() if "django.request" in line)
    assert f"[{request.request_id}]" in line


def test_an_unhandled_error_is_logged_once_with_its_request_id(buyer_client, console, monkeypatch):
    from accounts import views

    def explode(self, request):
        raise RuntimeError("boom")

    monkeypatch.setattr(views.MeView, "get", explode)
    response = buyer_client.get("/api/v1/auth/me", HTTP_X_REQUEST_ID="req-logged-once")
    assert response.status_code == 500
    errors = [line for line in console.getvalue().splitlines() if " ERROR " in line]
    assert len(errors) == 1, console.getvalue()
    assert "[req-logged-once]" in errors[0]


def test_apscheduler_ticks_are_quiet_and_our_job_outcomes_stay_at_info(settings):
    """The worker's log at INFO is not flooded by apscheduler's per-tick lines ("Running
    job ...", "Job ... executed successfully"), while our own job outcome lines remain."""
    assert settings.LOGGING["loggers"]["apscheduler"]["level"] == "WARNING"
    assert not logging.getLogger("apscheduler.executors.default").isEnabledFor(logging.INFO)
    assert logging.getLogger("apscheduler").isEnabledFor(logging.WARNING)
    assert logging.getLogger("paymentflow.jobs").isEnabledFor(logging.INFO)
