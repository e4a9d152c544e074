"""The two ways a wallet purchase runs give the same answer and leave the same books.

On PostgreSQL a purchase is one call of the database function `orders_wallet_purchase`
(migration orders/0003); elsewhere (SQLite for `make run`) the ORM path runs
(`orders.services._purchase_with_orm`). Each case below runs the same purchase on the same
data through both, on PostgreSQL, each in a transaction rolled back afterwards, and
compares what the caller got (the order, or the error with its message and details) and
everything the purchase touched: balances, sequences, every ledger leg and journal entry,
stock, orders. A change to one path that is not made to the other fails here.
"""

from decimal import Decimal
from uuid import UUID

import pytest
from django.db import transaction

from accounts.tests.factories import UserFactory
from catalog.models import Product
from catalog.tests.factories import ProductFactory
from orders import services
from orders.models import Order
from orders.serializers import OrderSerializer
from orders.tests.factories import funded_buyer
from paymentflow.api.exceptions import ApplicationError
from wallets.models import JournalEntry, LedgerEntry, Wallet
from wallets.services import wallet_set_locked
from wallets.tests.factories import WalletFactory

pytestmark = pytest.mark.django_db

ENGINES = ("database", "orm")


def _named(names: dict):
    """Ids replaced by names, in strings too, so two runs with different ids compare."""
    texts = {str(key): label for key, label in names.items()}

    def name(value):
        if isinstance(value, (tuple, list)):
            return type(value)(name(item) for item in value)
        if isinstance(value, dict):
            return {key: name(item) for key, item in value.items()}
        if isinstance(value, (str, UUID)):
            text = str(value)
            for key, label in texts.items():
                text = text.replace(key, label)
            return text
        return value

    return name


def _run(engine: str, settings, purchase, names: dict) -> tuple:
    """What `purchase()` answered and the books it left, through one engine, rolled back."""
    settings.WALLET_PURCHASE_IN_DATABASE = engine == "database"
    with transaction.atomic():
        try:
            order = purchase()
        except ApplicationError as error:
            answer = ("refused", type(error).__name__, error.message, error.details)
        else:
            rendered = dict(OrderSerializer(order).data)
            stored = dict(OrderSerializer(Order.objects.select_related("product").get(pk=order.pk)).data)
            for key in ("created_at", "updated_at", "completed_at"):  # now() differs between runs
                assert rendered.pop(key) is not None and stored.pop(key) is not None
            assert rendered == stored, "the order returned is the order stored"
            answer = ("completed", rendered)
        orders = Order.objects.order_by("created_at", "quantity").values_list("pk", flat=True)
        names = {**names, **{pk: f"<order {n}>" for n, pk in enumerate(orders, start=1)}}
        name = _named(names)
        books = _books(names, name)
        transaction.set_rollback(True)
    return name(answer), books


def _books(names: dict, name) -> tuple:
    """Everything a purchase can write, without generated ids and timestamps, each table's
    rows named (`name`) and then sorted, so that the order of random ids does not count."""

    def _sorted(rows) -> list:
        return sorted((name(row) for row in rows), key=repr)  # rows may hold None beside strings

    owner = {w.pk: names.get(w.user_id, w.code or str(w.user_id)) for w in Wallet.objects.all()}
    return (
        _sorted((owner[w.pk], w.balance, w.last_sequence, w.is_locked, w.currency) for w in Wallet.objects.all()),
        _sorted(Product.objects.values_list("name", "available_units", "is_active")),
        _sorted(JournalEntry.objects.values_list("reference_type", "reference_id", "description", "created_by")),
        _sorted(
            (owner[leg.wallet_id], leg.type, leg.amount, leg.delta, leg.balance_before, leg.balance_after)
            + (leg.sequence, leg.currency, leg.journal.reference_id)
            for leg in LedgerEntry.objects.select_related("journal")
        ),
        _sorted(
            Order.objects.values_list(
                "user_id",
                "merchant_id",
                "product__name",
                "quantity",
                "unit_price",
                "amount",
                "currency",
                "status",
                "payment_method",
                "payment_id",
            )
        ),
    )


def _both_engines(settings, purchase, names: dict) -> tuple:
    database, orm = (_run(engine, settings, purchase, names) for engine in ENGINES)
    assert database == orm
    return database


@pytest.fixture
def shop(db):
    """A merchant with a wallet and two products, and a buyer with 100.00."""
    merchant = UserFactory(role="MERCHANT")
    WalletFactory(user=merchant)
    buyer = funded_buyer("100.00")
    product = ProductFactory(merchant=merchant, name="Widget", price="12.50", available_units=5)
    return {
        "merchant": merchant,
        "buyer": buyer,
        "product": product,
        "names": {merchant.pk: "merchant", buyer.pk: "buyer", product.pk: "product"},
    }


