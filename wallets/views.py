from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema, extend_schema_view
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
    @extend_schema(
        responses={200: WalletSerializer},
        tags=["wallet"],
        summary="The caller's wallet",
        description="Returns the caller's wallet: balance, currency and whether staff locked it (a locked "
        "wallet refuses every debit and credit with 403 `WALLET_LOCKED`).",
    )
    def get(self, request):
        return Response(WalletSerializer(services.wallet_get_or_create(user=request.user)).data)


class DepositView(APIView):
    @extend_schema(
        request=AmountInputSerializer,
        responses={200: WalletMovementSerializer},
        tags=["wallet"],
        summary="Deposit into the wallet",
        description="Credits the caller's wallet with `amount` and returns the wallet and the DEPOSIT "
        "transaction. Above the deployment's maximum (default 10000.00) is 400 `INVALID_DEPOSIT_AMOUNT`; "
        "a deployment that takes money by card only answers 403 `DIRECT_DEPOSITS_DISABLED` (use top-ups). "
        "Send an `Idempotency-Key` to retry safely.",
    )
    @idempotent
    def post(self, request):
        data = AmountInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        wallet = services.wallet_get_or_create(user=request.user)
        movement = services.wallet_direct_deposit(wallet=wallet, **data.validated_data)
        return Response(_movement_payload(movement, wallet))


class WithdrawView(APIView):
    @extend_schema(
        request=AmountInputSerializer,
        responses={200: WalletMovementSerializer},
        tags=["wallet"],
        summary="Withdraw from the wallet",
        description="Debits the caller's wallet by `amount` and returns the wallet and the WITHDRAWAL "
        "transaction. More than the balance is 400 `INSUFFICIENT_FUNDS`; below the deployment's minimum "
        "(default 1.00) is 400 `INVALID_WITHDRAWAL_AMOUNT`. Send an `Idempotency-Key` to retry safely.",
    )
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


@extend_schema_view(
    get=extend_schema(
        tags=["wallet"],
        summary="The wallet's transactions",
        description="Lists every movement of the caller's wallet, newest first, paged (`page`, `limit`), "
        "optionally of one `type`. Each entry shows the amount, the balance before and after, and what it "
        "refers to (`referenceType`, `referenceId`, e.g. an order).",
    )
)
class TransactionListView(ListAPIView):
    serializer_class = TransactionSerializer
    filterset_class = TransactionFilter

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation
            return LedgerEntry.objects.none()
        return selectors.ledger_entries_for(user=self.request.user)


@extend_schema_view(
    get=extend_schema(
        tags=["wallet"],
        summary="The caller's card top-ups",
        description="Lists the caller's card top-ups, newest first, paged (`page`, `limit`), with their "
        "status: PENDING until paid, then COMPLETED (the wallet credited), FAILED or EXPIRED.",
    )
)
class TopUpListCreateView(ListAPIView):
    """`GET` the caller's card top-ups; `POST` starts one (Stripe Checkout)."""

    serializer_class = TopUpSerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation
            return TopUp.objects.none()
        return selectors.topups_for(user=self.request.user)

    @extend_schema(
        request=TopUpInputSerializer,
        responses={201: TopUpSerializer},
        tags=["wallet"],
        summary="Top up the wallet by card",
        description="Starts a card payment of `amount` through Stripe Checkout: send the buyer to "
        "`checkoutUrl`. The wallet is credited (a DEPOSIT) once Stripe confirms the payment, exactly once. "
        "503 `GATEWAY_NOT_CONFIGURED` when the deployment takes no cards; 502 `GATEWAY_ERROR` when Stripe "
        "failed (retry with the same `Idempotency-Key`).",
    )
    @idempotent(multi_step=True)  # a Stripe call sits between its two transactions
    def post(self, request):
        data = TopUpInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        topup = topups.topup_create(user=request.user, amount=data.validated_data["amount"])
        return Response(TopUpSerializer(topup).data, status=status.HTTP_201_CREATED)
