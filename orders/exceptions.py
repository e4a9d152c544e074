"""Orders refusals, mapped to HTTP by paymentflow.api.exceptions.

Refusals raised by the services orders call keep their own codes: PRODUCT_NOT_FOUND,
PRODUCT_UNAVAILABLE, PRODUCT_OUT_OF_STOCK (catalog), INSUFFICIENT_FUNDS, WALLET_LOCKED
(wallets), GATEWAY_ERROR, GATEWAY_NOT_CONFIGURED (payments.gateway).
"""

from paymentflow.api.exceptions import ApplicationError, ConflictError, ForbiddenError, NotFoundError


class OrderNotFound(NotFoundError):
    """No such order, or one the caller may not see (never a 403: that would confirm it exists)."""

    code = "NOT_FOUND"
    default_message = "Order not found."


class OrderActionForbidden(ForbiddenError):
    """The caller sees the order (its buyer or its merchant) but the action is the other
    party's: the buyer asking to refund, the merchant asking to cancel."""

    code = "PERMISSION_DENIED"


class OrderAmountTooLarge(ApplicationError):
    """price x quantity beyond what a money column holds: a 400 naming the quantity."""

    code = "VALIDATION_ERROR"

    def __init__(self, *, maximum):
        message = f"The order's amount may be at most {maximum}."
        super().__init__(f"Validation failed. quantity: {message}", details={"quantity": [message]})


class MerchantWalletRefused(ApplicationError):
    """A card refund's money could not be taken from, or given back to, the merchant's
    wallet (short, or locked): the message names the wallet, for staff."""

    code = "MERCHANT_WALLET_REFUSED"


class OwnProduct(ApplicationError):
    code = "OWN_PRODUCT"
    default_message = "You cannot buy your own product."


class OrderNotRefundable(ConflictError):
    code = "ORDER_NOT_REFUNDABLE"
    default_message = "Only a completed order can be refunded."


class OrderNotCancellable(ConflictError):
    code = "ORDER_NOT_CANCELLABLE"
    default_message = "Only a pending order can be cancelled."


class InvalidOrderTransition(ConflictError):
    """A status change outside Order.ALLOWED_TRANSITIONS (a bug or a lost race; never silent)."""

    code = "INVALID_ORDER_TRANSITION"
    default_message = "This order cannot change to that status."
