from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.generics import ListAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from paymentflow.api.idempotency import idempotent
from paymentflow.api.serializers import blank_query_parameters
from wallets import selectors, services, topups
from wallets.models import LedgerEntry, TopUp
from wallets.serializers import (
    AmountInputSerializer,
    TopUpInputSerializer,
    TopUpSerializer,
    TransactionSerializer,
    WalletMovementSerializer,
    WalletSerializer,
)


def _movement_payload(movement, wallet) -> dict:
    return WalletMovementSerializer(
        {"wallet": movement.wallet_for(wallet), "transaction": movement.leg_for(wallet)}
    ).data


class WalletView(APIView):
    @extend_schema(responses={200: WalletSerializer}, tags=["wallet"])
    def get(self, request):
        return Response(WalletSerializer(services.wallet_get_or_create(user=request.user)).data)


class DepositView(APIView):
    @extend_schema(request=AmountInputSerializer, responses={200: WalletMovementSerializer}, tags=["wallet"])
    @idempotent
    def post(self, request):
        data = AmountInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        wallet = services.wallet_get_or_create(user=request.user)
        movement = services.wallet_direct_deposit(wallet=wallet, **data.validated_data)
        return Response(_movement_payload(movement, wallet))


class WithdrawView(APIView):
    @extend_schema(request=AmountInputSerializer, responses={200: WalletMovementSerializer}, tags=["wallet"])
    @idempotent
    def post(self, request):
        data = AmountInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        wallet = services.wallet_get_or_create(user=request.user)
        movement = services.wallet_withdraw(wallet=wallet, **data.validated_data)
        return Response(_movement_payload(movement, wallet))


class TransactionFilter(filters.FilterSet):
    type = filters.ChoiceFilter(choices=LedgerEntry.Type.choices)

    class Meta:
        model = LedgerEntry
        fields = ["type"]

    def is_valid(self):
        valid = super().is_valid()
        for name, errors in blank_query_parameters(self.data, self.filters).items():
            self.form.add_error(name, errors)
        return valid and not self.form.errors


@extend_schema(tags=["wallet"])
class TransactionListView(ListAPIView):
    serializer_class = TransactionSerializer
    filterset_class = TransactionFilter

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation
            return LedgerEntry.objects.none()
        return selectors.ledger_entries_for(user=self.request.user)


@extend_schema(tags=["wallet"])
class TopUpListCreateView(ListAPIView):
    """`GET` the caller's card top-ups; `POST` starts one (Stripe Checkout)."""

    serializer_class = TopUpSerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation
            return TopUp.objects.none()
        return selectors.topups_for(user=self.request.user)

    @extend_schema(request=TopUpInputSerializer, responses={201: TopUpSerializer})
    @idempotent(multi_step=True)  # a Stripe call sits between its two transactions
    def post(self, request):
        data = TopUpInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        topup = topups.topup_create(user=request.user, amount=data.validated_data["amount"])
        return Response(TopUpSerializer(topup).data, status=status.HTTP_201_CREATED)
