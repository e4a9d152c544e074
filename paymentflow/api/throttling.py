"""Per-client-address throttles whose counters live in the shared cache (Redis in
production), so every server process counts the same attempts."""

from django.conf import settings
from rest_framework.throttling import SimpleRateThrottle

from paymentflow import metrics


class AuthRateThrottle(SimpleRateThrottle):
    """Login and register attempts per client address, at `AUTH_THROTTLE_RATE`.

    Each view sets `throttle_scope`, so logins and registrations are counted apart.
    The rate is read per request (not at import) so the operator's setting always wins.
    """

    def __init__(self):
        pass  # the rate depends on the view's scope, known only in allow_request

    def allow_request(self, request, view):
        self.scope = getattr(view, "throttle_scope", "auth")
        self.rate = settings.AUTH_THROTTLE_RATE
        self.num_requests, self.duration = self.parse_rate(self.rate)
        allowed = super().allow_request(request, view)
        if not allowed:
            metrics.request_throttled(scope=self.scope)
        return allowed

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}
