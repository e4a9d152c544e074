"""Security suite: hostile callers against the real API, on the test database.

Every response produced here goes through `ScanningClient`, which fails the test when a
body carries a password hash, a stack trace, SQL or a database error, or an email address
other than the caller's own. Run just this: `make test PYTEST_ARGS="-k security"`.

Covered elsewhere, not repeated here:
- `manage.py check --deploy` clean under production settings:
  `paymentflow/tests/test_plumbing.py::TestProductionSettings::test_check_deploy_is_clean`;
  a 500 carries no trace or SQL: `test_plumbing.py::TestErrorEnvelope::test_unhandled_error_is_a_500_without_a_trace`.
- Registration cannot create staff (`isStaff`, `isSuperuser`, role `ADMIN`...):
  `accounts/tests/test_auth_api.py::TestRegister::test_registration_cannot_create_staff`
  and `test_unknown_role_is_refused`; bad tokens on `/auth/me`, refresh and logout abuse:
  `test_auth_api.py::TestTokens`, `TestRefreshAndLogout`; throttle counters per address and
  in Redis: `TestThrottling`.
- Schema-driven garbage on every operation: `paymentflow/tests/test_fuzz.py`.
"""

import contextlib
import json
import re
from decimal import Decimal
from urllib.parse import parse_qsl

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from accounts.models import User
from accounts.services import user_issue_tokens
from accounts.tests import tokens
from accounts.tests.factories import DEFAULT_PASSWORD, MerchantFactory, UserFactory
from catalog.models import Product
from catalog.tests.factories import ProductFactory
from orders.models import Order
from orders.services import order_purchase
from paymentflow.testing.assertions import assert_error as error
from wallets.models import JournalEntry, LedgerEntry, TopUp, Wallet
from wallets.tests.factories import TopUpFactory, funded_wallet

pytestmark = pytest.mark.django_db

API = "/api/v1"

# --- the response scanner -------------------------------------------------------------------

LEAKS = [
    ("a password hash", re.compile(r"argon2|md5\$|pbkdf2|bcrypt\$|scrypt\$", re.I)),
    ("a stack trace", re.compile(r"Traceback \(most recent call last\)|File \"|\.py\", line \d")),
    (
        "SQL or a database error",
        re.compile(
            r"\bSELECT\b.+\bFROM\b|\bINSERT INTO\b|\bUPDATE\b.+\bSET\b|psycopg|django\.db|ProgrammingError|"
            r"IntegrityError|DataError|syntax error at or near|relation \"|violates .* constraint",
            re.I | re.S,
        ),
    ),
]
EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")


