"""Catalog refusals. `ProductUnavailable` and `ProductOutOfStock` are raised by the stock
services that orders call (`product_take_units`)."""

from paymentflow.api.exceptions import ApplicationError, ForbiddenError, NotFoundError


class ProductNotFound(NotFoundError):
    code = "PRODUCT_NOT_FOUND"
    default_message = "Product not found."


class UnauthorizedProductAccess(ForbiddenError):
    code = "UNAUTHORIZED_PRODUCT_ACCESS"
    default_message = "You can only modify your own products."


class NotAMerchant(ForbiddenError):
    code = "PERMISSION_DENIED"
    default_message = "Only merchants can perform this action."


class ProductUnavailable(ApplicationError):
    code = "PRODUCT_UNAVAILABLE"
    default_message = "This product is not available."


class ProductOutOfStock(ApplicationError):
    code = "PRODUCT_OUT_OF_STOCK"
    default_message = "Not enough units in stock."


class InvalidStockAdjustment(ApplicationError):
    code = "INVALID_STOCK_ADJUSTMENT"
    default_message = "This stock adjustment is not allowed."
