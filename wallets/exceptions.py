"""Business refusals of the wallet services, mapped to HTTP by paymentflow.api.exceptions."""

from decimal import Decimal

from django.conf import settings

from paymentflow.api.exceptions import ApplicationError, ForbiddenError

_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£"}


def format_money(amount: Decimal, currency: str | None = None) -> str:
    """`$25.00` for the deployment's currency when it has a symbol, else `25.00 XYZ`."""
    currency = currency or settings.CURRENCY
    text = f"{amount.quantize(Decimal('0.01')):,.2f}".replace(",", "")
    symbol = _SYMBOLS.get(currency)
    return f"{symbol}{text}" if symbol else f"{text} {currency}"


class InvalidDepositAmount(ApplicationError):
    code = "INVALID_DEPOSIT_AMOUNT"
    default_message = "Invalid deposit amount."


class InvalidWithdrawalAmount(ApplicationError):
    code = "INVALID_WITHDRAWAL_AMOUNT"
    default_message = "Invalid withdrawal amount."


class InvalidTransfer(ApplicationError):
    code = "INVALID_TRANSFER"
    default_message = "A transfer needs two different user wallets and a positive amount."


class InsufficientFunds(ApplicationError):
    code = "INSUFFICIENT_FUNDS"
    default_message = "Insufficient funds."

    def __init__(self, *, required: Decimal, available: Decimal, currency: str | None = None):
        super().__init__(
            f"Insufficient funds. Required: {format_money(required, currency)}, "
            f"Available: {format_money(available, currency)}",
            details={"required": f"{required:.2f}", "available": f"{available:.2f}"},
        )


class BalanceLimitExceeded(ApplicationError):
    code = "BALANCE_LIMIT_EXCEEDED"

    def __init__(self, *, maximum: Decimal):
        super().__init__(f"A wallet's balance cannot exceed {maximum:.2f}.")


class WalletLocked(ForbiddenError):
    code = "WALLET_LOCKED"
    default_message = "This wallet is locked. Contact support."


class DirectDepositsDisabled(ForbiddenError):
    code = "DIRECT_DEPOSITS_DISABLED"
    default_message = "Direct deposits are disabled; top up the wallet by card instead."