def _strings(value):
    """Every string inside a JSON value (keys included)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def leaks_in(content: bytes, *, sent=(), own_email: str | None = None) -> list[str]:
    """What a response body gives away. What the caller itself sent and gets back (a product
    name that is an injection string, a bad filter value quoted in an error, its own email)
    is cut out first: that is an echo, not a leak."""
    try:
        strings = list(_strings(json.loads(content)))
    except ValueError:
        strings = [content.decode("utf-8", "replace")]
    found = []
    for text in strings:
        for echo in sorted(sent, key=len, reverse=True):
            text = text.replace(echo, "")
        found += [f"{what}: {text[:200]!r}" for what, pattern in LEAKS if pattern.search(text)]
        found += [
            f"another user's email: {email}" for email in EMAIL.findall(text) if email.lower() != (own_email or "")
        ]
    return found


class ScanningClient(APIClient):
    """An APIClient that checks every response body with `leaks_in` and counts them."""

    scanned = 0

    def __init__(self, *, user=None, **kwargs):
        super().__init__(**kwargs)
        self.own_email = user.email.lower() if user is not None else None

    def generic(self, method, path, data="", content_type="application/octet-stream", secure=False, **extra):
        response = super().generic(method, path, data, content_type, secure, **extra)
        sent = {value for _, value in parse_qsl(extra.get("QUERY_STRING", ""))}
        with contextlib.suppress(ValueError, TypeError):
            sent |= set(_strings(json.loads(data))) if data else set()
        sent = {value for value in sent if len(value) >= 3}
        if not getattr(response, "streaming", False):
            leaks = leaks_in(response.content, sent=sent, own_email=self.own_email)
            assert not leaks, f"{method} {path} -> {response.status_code} leaks {leaks}"
            ScanningClient.scanned += 1
        return response


@pytest.fixture(autouse=True)
def _every_test_is_scanned():
    before = ScanningClient.scanned
    yield
    assert ScanningClient.scanned > before, "this test made no request through ScanningClient"


# These override the root conftest's fixtures for this module: every client here scans.
@pytest.fixture
def api_client():
    return ScanningClient()


@pytest.fixture
def client_for():
    def make(user, token=None):
        client = ScanningClient(user=user)
        token = token or user_issue_tokens(user=user)["access_token"]
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        return client

    return make


def test_the_scanner_finds_what_it_looks_for(api_client):
    """The scanner itself can fail: each leak it must catch, and the echo it must allow."""
    assert leaks_in(b'{"a":"md5$abc$def"}')
    assert leaks_in(b'{"a":"argon2$argon2id$v=19$m=102400"}')
    assert leaks_in(b'{"a":"pbkdf2_sha256$870000$salt$hash"}')
    assert leaks_in(b'Traceback (most recent call last):\n  File "/x.py", line 3')
    assert leaks_in(b'{"m":"SELECT \\"id\\" FROM \\"orders_order\\""}')
    assert leaks_in(b'{"m":"psycopg.errors.UniqueViolation"}')
    assert leaks_in(b'{"email":"victim@example.com"}', own_email="me@example.com")
    assert not leaks_in(b'{"email":"me@example.com"}', own_email="me@example.com")
    assert not leaks_in(b'{"name":"\'; DROP TABLE x; SELECT 1 FROM y"}', sent={"'; DROP TABLE x; SELECT 1 FROM y"})
    assert api_client.get(f"{API}/products").status_code == 200


# --- the world: two buyers, two merchants, their objects ----------------------------------------


class World:
    def __init__(self):
        self.alice = UserFactory()  # the victim buyer
        self.bob = UserFactory()  # the attacking buyer
        self.merchant = MerchantFactory()  # the victim merchant
        self.rival = MerchantFactory()  # the attacking merchant
        for user in (self.alice, self.bob, self.merchant, self.rival):
            funded_wallet(user=user, amount="500.00")
        self.product = ProductFactory(merchant=self.merchant, price=Decimal("10.00"), available_units=50)
        self.hidden = ProductFactory(merchant=self.merchant, is_active=False)
        self.rivals_product = ProductFactory(merchant=self.rival, price=Decimal("5.00"), available_units=50)
        self.paid = order_purchase(buyer=self.alice, product_id=self.product.pk, payment_method="WALLET")
        self.bobs_order = order_purchase(buyer=self.bob, product_id=self.product.pk, payment_method="WALLET")
        self.topup = TopUpFactory(wallet=Wallet.objects.get(user=self.alice))


@pytest.fixture
def world(db):
    return World()


@pytest.fixture
def pending(world, fake_stripe):
    """Alice's PENDING card order (its Checkout Session at the fake Stripe)."""
    return order_purchase(buyer=world.alice, product_id=world.product.pk, payment_method="GATEWAY")


def state() -> dict:
    """Everything an attack could change: orders, products, balances, the ledger, users."""
    return {
        "orders": sorted(Order.objects.values_list("id", "status", "refund_reason", "updated_at")),
        "products": sorted(
            Product.objects.values_list(
                "id", "merchant_id", "name", "description", "price", "available_units", "is_active", "updated_at"
            )
        ),
        "wallets": sorted(Wallet.objects.values_list("id", "user_id", "balance", "is_locked")),
        "journal": JournalEntry.objects.count(),
        "legs": LedgerEntry.objects.count(),
        "topups": sorted(TopUp.objects.values_list("id", "status", "amount")),
        "users": sorted(User.objects.values_list("id", "email", "role", "is_staff", "is_superuser")),
    }


# --- IDOR: another user's object ---------------------------------------------------------------

