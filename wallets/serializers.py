from rest_framework import serializers

from paymentflow.api.serializers import MoneyField, OptionalTextField, StrictInputSerializer
from wallets.models import LedgerEntry, TopUp, Wallet


class WalletSerializer(serializers.ModelSerializer):
    balance = serializers.DecimalField(max_digits=14, decimal_places=2, read_only=True)

    class Meta:
        model = Wallet
        fields = ["id", "balance", "currency", "is_locked", "created_at", "updated_at"]
        read_only_fields = fields


class TransactionSerializer(serializers.ModelSerializer):
    """One movement of the caller's wallet: its type, the amount (always positive; the type gives the
    direction), the balance before and after, and what it refers to."""

    amount = serializers.DecimalField(max_digits=14, decimal_places=2, read_only=True)
    balance_before = serializers.DecimalField(max_digits=14, decimal_places=2, read_only=True)
    balance_after = serializers.DecimalField(max_digits=14, decimal_places=2, read_only=True)
    reference_type = serializers.CharField(source="journal.reference_type", read_only=True, allow_null=True)
    reference_id = serializers.CharField(source="journal.reference_id", read_only=True, allow_null=True)
    description = serializers.CharField(source="journal.description", read_only=True)

    class Meta:
        model = LedgerEntry
        fields = [
            "id",
            "type",
            "amount",
            "balance_before",
            "balance_after",
            "currency",
            "reference_type",
            "reference_id",
            "description",
            "created_at",
        ]
        read_only_fields = fields


class WalletMovementSerializer(serializers.Serializer):
    """The wallet after the movement, and the transaction that moved it."""

    wallet = WalletSerializer()
    transaction = TransactionSerializer()


class AmountInputSerializer(StrictInputSerializer):
    amount = MoneyField()
    description = OptionalTextField(max_length=255)


class TopUpInputSerializer(StrictInputSerializer):
    amount = MoneyField()


class TopUpSerializer(serializers.ModelSerializer):
    """A card top-up: `checkoutUrl` is where the buyer pays; the wallet is credited once
    Stripe's signed webhook says the session is paid."""

    amount = serializers.DecimalField(max_digits=14, decimal_places=2, read_only=True)
    stripe_session_id = serializers.CharField(source="payment.stripe_session_id", read_only=True, allow_null=True)
    checkout_url = serializers.CharField(source="payment.checkout_url", read_only=True, allow_null=True)
    checkout_expires_at = serializers.DateTimeField(source="payment.expires_at", read_only=True)

    class Meta:
        model = TopUp
        fields = [
            "id",
            "amount",
            "currency",
            "status",
            "checkout_url",
            "stripe_session_id",
            "checkout_expires_at",
            "failure_reason",
            "completed_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields
