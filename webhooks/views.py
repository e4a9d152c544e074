from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from paymentflow.api.permissions import Public
from paymentflow.api.serializers import ErrorSerializer
from webhooks.services import stripe_event_receive

SIGNATURE_HEADER = "Stripe-Signature"


class StripeWebhookView(APIView):
    """`POST /webhooks/stripe`: Stripe's events, verified on the raw body.

    No JWT, no throttle, no CSRF (DRF views are exempt and no session authentication
    runs), and DRF never parses the body: the signature is computed over the exact bytes
    Stripe sent, so they are read from the Django request untouched.
    """

    authentication_classes: list = []
    permission_classes = [Public]
    throttle_classes: list = []
    parser_classes: list = []

    @extend_schema(
        operation_id="stripe_webhook",
        tags=["webhooks"],
        auth=[],
        summary="Stripe webhook endpoint",
        description=(
            "Called by Stripe, not by API clients. The body is a Stripe event, verified with "
            "`Stripe-Signature` against `STRIPE_WEBHOOK_SECRET`. Each event takes effect at most "
            "once (deduplicated on its id), however many times and however concurrently it is "
            "delivered. Handled: `checkout.session.completed` (when paid), "
            "`checkout.session.async_payment_succeeded`, `checkout.session.async_payment_failed`, "
            "`checkout.session.expired`; other types are acknowledged and ignored. A handling "
            "error is answered 500 so that Stripe retries."
        ),
        parameters=[
            OpenApiParameter(
                SIGNATURE_HEADER,
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                required=True,
                description="`t=<unix time>,v1=<HMAC-SHA256>`, as Stripe signs; older than 300 s is refused.",
            )
        ],
        request={"application/json": OpenApiTypes.OBJECT},
        responses={
            200: inline_serializer("WebhookReceived", {"received": serializers.BooleanField()}),
            400: OpenApiResponse(ErrorSerializer, description="Missing, bad or stale signature; not an event."),
            500: OpenApiResponse(ErrorSerializer, description="Handling failed; Stripe retries."),
            503: OpenApiResponse(ErrorSerializer, description="STRIPE_WEBHOOK_SECRET is not set."),
        },
    )
    def post(self, request):
        stripe_event_receive(
            payload=request._request.body,  # the raw bytes; DRF's parsers never see them
            signature_header=request.headers.get(SIGNATURE_HEADER),
        )
        return Response({"received": True})
