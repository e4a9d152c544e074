"""Demo products for `make run` (called from `seed_demo`). Safe to run again."""

from decimal import Decimal

from accounts.models import User
from catalog import services
from catalog.models import Product

DEMO_MERCHANT_EMAIL = "merchant@demo.paymentflow.local"
DEMO_PRODUCTS = [
    ("Mechanical keyboard", "Hot-swappable switches, aluminium case.", Decimal("129.00"), 25),
    ("Noise-cancelling headphones", "Over-ear, 30 h battery.", Decimal("249.99"), 10),
    ("USB-C hub", "7-in-1: HDMI, Ethernet, SD, 3x USB-A, PD charging.", Decimal("39.50"), 100),
    ("Standing desk mat", "Anti-fatigue, 90 x 50 cm.", Decimal("45.00"), 40),
    ("Coffee beans, 1 kg", "Single origin, roasted this week.", Decimal("24.90"), 60),
]


def seed_demo_products() -> int:
    """Create the demo merchant's products that do not exist yet (by name); returns how many."""
    merchant = User.objects.filter(email=DEMO_MERCHANT_EMAIL, role=User.Role.MERCHANT).first()
    if merchant is None:
        return 0
    existing = set(Product.objects.filter(merchant=merchant).values_list("name", flat=True))
    created = 0
    for name, description, price, units in DEMO_PRODUCTS:
        if name not in existing:
            services.product_create(
                merchant=merchant, name=name, description=description, price=price, available_units=units
            )
            created += 1
    return created
