"""Demo data for `make run`: a buyer, a merchant and a staff admin, the merchant's products
and the buyer's funds. Safe to run again."""

from django.core.management.base import BaseCommand
from django.db import transaction

from accounts.models import User
from accounts.services import user_register
from catalog.demo import seed_demo_products
from wallets.demo import seed_demo_funds

DEMO_PASSWORD = "DemoPass123!"
DEMO_USERS = [
    ("buyer@demo.paymentflow.local", User.Role.USER, "Demo", "Buyer"),
    ("merchant@demo.paymentflow.local", User.Role.MERCHANT, "Demo", "Merchant"),
]
ADMIN_EMAIL = "admin@demo.paymentflow.local"


class Command(BaseCommand):
    help = "Create the demo buyer, merchant, admin, products and funds (idempotent) and print how to use them."

    def add_arguments(self, parser):
        parser.add_argument(
            "--base-url", default="http://127.0.0.1:8000", help="Where the server answers (make run passes its own)."
        )

    def handle(self, *args, **options):
        base, every_address = _browsable(options["base_url"].rstrip("/"))
        with transaction.atomic():
            for email, role, first, last in DEMO_USERS:
                if not User.objects.filter(email=email).exists():
                    user_register(email=email, password=DEMO_PASSWORD, role=role, first_name=first, last_name=last)
            if not User.objects.filter(email=ADMIN_EMAIL).exists():
                User.objects.create_superuser(ADMIN_EMAIL, DEMO_PASSWORD, first_name="Demo", last_name="Admin")
            seed_demo_products()
            seed_demo_funds(email=DEMO_USERS[0][0])

        self.stdout.write(
            "\nPayment Flow demo is ready" + (" (listening on every address)" if every_address else "") + "\n"
            f"  API          {base}/api/v1/\n"
            f"  Swagger UI   {base}/api/docs/\n"
            f"  ReDoc        {base}/api/redoc/\n"
            f"  Admin        {base}/admin/\n"
            f"  Buyer        {DEMO_USERS[0][0]} / {DEMO_PASSWORD}\n"
            f"  Merchant     {DEMO_USERS[1][0]} / {DEMO_PASSWORD}\n"
            f"  Staff        {ADMIN_EMAIL} / {DEMO_PASSWORD}  (/admin/ only: the API refuses staff)\n"
        )


def _browsable(base: str) -> tuple[str, bool]:
    """`make run HOST=0.0.0.0` serves every address, but a browser cannot open 0.0.0.0 (or
    [::]): the links name this machine's loopback instead. True when that was done."""
    for wildcard in ("//0.0.0.0", "//[::]"):
        if wildcard + ":" in base or base.endswith(wildcard):
            return base.replace(wildcard, "//127.0.0.1", 1), True
    return base, False