# (attacker, method, path template, expected status, code). The contract: another user's order
# is 404 (never 403, so its existence is not confirmed); another merchant's product is 403
# UNAUTHORIZED_PRODUCT_ACCESS on PATCH / DELETE (the product is public anyway), and an
# inactive product is 404 to anyone but its owner.
IDOR_MATRIX = [
    ("bob", "get", "/orders/{paid}", 404, "NOT_FOUND"),
    ("rival", "get", "/orders/{paid}", 404, "NOT_FOUND"),
    ("bob", "post", "/orders/{paid}/refund", 404, "NOT_FOUND"),
    ("rival", "post", "/orders/{paid}/refund", 404, "NOT_FOUND"),
    ("bob", "post", "/orders/{pending}/cancel", 404, "NOT_FOUND"),
    ("rival", "post", "/orders/{pending}/cancel", 404, "NOT_FOUND"),
    # The other party sees the order, so it is no secret: 403 saying who may act (API.md Orders).
    ("merchant", "post", "/orders/{pending}/cancel", 403, "PERMISSION_DENIED"),
    ("alice", "post", "/orders/{paid}/refund", 403, "PERMISSION_DENIED"),
    ("rival", "patch", "/products/{product}", 403, "UNAUTHORIZED_PRODUCT_ACCESS"),
    ("rival", "delete", "/products/{product}", 403, "UNAUTHORIZED_PRODUCT_ACCESS"),
    ("rival", "patch", "/products/{hidden}", 403, "UNAUTHORIZED_PRODUCT_ACCESS"),
    ("rival", "delete", "/products/{hidden}", 403, "UNAUTHORIZED_PRODUCT_ACCESS"),
    ("rival", "get", "/products/{hidden}", 404, "PRODUCT_NOT_FOUND"),
    ("bob", "get", "/products/{hidden}", 404, "PRODUCT_NOT_FOUND"),
    (None, "get", "/products/{hidden}", 404, "PRODUCT_NOT_FOUND"),
]


def _path(template, world, pending):
    ids = {"paid": world.paid.pk, "pending": pending.pk, "product": world.product.pk, "hidden": world.hidden.pk}
    return API + template.format(**ids)


@pytest.mark.parametrize(("attacker", "method", "template", "status", "code"), IDOR_MATRIX)
def test_idor_matrix(world, pending, fake_stripe, client_for, api_client, attacker, method, template, status, code):
    client = client_for(getattr(world, attacker)) if attacker else api_client
    body = {"name": "Pwned", "price": "0.01"} if method == "patch" else {"reason": "mine now"}
    before, stripe_calls = state(), len(fake_stripe.requests)
    response = getattr(client, method)(_path(template, world, pending), body if method != "get" else None)
    error(response, status, code)
    assert state() == before
    assert len(fake_stripe.requests) == stripe_calls  # nor was Stripe asked to expire or refund anything


def test_idor_controls_the_owners_can(world, pending, client_for):
    """The same requests succeed for the rightful caller, so the matrix above can fail."""
    assert client_for(world.alice).get(_path("/orders/{paid}", world, pending)).status_code == 200
    assert client_for(world.merchant).get(_path("/orders/{paid}", world, pending)).status_code == 200
    assert client_for(world.merchant).get(_path("/products/{hidden}", world, pending)).status_code == 200
    patch = client_for(world.merchant).patch(_path("/products/{product}", world, pending), {"name": "Renamed"})
    assert patch.status_code == 200
    assert client_for(world.merchant).post(_path("/orders/{paid}/refund", world, pending), {}).status_code == 200
    assert client_for(world.alice).post(_path("/orders/{pending}/cancel", world, pending)).status_code == 200


@pytest.mark.parametrize(
    "url",
    [
        "/wallet?userId={alice}",
        "/wallet?walletId={wallet}",
        "/wallet/transactions?userId={alice}&walletId={wallet}",
        "/wallet/top-ups?userId={alice}",
        "/orders?userId={alice}&user={alice}",
    ],
)
def test_wallet_and_order_lists_are_scoped_to_the_caller_whatever_the_query(world, client_for, url):
    alices_wallet = Wallet.objects.get(user=world.alice)
    response = client_for(world.bob).get(API + url.format(alice=world.alice.pk, wallet=alices_wallet.pk))
    assert response.status_code in (200, 400), response.content
    if response.status_code == 200:
        text = response.content.decode()
        assert str(alices_wallet.pk) not in text
        assert str(world.paid.pk) not in text and str(world.topup.pk) not in text
        legs = LedgerEntry.objects.filter(wallet=alices_wallet).values_list("id", flat=True)
        assert legs and not any(str(leg) in text for leg in legs)


