"""The API's index, catch-alls that keep the envelope for API paths outside any route, and
Django's error handlers (400/404/500) for the rest of the site."""

from django.views.csrf import csrf_failure as django_csrf_failure
from django.views.decorators.csrf import csrf_exempt
from django.views.defaults import bad_request, page_not_found, server_error
from drf_spectacular.utils import extend_schema, inline_serializer
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from paymentflow.api.errors import error_response, is_api_path
from paymentflow.api.permissions import Public
from paymentflow.api.renderers import CamelCaseJSONRenderer

API_INDEX = {
    "name": "Payment Flow API",
    "version": "1",
    "docs": "/api/docs/",
    "redoc": "/api/redoc/",
    "schema": "/api/schema/",
    "health": "/healthz",
    "ready": "/readyz",
}


class ApiIndexView(APIView):
    """`GET /api/v1/`: where the documents and probes are (a client's first request)."""

    authentication_classes: list = []
    permission_classes = [Public]

    @extend_schema(
        operation_id="api_index",
        tags=["service"],
        summary="Where the documents are",
        description="Links to the interactive documentation (Swagger UI and ReDoc), the OpenAPI document, "
        "and the liveness and readiness probes. No token needed.",
        responses={200: inline_serializer("ApiIndex", {key: serializers.CharField() for key in API_INDEX})},
    )
    def get(self, request):
        return Response(API_INDEX)


class ErrorsInJson:
    """For a view that renders something other than JSON (the schema's YAML, the docs' HTML):
    its errors (unknown `?format=`, an Accept it cannot serve, a wrong method) are rendered
    as the envelope in JSON, like every other error under /api/, and not by the view's own
    renderer (YAML of the envelope, or a template's "404 Not Found" text)."""

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        if getattr(response, "exception", False):
            response.accepted_renderer = CamelCaseJSONRenderer()
            response.accepted_media_type = CamelCaseJSONRenderer.media_type
        return response


class SchemaView(ErrorsInJson, SpectacularAPIView):
    """`GET /api/schema/`: the OpenAPI document (YAML, or JSON with `?format=json`)."""


class SwaggerView(ErrorsInJson, SpectacularSwaggerView):
    """`GET /api/docs/`: Swagger UI."""


class RedocView(ErrorsInJson, SpectacularRedocView):
    """`GET /api/redoc/`: ReDoc."""


# Exempt: it changes nothing, and a POST to an unknown API path must be the JSON 404, not
# Django's HTML CSRF page (found by the schemathesis fuzzing: `POST /orders/null,null/cancel`).
@csrf_exempt
def api_not_found(request, *args, **kwargs):
    return error_response(
        request, status_code=404, code="NOT_FOUND", message=f"No route for {request.method} {request.path}."
    )


def handler400(request, exception=None):
    """A SuspiciousOperation or BadRequest raised past ApiExceptionMiddleware's own checks."""
    if is_api_path(request.path):
        return error_response(request, status_code=400, code="BAD_REQUEST", message="The request was malformed.")
    return bad_request(request, exception)


def handler404(request, exception=None):
    if is_api_path(request.path):
        return api_not_found(request)
    return page_not_found(request, exception)


def handler500(request):
    if is_api_path(request.path):
        return error_response(
            request,
            status_code=500,
            code="INTERNAL_ERROR",
            message="An unexpected error occurred. Quote the X-Request-ID header when reporting it.",
        )
    return server_error(request)


def csrf_failure(request, reason=""):
    """settings.CSRF_FAILURE_VIEW: the envelope on API paths (the API itself is token-based and
    CSRF-exempt; only plain Django views there can get here), Django's page elsewhere (admin)."""
    if is_api_path(request.path):
        return error_response(
            request, status_code=403, code="CSRF_FAILED", message="CSRF verification failed. Request aborted."
        )
    return django_csrf_failure(request, reason)
