"""GET /metrics and the business counters of paymentflow/metrics.py, in this process's
registry. (Several gunicorn workers adding up: tests/test_scale_out.py.)

Money and order counters move when their transaction commits: pytest-django's test
transaction never commits, so these tests run the requests inside
`django_capture_on_commit_callbacks(execute=True)`, which runs what would run at the
commit, and nothing that a rolled-back savepoint dropped.
"""

from decimal import Decimal

import pytest
from django.db import transaction
from django.test import override_settings
from prometheus_client import REGISTRY
from rest_framework.test import APIClient

from catalog.tests.factories import ProductFactory
from orders.models import Order
from payments.testing.fake_stripe import build_event
from wallets.services import wallet_deposit
from wallets.tests.factories import TopUpFactory, WalletFactory, funded_wallet
from webhooks.tests.utils import deliver, deliver_session_event, paid_session_event

pytestmark = pytest.mark.django_db
ORDERS = "/api/v1/orders"


def value(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class Delta:
    """The change of some samples across a block: `with Delta(...) as d: ...; d[name, labels]`."""

    def __init__(self, *samples: tuple[str, dict]):
        self.samples = samples

    def __enter__(self):
        self.before = {(name, tuple(sorted(labels.items()))): value(name, **labels) for name, labels in self.samples}
        return self

    def __exit__(self, *exc):
        self.after = {key: value(key[0], **dict(key[1])) for key in self.before}

    def __getitem__(self, sample: tuple[str, dict]) -> float:
        key = (sample[0], tuple(sorted(sample[1].items())))
        return self.after[key] - self.before[key]


def orders(method, status):
    return ("paymentflow_orders_total", {"payment_method": method, "status": status})


def legs(type_):
    return ("paymentflow_ledger_movements_total", {"type": type_})


def errors(route, code, status):
    return ("paymentflow_api_errors_total", {"route": route, "code": code, "status": str(status)})


@pytest.fixture
def product(merchant):
    WalletFactory(user=merchant)
    return ProductFactory(merchant=merchant, price=Decimal("25.00"), available_units=10)


class TestEndpoint:
    def test_without_a_token_configured_there_is_no_endpoint(self, api_client):
        assert api_client.get("/metrics").status_code == 404

    @override_settings(METRICS_TOKEN="scrape-me")
    def test_the_token_is_required(self, api_client):
        missing = api_client.get("/metrics")
        assert missing.status_code == 401 and missing["WWW-Authenticate"].startswith("Bearer")
        assert api_client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-mE").status_code == 401
        assert api_client.get("/metrics", HTTP_AUTHORIZATION="Basic scrape-me").status_code == 401

    @override_settings(METRICS_TOKEN="scrape-me")
    def test_prometheus_text_with_the_token(self, api_client):
        response = api_client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-me")
        assert response.status_code == 200 and response["Content-Type"].startswith("text/plain")
        text = response.content.decode()
        for family in ("paymentflow_orders", "paymentflow_api_errors", "django_http_requests_latency", "django_db"):
            assert f"# TYPE {family}" in text, family
        assert api_client.post("/metrics", HTTP_AUTHORIZATION="Bearer scrape-me").status_code == 405


class TestOrdersAndLedger:
    def test_a_wallet_purchase_counts_its_order_and_legs_at_the_commit(
        self, buyer, buyer_client, product, django_capture_on_commit_callbacks
    ):
        funded_wallet(user=buyer, amount="100.00")
        amount = ("paymentflow_order_amount_sum", {"payment_method": "WALLET"})
        amount_count = ("paymentflow_order_amount_count", {"payment_method": "WALLET"})
        paid = ("paymentflow_ledger_amount_total", {"type": "PAYMENT"})
        with Delta(orders("WALLET", "COMPLETED"), legs("PAYMENT"), legs("REVENUE"), paid, amount, amount_count) as d:
            with django_capture_on_commit_callbacks(execute=True):
                response = buyer_client.post(
                    ORDERS, {"productId": str(product.pk), "paymentMethod": "WALLET", "quantity": 2}
                )
            assert response.status_code == 201
        assert d[orders("WALLET", "COMPLETED")] == 1
        assert d[legs("PAYMENT")] == d[legs("REVENUE")] == 1
        assert d[paid] == d[amount] == 50.0 and d[amount_count] == 1

    def test_a_refusal_counts_its_code_and_no_order(
        self, buyer, buyer_client, product, django_capture_on_commit_callbacks
    ):
        funded_wallet(user=buyer, amount="10.00")
        refused = errors("api/v1/orders", "INSUFFICIENT_FUNDS", 400)
        with Delta(refused, orders("WALLET", "COMPLETED"), legs("PAYMENT")) as d:
            with django_capture_on_commit_callbacks(execute=True):
                response = buyer_client.post(ORDERS, {"productId": str(product.pk), "paymentMethod": "WALLET"})
            assert response.status_code == 400
        assert d[refused] == 1
        assert d[orders("WALLET", "COMPLETED")] == d[legs("PAYMENT")] == 0

    def test_a_rolled_back_movement_counts_nothing(self, django_capture_on_commit_callbacks):
        wallet = WalletFactory()
        with Delta(legs("DEPOSIT")) as d, django_capture_on_commit_callbacks(execute=True):
            with pytest.raises(RuntimeError), transaction.atomic():
                wallet_deposit(wallet=wallet, amount=Decimal("5.00"))
                raise RuntimeError("rolled back after the legs were written")
            wallet_deposit(wallet=wallet, amount=Decimal("7.00"))
        assert d[legs("DEPOSIT")] == 1

    def test_a_refund_counts_its_transition_and_legs(
        self, buyer, buyer_client, product, client_for, django_capture_on_commit_callbacks
    ):
        funded_wallet(user=buyer, amount="100.00")
        order = buyer_client.post(ORDERS, {"productId": str(product.pk), "paymentMethod": "WALLET"}).json()
        with Delta(orders("WALLET", "REFUNDED"), legs("REFUND")) as d:
            with django_capture_on_commit_callbacks(execute=True):
                response = client_for(product.merchant).post(f"{ORDERS}/{order['id']}/refund", {})
            assert response.status_code == 200
        assert d[orders("WALLET", "REFUNDED")] == 1 and d[legs("REFUND")] == 2


class TestReplaysAndThrottling:
    def test_an_idempotent_replay_is_counted(self, buyer, buyer_client):
        WalletFactory(user=buyer)
        key = {"HTTP_IDEMPOTENCY_KEY": "metrics-replay"}
        with Delta(("paymentflow_idempotent_replays_total", {})) as d:
            first = buyer_client.post("/api/v1/wallet/deposit", {"amount": "5.00"}, **key)
            again = buyer_client.post("/api/v1/wallet/deposit", {"amount": "5.00"}, **key)
        assert first.status_code == again.status_code == 200 and again["Idempotent-Replayed"] == "true"
        assert d[("paymentflow_idempotent_replays_total", {})] == 1

    @override_settings(AUTH_THROTTLE_RATE="2/minute")
    def test_a_throttled_request_is_counted_by_scope_and_code(self, api_client):
        throttled = ("paymentflow_throttled_requests_total", {"scope": "login"})
        answered = errors("api/v1/auth/login", "THROTTLED", 429)
        with Delta(throttled, answered) as d:
            statuses = [
                api_client.post("/api/v1/auth/login", {"email": "x@example.com", "password": "wrong-one"}).status_code
                for _ in range(3)
            ]
        assert statuses == [401, 401, 429]
        assert d[throttled] == d[answered] == 1


class TestStripeEvents:
    def test_card_orders_and_their_events_by_type_and_outcome(
        self, fake_stripe, buyer_client, product, django_capture_on_commit_callbacks
    ):
        completed = "checkout.session.completed"
        samples = [
            orders("GATEWAY", "PENDING"),
            orders("GATEWAY", "COMPLETED"),
            *(
                ("paymentflow_stripe_events_total", {"type": completed, "outcome": o})
                for o in ("processed", "duplicate", "ignored")
            ),
            ("paymentflow_stripe_events_total", {"type": "charge.refunded", "outcome": "failed"}),
            ("paymentflow_stripe_events_total", {"type": "customer.created", "outcome": "ignored"}),
        ]
        with Delta(*samples) as d, django_capture_on_commit_callbacks(execute=True):
            body = {"productId": str(product.pk), "paymentMethod": "GATEWAY"}
            paid = buyer_client.post(ORDERS, body).json()
            fake_stripe.mark_paid(paid["stripeSessionId"])
            event, response = deliver_session_event(fake_stripe, completed, paid["stripeSessionId"])
            assert response.status_code == 200
            assert deliver(fake_stripe, event).status_code == 200  # Stripe's retry

            # A paid session that is not the one we created for the top-up: not ours, IGNORED.
            topup = TopUpFactory(wallet=WalletFactory(), amount=Decimal("5.00"))
            foreign = paid_session_event(fake_stripe, topup)
            foreign["data"]["object"]["id"] = "cs_test_someone_else"
            assert deliver(fake_stripe, foreign).status_code == 200
            # A refund event whose check at Stripe fails: FAILED (Stripe delivers it again).
            intent = fake_stripe.sessions[paid["stripeSessionId"]]["payment_intent"]
            refunded = fake_stripe.charge_event("charge.refunded", intent)
            fake_stripe.down = True
            assert deliver(fake_stripe, refunded).status_code == 500
            fake_stripe.down = False

            assert (
                deliver(fake_stripe, build_event("customer.created", {"id": "cus_1", "object": "customer"})).status_code
                == 200
            )
        assert Order.objects.get(pk=paid["id"]).status == Order.Status.COMPLETED
        counts = [d[sample] for sample in samples]
        assert counts == [1, 1, 1, 1, 1, 1, 1]


def test_requests_are_counted_by_django_prometheus(api_client):
    sample = (
        "django_http_responses_total_by_status_view_method_total",
        {"status": "200", "view": "healthz", "method": "GET"},
    )
    with Delta(sample) as d:
        assert APIClient().get("/healthz").status_code == 200
    assert d[sample] == 1
