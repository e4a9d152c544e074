"""Back-office pieces shared by every app's admin."""


class ReadOnlyAdminMixin:
    """View-only in the admin: these rows are written by services (or are append-only
    history), so staff may look but never add, change or delete through a form."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
