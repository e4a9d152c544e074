from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.generics import ListAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from paymentflow.api.permissions import IsMerchant, Public
from paymentflow.api.serializers import ErrorSerializer
from webhooks import endpoints, selectors
from webhooks.models import EVENT_TYPES, WebhookDelivery, WebhookEndpoint
from webhooks.serializers import (
    WebhookDeliveryQuerySerializer,
    WebhookDeliverySerializer,
    WebhookEndpointCreatedSerializer,
    WebhookEndpointInputSerializer,
    WebhookEndpointSerializer,
)
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


# --- merchant webhook endpoints (outbound) ------------------------------------------------


class WebhookEndpointListCreateView(ListAPIView):
    """GET: the caller's endpoints. POST: register one (its secret is in this answer only)."""

    permission_classes = [IsMerchant]
    serializer_class = WebhookEndpointSerializer
    filter_backends: list = []

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation
            return WebhookEndpoint.objects.none()
        return selectors.webhook_endpoint_list(merchant=self.request.user)

    @extend_schema(
        operation_id="webhook_endpoints_list",
        tags=["webhook endpoints"],
        summary="The caller's webhook endpoints",
        description="Lists the endpoints the calling merchant registered, newest first, paged (`page`, "
        "`limit`). Secrets are never shown again after creation.",
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(
        operation_id="webhook_endpoints_create",
        request=WebhookEndpointInputSerializer,
        responses={201: WebhookEndpointCreatedSerializer},
        tags=["webhook endpoints"],
        summary="Register a webhook endpoint",
        description=(
            "Registers an https URL that receives the merchant's order events, signed per the Standard "
            "Webhooks specification. `url` must be https:// and resolve to a public address (unless the operator set "
            "`WEBHOOK_ALLOW_PRIVATE_URLS=1`): 400 `WEBHOOK_URL_NOT_ALLOWED` otherwise. `events`: any of "
            + ", ".join(f"`{t}`" for t in EVENT_TYPES)
            + "; empty or absent means all. `secret` is shown here only."
        ),
    )
    def post(self, request):
        data = WebhookEndpointInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        endpoint = endpoints.webhook_endpoint_create(merchant=request.user, **data.validated_data)
        return Response(WebhookEndpointCreatedSerializer(endpoint).data, status=status.HTTP_201_CREATED)


class WebhookEndpointDetailView(APIView):
    permission_classes = [IsMerchant]

    @extend_schema(
        operation_id="webhook_endpoints_retrieve",
        responses={200: WebhookEndpointSerializer},
        tags=["webhook endpoints"],
        summary="A webhook endpoint",
        description="Returns one of the caller's endpoints (without its secret), with `disabledReason` when "
        "it was disabled after failing for a day; another merchant's endpoint does not exist (404).",
    )
    def get(self, request, pk):
        endpoint = selectors.webhook_endpoint_get(merchant=request.user, endpoint_id=pk)
        return Response(WebhookEndpointSerializer(endpoint).data)

    @extend_schema(
        operation_id="webhook_endpoints_update",
        request=WebhookEndpointInputSerializer(partial=True),
        responses={200: WebhookEndpointSerializer},
        tags=["webhook endpoints"],
        summary="Change a webhook endpoint",
        description="Changes any of `url`, `events`, `description` and `isActive` (the URL is checked again; "
        "re-activating a disabled endpoint clears its `disabledReason`).",
    )
    def patch(self, request, pk):
        data = WebhookEndpointInputSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        endpoint = endpoints.webhook_endpoint_update(merchant=request.user, endpoint_id=pk, **data.validated_data)
        return Response(WebhookEndpointSerializer(endpoint).data)

    @extend_schema(
        operation_id="webhook_endpoints_destroy",
        responses={204: None},
        tags=["webhook endpoints"],
        summary="Delete a webhook endpoint",
        description="Deletes one of the caller's endpoints with its delivery history: nothing more is sent "
        "to it, pending retries included.",
    )
    def delete(self, request, pk):
        endpoints.webhook_endpoint_delete(merchant=request.user, endpoint_id=pk)
        return Response(status=status.HTTP_204_NO_CONTENT)


class WebhookDeliveryListView(ListAPIView):
    """The deliveries of one of the caller's endpoints, newest first."""

    permission_classes = [IsMerchant]
    serializer_class = WebhookDeliverySerializer
    filter_backends: list = []

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return WebhookDelivery.objects.none()
        query = WebhookDeliveryQuerySerializer(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        return selectors.webhook_delivery_list(
            merchant=self.request.user, endpoint_id=self.kwargs["pk"], **query.validated_data
        )

    @extend_schema(
        operation_id="webhook_endpoints_deliveries",
        parameters=[WebhookDeliveryQuerySerializer],
        tags=["webhook endpoints"],
        summary="Deliveries to a webhook endpoint",
        description="Lists the events sent (or to be sent) to one of the caller's endpoints, newest first, "
        "paged, optionally of one `status` (PENDING, SUCCEEDED, FAILED), with attempts and the last status code.",
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)
