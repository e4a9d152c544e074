"""Catch-alls that keep the envelope for API paths outside any route, and Django's error
handlers (404/500) for the rest of the site."""

from django.views.defaults import page_not_found, server_error

from paymentflow.api.errors import error_response, is_api_path


def api_not_found(request, *args, **kwargs):
    return error_response(
        request, status_code=404, code="NOT_FOUND", message=f"No route for {request.method} {request.path}."
    )


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