def test_sales_are_scoped_to_the_calling_merchant(world, client_for):
    response = client_for(world.rival).get(f"{API}/orders/merchant/sales?merchantId={world.merchant.pk}")
    assert response.status_code == 200
    assert response.json()["data"] == []
    mine = client_for(world.rival).get(f"{API}/products/merchant/my-products?merchantId={world.merchant.pk}")
    assert {p["id"] for p in mine.json()["data"]} == {str(world.rivals_product.pk)}


# --- roles: merchant-only endpoints as a USER, and anonymously -----------------------------------

ROLE_MATRIX = [
    ("post", "/products", 403, "PERMISSION_DENIED"),
    ("get", "/products/merchant/my-products", 403, "PERMISSION_DENIED"),
    ("get", "/orders/merchant/sales", 403, "PERMISSION_DENIED"),
    ("patch", "/products/{product}", 403, "PERMISSION_DENIED"),
    ("delete", "/products/{product}", 403, "PERMISSION_DENIED"),
    # Refund belongs to the order's merchant; its buyer sees the order: 403.
    ("post", "/orders/{paid}/refund", 403, "PERMISSION_DENIED"),
]


@pytest.mark.parametrize(("method", "template", "status", "code"), ROLE_MATRIX)
def test_merchant_only_endpoints_refuse_a_buyer(world, client_for, method, template, status, code):
    # alice is the paid order's own buyer: even she cannot refund it.
    path = API + template.format(paid=world.paid.pk, product=world.product.pk)
    body = {"name": "Mine", "price": "1.00", "availableUnits": 1} if "/products" in template else {}
    before = state()
    error(getattr(client_for(world.alice), method)(path, body), status, code)
    assert state() == before


@pytest.mark.parametrize(("method", "template", "status", "code"), ROLE_MATRIX)
def test_merchant_only_endpoints_refuse_anonymous_callers(world, api_client, method, template, status, code):
    path = API + template.format(paid=world.paid.pk, product=world.product.pk)
    before = state()
    error(getattr(api_client, method)(path, {} if method != "get" else None), 401, "NOT_AUTHENTICATED")
    assert state() == before


# --- tokens (forged by accounts/tests/tokens.py, also used by the /auth/me tests) -----------------


PROTECTED = [
    ("get", "/wallet", None),
    ("post", "/wallet/withdraw", {"amount": "1.00"}),
    ("get", "/orders", None),
    ("post", "/orders", {"productId": "{product}", "paymentMethod": "WALLET"}),
    ("post", "/products", {"name": "X", "price": "1.00", "availableUnits": 1}),
    ("get", "/products/{hidden}", None),  # public, but a token that is sent must be valid
    ("post", "/orders/{paid}/refund", {}),
]


@pytest.mark.parametrize("kind", tokens.BAD_TOKENS)
@pytest.mark.parametrize(("method", "template", "body"), PROTECTED, ids=[f"{m} {p}" for m, p, _ in PROTECTED])
def test_bad_tokens_are_401(world, client_for, kind, method, template, body):
    # The merchant owns everything here, so a token that slipped through would succeed.
    token = tokens.BAD_TOKENS[kind](world.merchant)
    ids = {"product": world.rivals_product.pk, "hidden": world.hidden.pk, "paid": world.paid.pk}
    body = json.loads(json.dumps(body).replace("{product}", str(ids["product"]))) if body else None
    before = state()
    response = getattr(client_for(world.merchant, token=token), method)(API + template.format(**ids), body)
    error(response, 401, "TOKEN_NOT_VALID")
    assert state() == before


# --- brute force -------------------------------------------------------------------------------


@override_settings(AUTH_THROTTLE_RATE="5/minute")
def test_brute_force_login_is_throttled_even_for_the_right_password(world, api_client):
    login = f"{API}/auth/login"
    for attempt in range(5):
        guess = {"email": world.alice.email if attempt % 2 else world.bob.email, "password": f"Guess{attempt}!"}
        error(api_client.post(login, guess), 401, "INVALID_CREDENTIALS")
    response = api_client.post(login, {"email": world.alice.email, "password": DEFAULT_PASSWORD})
    body = error(response, 429, "THROTTLED")
    assert int(response["Retry-After"]) > 0
    assert "accessToken" not in response.content.decode() and body["details"] == {}


# --- oversized bodies --------------------------------------------------------------------------

OVERSIZED = 300 * 1024  # above DATA_UPLOAD_MAX_MEMORY_SIZE (256 KiB)