def test_a_completed_purchase(settings, shop):
    answer, (wallets, products, journals, legs, orders) = _both_engines(
        settings,
        lambda: services.order_purchase_with_wallet(buyer=shop["buyer"], product_id=shop["product"].pk, quantity=3),
        shop["names"],
    )
    assert answer[0] == "completed" and answer[1]["status"] == "COMPLETED" and answer[1]["amount"] == "37.50"
    assert products == [("Widget", 2, True)]
    assert ("buyer", "PAYMENT", Decimal("37.50"), Decimal("-37.50"), Decimal("100.00"), Decimal("62.50")) in [
        leg[:6] for leg in legs
    ]
    assert ("order", "<order 1>", "Order <order 1>: 3 x Widget", None) in journals


def test_two_purchases_in_a_row_chain_the_sequences(settings, shop):
    def twice():
        services.order_purchase_with_wallet(buyer=shop["buyer"], product_id=shop["product"].pk, quantity=1)
        return services.order_purchase_with_wallet(buyer=shop["buyer"], product_id=shop["product"].pk, quantity=2)

    _, (wallets, _, _, legs, _) = _both_engines(settings, twice, shop["names"])
    assert sorted(leg[6] for leg in legs if leg[0] == "merchant") == [1, 2]
    assert ("buyer", Decimal("62.50"), 3, False, "USD") in wallets  # deposit, then two payments


@pytest.mark.parametrize(
    "case, quantity, refusal",
    [
        ("out_of_stock", 6, "ProductOutOfStock"),
        ("inactive", 1, "ProductUnavailable"),
        ("unknown", 1, "ProductNotFound"),
        ("own_product", 1, "OwnProduct"),
        ("insufficient_funds", 5, "InsufficientFunds"),  # 5 x 25.00 > 100.00
        ("beyond_any_balance", 2, "InsufficientFunds"),  # more than a money column holds
        ("buyer_wallet_locked", 1, "WalletLocked"),
        ("merchant_wallet_locked", 1, "WalletLocked"),
    ],
)
def test_refusals_say_the_same_and_leave_nothing(settings, shop, case, quantity, refusal):
    buyer, product = shop["buyer"], shop["product"]
    product_id = product.pk
    if case == "inactive":
        Product.objects.filter(pk=product.pk).update(is_active=False)
    elif case == "unknown":
        product_id = "00000000-0000-4000-8000-000000000000"
    elif case == "own_product":
        buyer = shop["merchant"]
    elif case == "insufficient_funds":
        Product.objects.filter(pk=product.pk).update(price=Decimal("25.00"))
    elif case == "beyond_any_balance":
        Product.objects.filter(pk=product.pk).update(price=Decimal("999999999999.99"))
    elif case.endswith("wallet_locked"):
        owner = shop["buyer"] if case.startswith("buyer") else shop["merchant"]
        wallet_set_locked(wallet_ids=[Wallet.objects.get(user=owner).pk], locked=True)
    before = _books(shop["names"], _named(shop["names"]))

    answer, books = _both_engines(
        settings,
        lambda: services.order_purchase_with_wallet(buyer=buyer, product_id=product_id, quantity=quantity),
        shop["names"],
    )
    assert answer[:2] == ("refused", refusal)
    assert books == before


def test_insufficient_funds_names_the_amounts(settings, shop):
    answer, _ = _both_engines(
        settings,
        lambda: services.order_purchase_with_wallet(buyer=shop["buyer"], product_id=shop["product"].pk, quantity=9),
        shop["names"],
    )
    # 9 units of 5 in stock: the stock refusal comes first, with the numbers.
    assert answer[1] == "ProductOutOfStock" and answer[3] == {"available_units": 5, "requested": 9}

    Product.objects.filter(pk=shop["product"].pk).update(available_units=10)
    answer, _ = _both_engines(
        settings,
        lambda: services.order_purchase_with_wallet(buyer=shop["buyer"], product_id=shop["product"].pk, quantity=9),
        shop["names"],
    )
    assert answer[1:] == (
        "InsufficientFunds",
        "Insufficient funds. Required: $112.50, Available: $100.00",
        {"required": "112.50", "available": "100.00"},
    )


def test_users_without_wallets_get_them_on_first_use(settings, shop):
    """Users made outside registration (createsuperuser) have no wallet until they need one."""
    merchant = UserFactory(role="MERCHANT")  # no wallet
    product = ProductFactory(merchant=merchant, name="Gadget", price="1.00", available_units=3)
    names = {**shop["names"], merchant.pk: "walletless merchant"}

    answer, (wallets, _, _, legs, _) = _both_engines(
        settings,
        lambda: services.order_purchase_with_wallet(buyer=shop["buyer"], product_id=product.pk),
        names,
    )
    assert answer[0] == "completed"
    assert ("walletless merchant", Decimal("1.00"), 1, False, "USD") in wallets

    walletless_buyer = UserFactory()
    names[walletless_buyer.pk] = "walletless buyer"
    answer, (wallets, *_) = _both_engines(
        settings,
        lambda: services.order_purchase_with_wallet(buyer=walletless_buyer, product_id=product.pk),
        names,
    )
    assert answer[1] == "InsufficientFunds"
    assert "walletless buyer" not in [w[0] for w in wallets]  # the refusal rolled the new wallet back too
