from django.apps import AppConfig


class OrdersConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "orders"

    def ready(self):
        from orders import reconciliation  # noqa: F401 - registers the "stock" check
        from orders.serializers import OrderSerializer
        from orders.services import CARD_ORDER_HOOKS, PAYMENT_KIND
        from payments.hooks import register
        from webhooks.events import register_event_subject

        register(PAYMENT_KIND, CARD_ORDER_HOOKS)

        # Merchant webhooks carry the order as the API renders it.
        register_event_subject("order", lambda order: OrderSerializer(order).data)
