from django.apps import AppConfig


class DemoConfig(AppConfig):
    """Project level, above every app: `manage.py seed_demo` puts each app's demo data
    together (users through accounts, products through catalog, funds through wallets)."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "demo"