@pytest.mark.parametrize(
    ("who", "path", "field"),
    [
        (None, "/auth/register", "firstName"),
        ("merchant", "/products", "description"),
        ("merchant", "/products/{product}", "description"),
        ("alice", "/orders", "productId"),
        ("alice", "/wallet/deposit", "description"),
        ("merchant", "/orders/{paid}/refund", "reason"),
        (None, "/webhooks/stripe", "id"),
    ],
)
def test_oversized_bodies_are_413_in_the_envelope(world, client_for, api_client, who, path, field):
    client = client_for(getattr(world, who)) if who else api_client
    method = "patch" if path == "/products/{product}" else "post"
    url = API + path.format(product=world.product.pk, paid=world.paid.pk)
    before = state()
    response = getattr(client, method)(url, {field: "A" * OVERSIZED})
    error(response, 413, "PAYLOAD_TOO_LARGE")
    assert state() == before


@pytest.mark.parametrize(
    ("who", "path", "body"),
    [
        (None, "/auth/register", {"firstName": "A" * 151}),
        ("merchant", "/products", {"name": "N" * 201, "price": "1.00", "availableUnits": 1}),
        ("merchant", "/products/{product}", {"description": "D" * 5001}),
        ("alice", "/wallet/deposit", {"amount": "1.00", "description": "D" * 256}),
        ("merchant", "/orders/{paid}/refund", {"reason": "R" * 501}),
    ],
)
def test_fields_over_their_length_are_400(world, client_for, api_client, who, path, body):
    client = client_for(getattr(world, who)) if who else api_client
    method = "patch" if path == "/products/{product}" else "post"
    if path == "/auth/register":
        body = {"email": "new@example.com", "password": "SecurePass123!", "role": "USER", **body}
    before = state()
    response = getattr(client, method)(API + path.format(product=world.product.pk, paid=world.paid.pk), body)
    details = error(response, 400, "VALIDATION_ERROR")["details"]
    assert set(body) - {"email", "password", "role", "amount", "price", "availableUnits"} <= set(details)
    assert state() == before


# --- injection strings -------------------------------------------------------------------------

INJECTIONS = [
    "'; DROP TABLE orders_order;--",
    "' OR '1'='1",
    "Robert'); DELETE FROM accounts_user WHERE ('1'='1",
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "{{7*7}}",
    "${7*7}",
    "%s%s%s%n",
    "../../../../etc/passwd",
    "\\'; SELECT pg_sleep(5);--",
    "‮ ünïcödé 中文 🙂",
]


@pytest.mark.parametrize("text", INJECTIONS)
def test_injection_strings_are_stored_verbatim_in_every_text_field(world, client_for, api_client, text):
    # Registration: first and last name.
    response = api_client.post(
        f"{API}/auth/register",
        {"email": "inj@example.com", "password": "SecurePass123!", "role": "USER", "firstName": text, "lastName": text},
    )
    assert response.status_code == 201, response.content
    assert (response.json()["user"]["firstName"], response.json()["user"]["lastName"]) == (text, text)
    assert User.objects.filter(email="inj@example.com", first_name=text, last_name=text).exists()

    # Products: name and description, on create and on update.
    merchant = client_for(world.merchant)
    created = merchant.post(
        f"{API}/products", {"name": text, "description": text, "price": "1.00", "availableUnits": 3}
    )
    assert created.status_code == 201, created.content
    assert (created.json()["name"], created.json()["description"]) == (text, text)
    product = Product.objects.get(pk=created.json()["id"])
    assert (product.name, product.description) == (text, text)
    updated = merchant.patch(f"{API}/products/{world.product.pk}", {"name": text, "description": text[::-1]})
    assert updated.status_code == 200, updated.content
    world.product.refresh_from_db()
    assert (world.product.name, world.product.description) == (text, text[::-1])
    shown = api_client.get(f"{API}/products/{world.product.pk}").json()
    assert (shown["name"], shown["description"]) == (text, text[::-1])

    # Wallet: deposit and withdrawal descriptions, as the ledger shows them.
    alice = client_for(world.alice)
    assert alice.post(f"{API}/wallet/deposit", {"amount": "2.00", "description": text}).status_code == 200
    assert alice.post(f"{API}/wallet/withdraw", {"amount": "1.00", "description": text}).status_code == 200
    history = alice.get(f"{API}/wallet/transactions?limit=2").json()["data"]
    assert [entry["description"] for entry in history] == [text, text]

    # Refund reason.
    refund = merchant.post(f"{API}/orders/{world.paid.pk}/refund", {"reason": text})
    assert refund.status_code == 200, refund.content
    assert Order.objects.get(pk=world.paid.pk).refund_reason == text

    # Search and the other query parameters: 200 or 400, never 500.
    # The search finds exactly the two products named so (`%`, `_` and quotes are not syntax).
    search = api_client.get(f"{API}/products", {"search": text})
    assert search.status_code == 200
    assert {p["id"] for p in search.json()} == {str(product.pk), str(world.product.pk)}
    for query in ({"merchantId": text}, {"minPrice": text}, {"page": text}):
        assert api_client.get(f"{API}/products", query).status_code == 400
    for url in ("/orders", "/orders/merchant/sales"):
        assert merchant.get(API + url, {"status": text}).status_code == 400
    assert alice.get(f"{API}/wallet/transactions", {"type": text}).status_code == 400

    # Login with an injection as the email or the password: just wrong credentials.
    error(api_client.post(f"{API}/auth/login", {"email": text, "password": text}), 401, "INVALID_CREDENTIALS")
    error(
        api_client.post(f"{API}/auth/login", {"email": world.alice.email, "password": text}), 401, "INVALID_CREDENTIALS"
    )

    # Nothing was executed: the tables are all there and every user still exists.
    assert Order.objects.count() == 2 and User.objects.count() == 5 and Product.objects.count() == 4


