from django.apps import AppConfig


class OrdersConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "orders"

    def ready(self):
        from orders import reconciliation  # noqa: F401 - registers the "stock" check
        from orders.services import CARD_ORDER_HOOKS, PAYMENT_KIND
        from payments.hooks import register

        register(PAYMENT_KIND, CARD_ORDER_HOOKS)
