from django.apps import AppConfig


class ApiConfig(AppConfig):
    """The shared API layer is an app only to own the Idempotency-Key records (label `api`)."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "paymentflow.api"
    label = "api"
    verbose_name = "API plumbing"

    def ready(self):
        from paymentflow.db import cache_long_statement_conversions

        cache_long_statement_conversions()
