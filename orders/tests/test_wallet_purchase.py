"""The wallet purchase's answers and the books it leaves, case by case, on PostgreSQL.

Every case compares what the caller got (the order, or the error with its message and
details) and everything a purchase can write: balances, sequences, every ledger leg and
journal entry, stock, orders. What only a real transaction shows (locks, commits, a
killed client, a bounded lock wait) is in test_wallet_purchase_locking.py; the purchase
under concurrency through HTTP in test_concurrency.py.
"""

from decimal import Decimal

import pytest
from django.db import connection

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
D = Decimal


def _books() -> tuple:
    """Everything a purchase can write, without generated ids and timestamps, sorted."""

    def owner(wallet_id) -> str:
        wallet = Wallet.objects.select_related("user").get(pk=wallet_id)
        return wallet.code or wallet.user.email

    return (
        sorted((owner(w.pk), w.balance, w.last_sequence, w.is_locked) for w in Wallet.objects.all()),
        sorted(Product.objects.values_list("name", "available_units", "is_active")),
        sorted(JournalEntry.objects.values_list("reference_type", "description")),
        sorted(
            (owner(leg.wallet_id), leg.type, leg.delta, leg.balance_before, leg.balance_after, leg.sequence)
            for leg in LedgerEntry.objects.all()
        ),
        sorted(Order.objects.values_list("quantity", "amount", "status")),
    )


@pytest.fixture
def shop(db):
    """A merchant with a wallet and a product of 5 units at 12.50, and a buyer with 100.00."""
    merchant = UserFactory(role="MERCHANT")
    WalletFactory(user=merchant)
    buyer = funded_buyer("100.00")
    product = ProductFactory(merchant=merchant, name="Widget", price="12.50", available_units=5)
    return merchant, buyer, product


def _refusal(call) -> tuple:
    with pytest.raises(ApplicationError) as refused:
        call()
    return type(refused.value).__name__, refused.value.message, refused.value.details


def test_a_completed_purchase_returns_the_order_as_stored(shop, reconcile):
    merchant, buyer, product = shop
    order = services.order_purchase_with_wallet(buyer=buyer, product_id=product.pk, quantity=3)

    rendered = dict(OrderSerializer(order).data)
    stored = dict(OrderSerializer(Order.objects.select_related("product").get(pk=order.pk)).data)
    assert rendered == stored  # no re-read: the answer is built from what was written
    assert (rendered["status"], rendered["payment_method"], rendered["amount"]) == ("COMPLETED", "WALLET", "37.50")
    assert Product.objects.get(pk=product.pk).available_units == 2
    journal = JournalEntry.objects.get(reference_type="order", reference_id=str(order.pk))
    assert journal.description == f"Order {order.pk}: 3 x Widget"
    legs = {(leg.wallet.user_id, leg.type): leg for leg in journal.legs.select_related("wallet")}
    paid, earned = legs[(buyer.pk, "PAYMENT")], legs[(merchant.pk, "REVENUE")]
    assert (paid.delta, paid.balance_before, paid.balance_after, paid.sequence) == (
        D("-37.50"),
        D("100.00"),
        D("62.50"),
        2,
    )
    assert (earned.delta, earned.balance_before, earned.balance_after, earned.sequence) == (
        D("37.50"),
        D("0.00"),
        D("37.50"),
        1,
    )
    assert Wallet.objects.get(user=buyer).last_sequence == 2
    reconcile()


def test_two_purchases_in_a_row_chain_the_sequences(shop, reconcile):
    merchant, buyer, product = shop
    services.order_purchase_with_wallet(buyer=buyer, product_id=product.pk, quantity=1)
    services.order_purchase_with_wallet(buyer=buyer, product_id=product.pk, quantity=2)

    merchant_legs = LedgerEntry.objects.filter(wallet__user=merchant).order_by("sequence")
    assert [(leg.sequence, leg.balance_before, leg.balance_after) for leg in merchant_legs] == [
        (1, D("0.00"), D("12.50")),
        (2, D("12.50"), D("37.50")),
    ]
    assert Wallet.objects.get(user=buyer).balance == D("62.50")
    reconcile()


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
def test_refusals_leave_nothing(shop, case, quantity, refusal, reconcile):
    merchant, buyer, product = shop
    product_id = product.pk
    if case == "inactive":
        Product.objects.filter(pk=product.pk).update(is_active=False)
    elif case == "unknown":
        product_id = "00000000-0000-4000-8000-000000000000"
    elif case == "own_product":
        buyer = merchant
    elif case == "insufficient_funds":
        Product.objects.filter(pk=product.pk).update(price=D("25.00"))
    elif case == "beyond_any_balance":
        Product.objects.filter(pk=product.pk).update(price=D("999999999999.99"))
    elif case.endswith("wallet_locked"):
        owner = buyer if case.startswith("buyer") else merchant
        wallet_set_locked(wallet_ids=[Wallet.objects.get(user=owner).pk], locked=True)
    before = _books()

    name, _, _ = _refusal(
        lambda: services.order_purchase_with_wallet(buyer=buyer, product_id=product_id, quantity=quantity)
    )

    assert name == refusal
    assert _books() == before
    reconcile()


