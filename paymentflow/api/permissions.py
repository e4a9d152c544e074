"""Who may call what. Authentication is required by default (settings.REST_FRAMEWORK);
a view opts out only by saying so with `Public`."""

from rest_framework.permissions import AllowAny, BasePermission


class Public(AllowAny):
    """Explicit marker for endpoints the contract lists as Public."""


class IsMerchant(BasePermission):
    message = "Only merchants can perform this action."

    def has_permission(self, request, view):
        user = request.user
        return bool(user and user.is_authenticated and getattr(user, "is_merchant", False))