def test_injection_in_an_idempotency_key_is_just_a_key(world, client_for):
    alice = client_for(world.alice)
    key = "'; DROP TABLE api_idempotencykey;--"
    first = alice.post(f"{API}/wallet/deposit", {"amount": "5.00"}, HTTP_IDEMPOTENCY_KEY=key)
    again = alice.post(f"{API}/wallet/deposit", {"amount": "5.00"}, HTTP_IDEMPOTENCY_KEY=key)
    assert (first.status_code, again.status_code) == (200, 200)
    assert again["Idempotent-Replayed"] == "true"
    assert Wallet.objects.get(user=world.alice).balance == Decimal("495.00")  # 500 - 10 (order) + 5, once


NULL_BYTE_CASES = [
    (None, "post", "/auth/register", {"firstName": "a\x00b"}),
    (None, "post", "/auth/register", {"lastName": "\x00"}),
    (None, "post", "/auth/login", {"email": "a\x00@example.com", "password": "x"}),
    ("merchant", "post", "/products", {"name": "a\x00b", "price": "1.00", "availableUnits": 1}),
    ("merchant", "post", "/products", {"name": "ok", "description": "\x00", "price": "1.00", "availableUnits": 1}),
    ("merchant", "patch", "/products/{product}", {"name": "\x00"}),
    ("alice", "post", "/wallet/deposit", {"amount": "1.00", "description": "a\x00"}),
    ("merchant", "post", "/orders/{paid}/refund", {"reason": "a\x00b"}),
]


@pytest.mark.parametrize(("who", "method", "path", "body"), NULL_BYTE_CASES)
def test_null_bytes_are_refused_with_400(world, client_for, api_client, who, method, path, body):
    client = client_for(getattr(world, who)) if who else api_client
    if path == "/auth/register":
        body = {"email": "nul@example.com", "password": "SecurePass123!", "role": "USER", **body}
    before = state()
    response = getattr(client, method)(API + path.format(product=world.product.pk, paid=world.paid.pk), body)
    error(response, 400, "VALIDATION_ERROR")
    assert state() == before


@pytest.mark.parametrize("query", ["search=a%00b", "search=%00", "merchantId=%00", "minPrice=1%00"])
def test_null_bytes_in_the_search_are_400_not_500(world, api_client, query):
    error(api_client.get(f"{API}/products?{query}"), 400, "VALIDATION_ERROR")


# --- business rules an attacker would try ------------------------------------------------------


def test_a_merchant_cannot_buy_their_own_product(world, client_for):
    before = state()
    response = client_for(world.merchant).post(
        f"{API}/orders", {"productId": str(world.product.pk), "paymentMethod": "WALLET"}
    )
    error(response, 400, "OWN_PRODUCT")
    assert state() == before