def test_refusals_name_the_numbers(shop):
    merchant, buyer, product = shop
    # 9 units of 5 in stock: the stock refusal comes first, with the numbers.
    assert _refusal(lambda: services.order_purchase_with_wallet(buyer=buyer, product_id=product.pk, quantity=9)) == (
        "ProductOutOfStock",
        "Not enough units in stock. Requested: 9, available: 5.",
        {"available_units": 5, "requested": 9},
    )
    Product.objects.filter(pk=product.pk).update(available_units=10)
    assert _refusal(lambda: services.order_purchase_with_wallet(buyer=buyer, product_id=product.pk, quantity=9)) == (
        "InsufficientFunds",
        "Insufficient funds. Required: $112.50, Available: $100.00",
        {"required": "112.50", "available": "100.00"},
    )


def test_users_without_wallets_get_them_on_first_use(shop, reconcile):
    """Users made outside registration (createsuperuser) have no wallet until they need one."""
    _, buyer, _ = shop
    walletless_merchant = UserFactory(role="MERCHANT")
    product = ProductFactory(merchant=walletless_merchant, price="1.00", available_units=3)

    services.order_purchase_with_wallet(buyer=buyer, product_id=product.pk)
    assert Wallet.objects.get(user=walletless_merchant).balance == D("1.00")

    walletless_buyer = UserFactory()
    assert _refusal(lambda: services.order_purchase_with_wallet(buyer=walletless_buyer, product_id=product.pk))[0] == (
        "InsufficientFunds"
    )
    assert not Wallet.objects.filter(user=walletless_buyer).exists()  # the refusal rolled the new wallet back too
    assert Product.objects.get(pk=product.pk).available_units == 2
    reconcile()


def test_a_connection_that_keeps_purchasing_runs_its_statements_prepared(shop):
    """psycopg prepares a statement the 5th time a connection runs it (settings; not behind
    PgBouncer): from then on PostgreSQL parses and plans each statement of the purchase
    once per connection, not once per purchase."""
    _, buyer, _ = shop
    product = ProductFactory(price="1.00", available_units=10)
    for _ in range(6):
        services.order_purchase_with_wallet(buyer=buyer, product_id=product.pk)

    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        prepared = [" ".join(row[0].replace('"', "").split()) for row in cursor.fetchall()]
    for start, inside in [
        ("SELECT set_config", "lock_timeout"),
        ("UPDATE catalog_product", "RETURNING"),
        ("SELECT", "FROM wallets_wallet WHERE user_id IN ($1, $2)"),
        ("WITH", "INSERT INTO orders_order"),  # the order, the journal entry, its legs, the balances
    ]:
        assert any(s.startswith(start) and inside in s for s in prepared), (start, prepared)


def test_every_statement_of_a_purchase_is_converted_once_per_process(shop):
    """psycopg turns a query's `%s` placeholders into `$n` by parsing its text, and keeps the
    result only for statements of at most 50 parameters (its default): the purchase's one
    write statement has more, and was parsed anew every time, 0.8 ms of CPU per purchase
    (docs/PERFORMANCE.md). `paymentflow.db` raises the limit: a second purchase parses
    nothing."""
    from psycopg import _queries

    _, buyer, _ = shop
    product = ProductFactory(price="1.00", available_units=10)
    services.order_purchase_with_wallet(buyer=buyer, product_id=product.pk)  # the first parses
    executed = []

    def count(execute, sql, params, many, context):
        if params:
            executed.append(sql)
        return execute(sql, params, many, context)

    before = _queries._query2pg.cache_info()
    with connection.execute_wrapper(count):
        services.order_purchase_with_wallet(buyer=buyer, product_id=product.pk)
    after = _queries._query2pg.cache_info()
    assert any(sql.startswith("WITH") for sql in executed)  # the write statement was among them
    assert (after.hits - before.hits, after.misses - before.misses) == (len(executed), 0)
