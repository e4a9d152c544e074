from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.generics import ListAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from orders import selectors, services
from orders.models import Order
from orders.serializers import (
    OrderCreateInputSerializer,
    OrderListQuerySerializer,
    OrderRefundInputSerializer,
    OrderSalesQuerySerializer,
    OrderSerializer,
)
from paymentflow.api.idempotency import idempotent
from paymentflow.api.permissions import IsMerchant


class OrderListCreateView(ListAPIView):
    """GET: the caller's purchases. POST: buy (WALLET: completed at once; GATEWAY: pending
    with a Stripe Checkout URL)."""

    serializer_class = OrderSerializer
    filter_backends: list = []

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation
            return Order.objects.none()
        query = OrderListQuerySerializer(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        return selectors.order_list_for_buyer(user=self.request.user, **query.validated_data)

    @extend_schema(
        operation_id="orders_list",
        parameters=[OrderListQuerySerializer],
        tags=["orders"],
        summary="The caller's purchases",
        description="Lists the orders the caller placed, newest first, paged (`page`, `limit`), optionally "
        "of one `status` or `paymentMethod`.",
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(
        operation_id="orders_create",
        request=OrderCreateInputSerializer,
        responses={201: OrderSerializer},
        tags=["orders"],
        summary="Buy a product",
        description="Buys `quantity` units (1 to 100) of a product. WALLET: paid from the caller's wallet at "
        "once, the order COMPLETED, or nothing happens (400 `INSUFFICIENT_FUNDS`, `PRODUCT_OUT_OF_STOCK`...). "
        "GATEWAY: the order is PENDING with its stock reserved; send the buyer to `checkoutUrl` (Stripe "
        "Checkout); it becomes COMPLETED once Stripe confirms the payment. Send an `Idempotency-Key` to "
        "retry safely.",
    )
    @idempotent(multi_step=selectors.is_gateway_purchase_request)
    def post(self, request):
        data = OrderCreateInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        order = services.order_purchase(buyer=request.user, **data.validated_data)
        return Response(OrderSerializer(order).data, status=status.HTTP_201_CREATED)


class OrderDetailView(APIView):
    @extend_schema(
        operation_id="orders_retrieve",
        responses={200: OrderSerializer},
        tags=["orders"],
        summary="An order",
        description="Returns one order to its buyer or to the merchant of its product; to anyone else it "
        "does not exist (404).",
    )
    def get(self, request, pk):
        return Response(OrderSerializer(selectors.order_get_visible(order_id=pk, user=request.user)).data)


class MerchantSalesView(ListAPIView):
    permission_classes = [IsMerchant]
    serializer_class = OrderSerializer
    filter_backends: list = []

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Order.objects.none()
        query = OrderSalesQuerySerializer(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        return selectors.order_list_for_merchant(merchant=self.request.user, **query.validated_data)

    @extend_schema(
        operation_id="orders_merchant_sales",
        parameters=[OrderSalesQuerySerializer],
        tags=["orders"],
        summary="The caller's sales",
        description="A merchant lists the orders placed for their products, newest first, paged (`page`, "
        "`limit`), optionally of one `status`.",
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class OrderRefundView(APIView):
    @extend_schema(
        operation_id="orders_refund",
        request=OrderRefundInputSerializer,
        responses={200: OrderSerializer},
        tags=["orders"],
        summary="Refund an order",
        description="Only the merchant of the order's product may refund it: its buyer gets 403 "
        "`PERMISSION_DENIED`, anyone else 404. Only a COMPLETED order (else 409 `ORDER_NOT_REFUNDABLE`). The money "
        "goes back the way it came (to the buyer's wallet, or to the card through Stripe), the stock returns, and "
        "the order is REFUNDED. A merchant whose wallet no longer holds the amount gets 400 `INSUFFICIENT_FUNDS`. "
        "A card refund whose outcome at Stripe is unknown is answered 502 and stays in progress (`refundStatus` "
        "PENDING, the merchant's money held) until a retry or the scheduled sweep learns it from Stripe; another "
        "refund while one is being made is 409 `REFUND_IN_PROGRESS`. Send an `Idempotency-Key` to retry safely.",
    )
    @idempotent(multi_step=selectors.is_gateway_refund_request)
    def post(self, request, pk):
        data = OrderRefundInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        order = services.order_refund(order_id=pk, merchant=request.user, **data.validated_data)
        return Response(OrderSerializer(order).data)


class OrderCancelView(APIView):
    @extend_schema(
        operation_id="orders_cancel",
        request=None,
        responses={200: OrderSerializer},
        tags=["orders"],
        summary="Cancel a pending order",
        description="Only the order's buyer may cancel it: its merchant gets 403 `PERMISSION_DENIED`, anyone else "
        "404. Only while it is PENDING (an unpaid card order; else 409 `ORDER_NOT_CANCELLABLE`): its Stripe "
        "Checkout is closed and the stock returns. If Stripe says it was paid meanwhile, the order completes "
        "instead and the answer is 409, as it is while a delayed payment is still being processed.",
    )
    def post(self, request, pk):
        return Response(OrderSerializer(services.order_cancel(order_id=pk, buyer=request.user)).data)