@pytest.mark.parametrize("quantity", [-1, 0, 1.5, "2", True, None, 101, 10**20, [1], {"n": 1}])
def test_quantity_must_be_a_whole_number_from_1_to_100(world, client_for, quantity):
    before = state()
    response = client_for(world.bob).post(
        f"{API}/orders", {"productId": str(world.product.pk), "paymentMethod": "WALLET", "quantity": quantity}
    )
    assert "quantity" in error(response, 400, "VALIDATION_ERROR")["details"]
    assert state() == before


@pytest.mark.parametrize("amount", ["-10.00", "0", "0.001", "NaN", "Infinity", "1e999", True, None, "1,00"])
def test_amounts_that_are_not_money_are_refused(world, client_for, amount):
    before = state()
    for path in ("/wallet/deposit", "/wallet/withdraw"):
        assert (
            "amount"
            in error(client_for(world.bob).post(API + path, {"amount": amount}), 400, "VALIDATION_ERROR")["details"]
        )
    assert state() == before


# (who, method, path, body, the fields that must be named). Fields the server owns (balances,
# owners, statuses, prices, ids, roles) are never taken from a body: the request is refused.
MASS_ASSIGNMENT = [
    ("bob", "post", "/wallet/deposit", {"amount": "10.00", "balance": "1000000.00"}, {"balance"}),
    ("bob", "post", "/wallet/deposit", {"amount": "10.00", "userId": "{alice}"}, {"userId"}),
    ("bob", "post", "/wallet/withdraw", {"amount": "1.00", "walletId": "{alice_wallet}"}, {"walletId"}),
    ("bob", "post", "/wallet/top-ups", {"amount": "10.00", "status": "COMPLETED"}, {"status"}),
    (
        "rival",
        "post",
        "/products",
        {"name": "X", "price": "1.00", "availableUnits": 1, "merchantId": "{merchant}"},
        {"merchantId"},
    ),
    (
        "rival",
        "post",
        "/products",
        {"name": "X", "price": "1.00", "availableUnits": 1, "initialUnits": 9, "currency": "EUR"},
        {"initialUnits", "currency"},
    ),
    ("merchant", "patch", "/products/{product}", {"merchantId": "{rival}"}, {"merchantId"}),
    ("merchant", "patch", "/products/{product}", {"id": "{hidden}", "createdAt": "2000-01-01"}, {"id", "createdAt"}),
    (
        "bob",
        "post",
        "/orders",
        {"productId": "{product}", "paymentMethod": "WALLET", "userId": "{alice}"},
        {"userId"},
    ),
    (
        "bob",
        "post",
        "/orders",
        {"productId": "{product}", "paymentMethod": "WALLET", "amount": "0.01", "unitPrice": "0.01"},
        {"amount", "unitPrice"},
    ),
    (
        "bob",
        "post",
        "/orders",
        {"productId": "{product}", "paymentMethod": "WALLET", "status": "COMPLETED", "merchantId": "{bob}"},
        {"status", "merchantId"},
    ),
    ("merchant", "post", "/orders/{paid}/refund", {"reason": "x", "status": "COMPLETED"}, {"status"}),
    ("merchant", "post", "/orders/{paid}/refund", {"amount": "1000.00"}, {"amount"}),
    (
        None,
        "post",
        "/auth/register",
        {"email": "m@example.com", "password": "SecurePass123!", "role": "USER", "balance": "100.00"},
        {"balance"},
    ),
]


@pytest.mark.parametrize(("who", "method", "path", "body", "fields"), MASS_ASSIGNMENT)
def test_mass_assignment_is_refused_and_changes_nothing(world, client_for, api_client, who, method, path, body, fields):
    ids = {
        "alice": world.alice.pk,
        "bob": world.bob.pk,
        "merchant": world.merchant.pk,
        "rival": world.rival.pk,
        "product": world.product.pk,
        "hidden": world.hidden.pk,
        "paid": world.paid.pk,
        "alice_wallet": Wallet.objects.get(user=world.alice).pk,
    }
    body = {key: value.format(**ids) if isinstance(value, str) else value for key, value in body.items()}
    client = client_for(getattr(world, who)) if who else api_client
    before = state()
    response = getattr(client, method)(API + path.format(**ids), body)
    assert fields <= set(error(response, 400, "VALIDATION_ERROR")["details"])
    assert state() == before
