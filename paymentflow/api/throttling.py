"""Per-client-address throttles whose counters live in the shared cache (Redis in
production), so every server process counts the same attempts."""

from django.conf import settings
from django_ratelimit.core import get_usage
from rest_framework.throttling import BaseThrottle, SimpleRateThrottle

from paymentflow import metrics


class AuthRateThrottle(BaseThrottle):
    """Login and register attempts per client address, at `AUTH_THROTTLE_RATE`.

    Each attempt increments one counter per (view's `throttle_scope`, address, window)
    atomically in the cache (django-ratelimit: `add` then `incr`, i.e. SET NX EX and INCRBY
    on Redis), so any number of concurrent attempts, from any number of processes, each get
    their own count and at most the rate pass in a window; refused attempts count too. The
    windows are fixed (their ends staggered per address), so a client may spend the rate at
    the end of one window and again at the start of the next. With the cache unreachable no
    count is known and the attempt goes through (RATELIMIT_FAIL_OPEN: availability over
    strictness for login; django-redis logs the outage). The rate is read per request, so
    the operator's setting (and a test's override) always wins.
    """

    def allow_request(self, request, view):
        limit, period = SimpleRateThrottle.parse_rate(self, settings.AUTH_THROTTLE_RATE)
        # REMOTE_ADDR, or X-Forwarded-For behind NUM_PROXIES; requests with neither share one count.
        address = self.get_ident(request) or "unknown"
        scope = getattr(view, "throttle_scope", "auth")
        usage = get_usage(
            request,
            group=f"auth:{scope}",
            key=lambda group, request: address,
            rate=(limit, period),
            increment=True,
        )
        self.seconds_left = usage["time_left"] if usage else None
        allowed = usage is None or not usage["should_limit"]
        if not allowed:
            metrics.request_throttled(scope=scope)
        return allowed

    def wait(self):
        return max(1, self.seconds_left or 0)
