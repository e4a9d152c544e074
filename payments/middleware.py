"""One deadline per request for every Stripe call it makes (docs/ARCHITECTURE.md,
"Operations: timeouts")."""

from django.conf import settings

from payments import gateway


class StripeDeadlineMiddleware:
    """Whatever a request asks of Stripe (a refund and then the list of refunds; a session
    and then its expiry...), all of it ends within STRIPE_REQUEST_DEADLINE_SECONDS of the
    request's start: below gunicorn's worker timeout, so a worker is never killed mid-call,
    and HAProxy's server timeout. A call that finds the budget spent is not made, and its
    outcome is unknown (a refund stays in progress, for the sweep)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        with gateway.deadline(settings.STRIPE_REQUEST_DEADLINE_SECONDS):
            return self.get_response(request)
