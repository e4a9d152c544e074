"""The Stripe gateway through the real SDK, against the fake Stripe server (no mocks)."""

import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from urllib.parse import urlsplit

import pytest
from django.test import override_settings

from payments import gateway
from payments.gateway import (
    CheckoutSession,
    GatewayError,
    GatewayNotConfigured,
    WebhookPayloadInvalid,
    WebhookSignatureInvalid,
)
from payments.testing.fake_stripe import build_event, encode_event, parse_form, sign_payload

ORDER_ID = "0b7f6a52-4a8e-4c1e-9d55-8f2f0d6c1a11"


def in_35_minutes() -> datetime:
    return (datetime.now(UTC) + timedelta(minutes=35)).replace(microsecond=0)


def create(**overrides) -> CheckoutSession:
    kwargs = {
        "reference_id": ORDER_ID,
        "kind": "order",
        "name": "Blue mug",
        "unit_amount": Decimal("19.99"),
        "quantity": 3,
        "currency": "USD",
        "customer_email": "buyer@example.com",
        "idempotency_key": f"checkout-{ORDER_ID}",
        "expires_at": in_35_minutes(),
    }
    kwargs.update(overrides)
    return gateway.create_checkout_session(**kwargs)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class TestAmounts:
    @pytest.mark.parametrize(
        ("amount", "minor"),
        [("0.01", 1), ("0.1", 10), ("19.99", 1999), ("20", 2000), ("1.50", 150), ("99999999.99", 9999999999)],
    )
    def test_to_minor_units_is_exact(self, amount, minor):
        assert gateway.to_minor_units(Decimal(amount)) == minor
        assert gateway.from_minor_units(minor) == Decimal(amount)

    def test_from_minor_units_has_two_places(self):
        assert str(gateway.from_minor_units(2000)) == "20.00"
        assert str(gateway.from_minor_units(5)) == "0.05"

    @pytest.mark.parametrize("amount", ["10.005", "0.001", "NaN", "Infinity", "-Infinity"])
    def test_fractions_of_a_cent_and_non_finite_are_refused(self, amount):
        with pytest.raises(ValueError):
            gateway.to_minor_units(Decimal(amount))

    def test_floats_are_refused(self):
        with pytest.raises(TypeError):
            gateway.to_minor_units(19.99)
        with pytest.raises(TypeError):
            gateway.from_minor_units(19.99)


class TestCreateCheckoutSession:
    @override_settings(
        CHECKOUT_SUCCESS_URL="https://shop.example/paid?session={CHECKOUT_SESSION_ID}",
        CHECKOUT_CANCEL_URL="https://shop.example/cancelled",
    )
    def test_sends_what_stripe_needs(self, fake_stripe):
        expires_at = in_35_minutes()
        session = create(expires_at=expires_at)

        request = fake_stripe.last("POST", "/v1/checkout/sessions")
        assert request.params == {
            "mode": "payment",
            "line_items": [
                {
                    "price_data": {"currency": "usd", "unit_amount": "1999", "product_data": {"name": "Blue mug"}},
                    "quantity": "3",
                }
            ],
            "client_reference_id": ORDER_ID,
            "metadata": {"kind": "order", "reference_id": ORDER_ID},
            "payment_intent_data": {"metadata": {"kind": "order", "reference_id": ORDER_ID}},
            "expires_at": str(int(expires_at.timestamp())),
            "success_url": "https://shop.example/paid?session={CHECKOUT_SESSION_ID}",
            "cancel_url": "https://shop.example/cancelled",
            "customer_email": "buyer@example.com",
        }
        assert request.idempotency_key == f"checkout-{ORDER_ID}"
        assert request.authorization == "Bearer sk_test_fake"
        # The SDK talked to the fake on the loopback, nowhere else.
        assert request.host == urlsplit(fake_stripe.url).netloc
        assert request.host.startswith("127.0.0.1:")
        assert len(fake_stripe.requests) == 1

        assert session == CheckoutSession(
            id=session.id,
            url=f"https://checkout.stripe.com/c/pay/{session.id}",
            payment_intent_id=None,
            status="open",
            payment_status="unpaid",
            amount_total=Decimal("59.97"),
            currency="usd",
            client_reference_id=ORDER_ID,
            metadata={"kind": "order", "reference_id": ORDER_ID},
        )
        assert session.id.startswith("cs_test_")
        assert not session.is_paid
        assert fake_stripe.sessions[session.id]["amount_total"] == 5997

    def test_a_topup_without_email(self, fake_stripe):
        create(kind="topup", reference_id="topup-1", name="Wallet top-up", quantity=1, customer_email=None)
        params = fake_stripe.last("POST", "/v1/checkout/sessions").params
        assert "customer_email" not in params
        assert params["metadata"] == {"kind": "topup", "reference_id": "topup-1"}
        assert params["client_reference_id"] == "topup-1"

    def test_the_same_idempotency_key_returns_the_same_session(self, fake_stripe):
        expires_at = in_35_minutes()
        first = create(expires_at=expires_at)
        again = create(expires_at=expires_at)
        assert again == first
        assert len(fake_stripe.sessions) == 1
        assert [r.idempotency_key for r in fake_stripe.calls("POST")] == [f"checkout-{ORDER_ID}"] * 2

    def test_the_same_key_with_other_parameters_is_refused(self, fake_stripe):
        expires_at = in_35_minutes()
        create(expires_at=expires_at)
        with pytest.raises(GatewayError) as caught:
            create(expires_at=expires_at, quantity=4)
        assert caught.value.http_status == 400
        assert not caught.value.transient
        assert len(fake_stripe.sessions) == 1

    def test_concurrent_creations_with_one_key_make_one_session(self, fake_stripe):
        expires_at = in_35_minutes()
        with ThreadPoolExecutor(max_workers=5) as pool:
            sessions = list(pool.map(lambda _: create(expires_at=expires_at), range(5)))
        assert len({s.id for s in sessions}) == 1
        assert len(fake_stripe.sessions) == 1

    def test_another_key_makes_another_session(self, fake_stripe):
        first = create(idempotency_key="checkout-a")
        second = create(idempotency_key="checkout-b")
        assert first.id != second.id

    @pytest.mark.parametrize(
        "overrides",
        [
            {"unit_amount": Decimal("19.999")},
            {"unit_amount": Decimal("0")},
            {"unit_amount": Decimal("-1.00")},
            {"quantity": 0},
            {"quantity": True},
            {"kind": "gift"},
            {"name": "  "},
            {"currency": "JPY"},
            {"currency": "dollars"},
            {"expires_at": datetime.now() + timedelta(hours=1)},  # naive  # noqa: DTZ005
            {"idempotency_key": ""},
        ],
    )
    def test_bad_arguments_are_refused_before_calling_stripe(self, fake_stripe, overrides):
        with pytest.raises(ValueError):
            create(**overrides)
        assert fake_stripe.requests == []

    def test_stripe_refuses_an_expiry_under_30_minutes(self, fake_stripe):
        with pytest.raises(GatewayError) as caught:
            create(expires_at=datetime.now(UTC) + timedelta(minutes=10))
        assert caught.value.http_status == 400


class TestFailures:
    def test_not_configured(self, fake_stripe):
        with override_settings(STRIPE_SECRET_KEY=""):
            assert not gateway.is_configured()
            with pytest.raises(GatewayNotConfigured) as caught:
                create()
            with pytest.raises(GatewayNotConfigured):
                gateway.expire_checkout_session(session_id="cs_test_x")
            with pytest.raises(GatewayNotConfigured):
                gateway.retrieve_checkout_session(session_id="cs_test_x")
            with pytest.raises(GatewayNotConfigured):
                gateway.create_refund(payment_intent_id="pi_test_x", idempotency_key="refund-x")
        assert (caught.value.status_code, caught.value.code) == (503, "GATEWAY_NOT_CONFIGURED")
        assert fake_stripe.requests == []

    def test_configured(self, fake_stripe):
        assert gateway.is_configured()

    def test_not_configured_by_default_in_tests(self):
        assert not gateway.is_configured()
        with pytest.raises(GatewayNotConfigured):
            create()

    def test_stripe_500_is_a_gateway_error_that_hides_stripes_message(self, fake_stripe):
        fake_stripe.fail_next(1, status=500, message="Internal detail sk_live_secret")
        with pytest.raises(GatewayError) as caught:
            create()
        error = caught.value
        assert (error.status_code, error.code) == (502, "GATEWAY_ERROR")
        assert error.message == GatewayError.default_message
        assert "sk_live_secret" not in str(error.detail)
        assert error.details == {}
        assert (error.http_status, error.transient) == (500, True)
        assert error.request_id.startswith("req_test_")
        assert fake_stripe.sessions == {}

    @override_settings(STRIPE_MAX_NETWORK_RETRIES=1)
    def test_the_sdk_retries_with_the_same_idempotency_key(self, fake_stripe):
        fake_stripe.fail_next(1, status=500)
        session = create()
        attempts = fake_stripe.calls("POST", "/v1/checkout/sessions")
        assert [a.idempotency_key for a in attempts] == [f"checkout-{ORDER_ID}"] * 2
        assert list(fake_stripe.sessions) == [session.id]

    @override_settings(STRIPE_MAX_NETWORK_RETRIES=1)
    def test_retries_exhausted(self, fake_stripe):
        fake_stripe.down = True
        with pytest.raises(GatewayError) as caught:
            create()
        assert caught.value.transient
        assert len(fake_stripe.calls("POST", "/v1/checkout/sessions")) == 2
        assert fake_stripe.sessions == {}

    def test_connection_refused(self, fake_stripe):
        base = f"http://127.0.0.1:{closed_port()}"
        with override_settings(STRIPE_API_BASE=base), pytest.raises(GatewayError) as caught:
            create()
        assert caught.value.transient
        assert caught.value.http_status is None

    @override_settings(STRIPE_TIMEOUT_SECONDS=0.2)
    def test_timeout_then_a_retry_with_the_key_finds_the_session_stripe_made(self, fake_stripe):
        fake_stripe.stall_next(1, seconds=1.0)
        expires_at = in_35_minutes()
        with pytest.raises(GatewayError) as caught:
            create(expires_at=expires_at)
        assert caught.value.transient
        # Stripe did create it; the same key finds it instead of making a second one.
        (created,) = fake_stripe.sessions
        assert create(expires_at=expires_at).id == created
        assert len(fake_stripe.sessions) == 1

    @override_settings(STRIPE_TIMEOUT_SECONDS=5, STRIPE_MAX_NETWORK_RETRIES=2)
    def test_a_call_under_a_deadline_waits_only_for_the_time_left_and_retries_only_within_it(self, fake_stripe):
        fake_stripe.stall_next(3, seconds=2.0)
        started = time.monotonic()
        with gateway.deadline(0.6), pytest.raises(GatewayError) as caught:
            gateway.retrieve_payment_intent(payment_intent_id="pi_test_nope")
        assert caught.value.transient
        assert time.monotonic() - started < 1.5  # not 3 tries of 5 s
        assert len(fake_stripe.calls("GET")) == 1  # after the first try no time was left for a second

    @override_settings(STRIPE_TIMEOUT_SECONDS=5, STRIPE_MAX_NETWORK_RETRIES=2)
    def test_a_retry_that_still_fits_in_the_deadline_is_made(self, fake_stripe):
        fake_stripe.fail_next(1, status=500)
        with gateway.deadline(5):
            create()
        assert len(fake_stripe.calls("POST", "/v1/checkout/sessions")) == 2

    def test_once_the_deadline_is_spent_no_call_is_made_and_its_outcome_is_unknown(self, fake_stripe):
        with gateway.deadline(0.05):
            time.sleep(0.1)
            with pytest.raises(GatewayError) as caught:
                create()
            with pytest.raises(GatewayError):
                gateway.expire_checkout_session(session_id="cs_test_nope")
        assert caught.value.transient and fake_stripe.requests == []

    def test_deadlines_nest_and_the_sooner_one_wins(self):
        assert gateway.time_left() is None
        with gateway.deadline(60):
            with gateway.deadline(1):
                assert gateway.time_left() <= 1
            with gateway.deadline(600):
                assert 59 < gateway.time_left() <= 60
        assert gateway.time_left() is None

    def test_a_wrong_api_key_is_a_gateway_error(self, fake_stripe):
        with override_settings(STRIPE_SECRET_KEY="sk_test_wrong"), pytest.raises(GatewayError) as caught:
            create()
        assert (caught.value.http_status, caught.value.transient) == (401, False)

    def test_the_network_guard_refuses_the_real_stripe(self, network_guard):
        real_stripe = override_settings(
            STRIPE_SECRET_KEY="sk_test_unused", STRIPE_API_BASE="", STRIPE_MAX_NETWORK_RETRIES=0
        )
        with real_stripe, pytest.raises(GatewayError):
            create()
        assert network_guard.blocked == [("api.stripe.com", 443)]
        network_guard.blocked.clear()


class TestSessions:
    def test_retrieve(self, fake_stripe):
        session = create()
        fake_stripe.mark_paid(session.id)
        found = gateway.retrieve_checkout_session(session_id=session.id)
        assert (found.status, found.payment_status, found.is_paid) == ("complete", "paid", True)
        assert found.payment_intent_id.startswith("pi_test_")
        assert fake_stripe.payment_intents[found.payment_intent_id]["metadata"] == {
            "kind": "order",
            "reference_id": ORDER_ID,
        }

    def test_retrieve_unknown(self, fake_stripe):
        with pytest.raises(GatewayError) as caught:
            gateway.retrieve_checkout_session(session_id="cs_test_nope")
        assert caught.value.http_status == 404

    def test_expire_then_expire_again(self, fake_stripe):
        session = create()
        expired = gateway.expire_checkout_session(session_id=session.id)
        assert (expired.id, expired.status, expired.payment_status) == (session.id, "expired", "unpaid")
        assert fake_stripe.sessions[session.id]["status"] == "expired"

        again = gateway.expire_checkout_session(session_id=session.id)
        assert again == expired
        # Stripe refused the second expire (400); the gateway read the session instead.
        assert [(r.method, r.path) for r in fake_stripe.requests[1:]] == [
            ("POST", f"/v1/checkout/sessions/{session.id}/expire"),
            ("POST", f"/v1/checkout/sessions/{session.id}/expire"),
            ("GET", f"/v1/checkout/sessions/{session.id}"),
        ]

    def test_expiring_a_paid_session_returns_it_paid(self, fake_stripe):
        session = create()
        fake_stripe.mark_paid(session.id)
        state = gateway.expire_checkout_session(session_id=session.id)
        assert (state.status, state.is_paid) == ("complete", True)
        assert state.payment_intent_id

    def test_expiring_an_unknown_session_is_a_gateway_error(self, fake_stripe):
        with pytest.raises(GatewayError):
            gateway.expire_checkout_session(session_id="cs_test_nope")

    def test_expire_when_stripe_is_down(self, fake_stripe):
        session = create()
        fake_stripe.down = True
        with pytest.raises(GatewayError):
            gateway.expire_checkout_session(session_id=session.id)
        assert fake_stripe.sessions[session.id]["status"] == "open"


class TestRefunds:
    def paid_intent(self, fake_stripe) -> str:
        session = create()
        return fake_stripe.mark_paid(session.id)["payment_intent"]

    def test_full_refund_is_idempotent(self, fake_stripe):
        intent = self.paid_intent(fake_stripe)
        refund = gateway.create_refund(
            payment_intent_id=intent,
            amount=None,
            idempotency_key=f"refund-{ORDER_ID}",
            reason="requested_by_customer",
            metadata={"order_id": ORDER_ID, "merchant_reason": "Out of stock"},
        )
        assert (refund.status, refund.amount, refund.currency, refund.payment_intent_id) == (
            "succeeded",
            Decimal("59.97"),
            "usd",
            intent,
        )
        request = fake_stripe.last("POST", "/v1/refunds")
        assert request.idempotency_key == f"refund-{ORDER_ID}"
        assert request.params == {
            "payment_intent": intent,
            "reason": "requested_by_customer",
            "metadata": {"order_id": ORDER_ID, "merchant_reason": "Out of stock"},
        }

        again = gateway.create_refund(
            payment_intent_id=intent,
            amount=None,
            idempotency_key=f"refund-{ORDER_ID}",
            reason="requested_by_customer",
            metadata={"order_id": ORDER_ID, "merchant_reason": "Out of stock"},
        )
        assert again == refund
        assert len(fake_stripe.refunds) == 1

    def test_partial_refund_in_cents_then_no_more_than_paid(self, fake_stripe):
        intent = self.paid_intent(fake_stripe)
        refund = gateway.create_refund(payment_intent_id=intent, amount=Decimal("19.99"), idempotency_key="r1")
        assert refund.amount == Decimal("19.99")
        assert fake_stripe.last("POST", "/v1/refunds").params["amount"] == "1999"
        with pytest.raises(GatewayError) as caught:
            gateway.create_refund(payment_intent_id=intent, amount=Decimal("40.00"), idempotency_key="r2")
        assert caught.value.stripe_code == "amount_too_large"
        gateway.create_refund(payment_intent_id=intent, amount=None, idempotency_key="r3")
        with pytest.raises(GatewayError) as caught:
            gateway.create_refund(payment_intent_id=intent, amount=None, idempotency_key="r4")
        assert caught.value.stripe_code == "charge_already_refunded"

    @pytest.mark.parametrize(
        "overrides", [{"amount": Decimal("0.001")}, {"amount": Decimal("0")}, {"reason": "changed my mind"}]
    )
    def test_bad_arguments(self, fake_stripe, overrides):
        with pytest.raises(ValueError):
            gateway.create_refund(**{"payment_intent_id": "pi_test_x", "idempotency_key": "r", **overrides})
        assert fake_stripe.requests == []


class TestStripesRecords:
    """What the refunds and reconciliation ask Stripe: refunds by payment intent or since a
    moment, sessions since a moment (all pages), a PaymentIntent."""

    def test_refunds_of_one_payment_intent_whoever_made_them(self, fake_stripe):
        intent = fake_stripe.mark_paid(create().id)["payment_intent"]
        other = fake_stripe.mark_paid(create(idempotency_key="other").id)["payment_intent"]
        ours = gateway.create_refund(payment_intent_id=intent, amount=Decimal("9.97"), idempotency_key="r1")
        dashboard = fake_stripe.refund_in_dashboard(intent)  # the other 50.00, made without us
        fake_stripe.refund_in_dashboard(other)

        found = gateway.list_refunds(payment_intent_id=intent)

        assert [r.id for r in found] == [dashboard["id"], ours.id]  # newest first
        assert [r.amount for r in found] == [Decimal("50.00"), Decimal("9.97")] and all(r.is_made for r in found)
        assert fake_stripe.last("GET", "/v1/refunds").params == {"payment_intent": intent, "limit": "100"}
        assert gateway.list_refunds(payment_intent_id="pi_test_none") == []

    def test_lists_follow_every_page(self, fake_stripe):
        intents = [fake_stripe.mark_paid(create(idempotency_key=f"k{n}").id)["payment_intent"] for n in range(3)]
        for intent in intents:
            fake_stripe.refund_in_dashboard(intent)
        since = datetime.now(UTC) - timedelta(minutes=1)
        fake_stripe.max_page_size = 2

        refunds = gateway.list_refunds(created_since=since)
        sessions = gateway.list_checkout_sessions(created_since=since)

        assert {r.payment_intent_id for r in refunds} == set(intents)
        assert len(sessions) == 3 and {s.payment_status for s in sessions} == {"paid"}
        assert len(fake_stripe.calls("GET", "/v1/refunds")) == 2  # two pages
        assert fake_stripe.calls("GET", "/v1/refunds")[1].params["starting_after"] == refunds[1].id
        assert gateway.list_refunds(created_since=datetime.now(UTC) + timedelta(minutes=1)) == []

    def test_a_payment_intent(self, fake_stripe):
        session = create()
        fake_stripe.mark_completed_unpaid(session.id)
        intent_id = fake_stripe.sessions[session.id]["payment_intent"]
        assert gateway.retrieve_payment_intent(payment_intent_id=intent_id).status == "processing"
        fake_stripe.mark_async_failed(session.id)
        intent = gateway.retrieve_payment_intent(payment_intent_id=intent_id)
        assert (intent.status, intent.amount_received) == ("requires_payment_method", Decimal("0.00"))

    def test_listing_needs_a_payment_intent_or_a_moment(self, fake_stripe):
        with pytest.raises(ValueError):
            gateway.list_refunds()


def _auth() -> dict:
    from payments.testing.fake_stripe import API_KEY

    return {"authorization": f"Bearer {API_KEY}"}


class TestConstructEvent:
    def test_a_good_signature(self, fake_stripe):
        session = create()
        event = fake_stripe.session_event("checkout.session.completed", fake_stripe.mark_paid(session.id)["id"])
        body, header = fake_stripe.signed(event)
        received = gateway.construct_event(payload=body, signature_header=header)
        assert received == event
        assert type(received) is dict
        paid = CheckoutSession.from_stripe(received["data"]["object"])
        assert (paid.id, paid.is_paid, paid.client_reference_id) == (session.id, True, ORDER_ID)
        assert paid.metadata == {"kind": "order", "reference_id": ORDER_ID}

    def test_one_of_several_signatures_may_match(self, fake_stripe):
        # While a secret is being rotated Stripe signs with both.
        body = encode_event(build_event("charge.refunded", {"id": "ch_test_1"}))
        good = sign_payload(body, fake_stripe.webhook_secret)
        other = sign_payload(body, "whsec_old")
        header = f"{good},v1={other.split('v1=')[1]}"
        assert gateway.construct_event(payload=body, signature_header=header)["type"] == "charge.refunded"

    def event_body(self) -> bytes:
        return encode_event(build_event("checkout.session.completed", {"id": "cs_test_1"}, "evt_test_1"))

    def test_wrong_secret(self, fake_stripe):
        body = self.event_body()
        with pytest.raises(WebhookSignatureInvalid) as caught:
            gateway.construct_event(payload=body, signature_header=sign_payload(body, "whsec_someone_else"))
        assert (caught.value.status_code, caught.value.code) == (400, "INVALID_SIGNATURE")

    def test_tampered_body(self, fake_stripe):
        body = self.event_body()
        header = sign_payload(body, fake_stripe.webhook_secret)
        tampered = body.replace(b"cs_test_1", b"cs_test_2")
        with pytest.raises(WebhookSignatureInvalid):
            gateway.construct_event(payload=tampered, signature_header=header)

    def test_older_than_the_tolerance(self, fake_stripe):
        body = self.event_body()
        stale = int(time.time()) - gateway.WEBHOOK_TOLERANCE_SECONDS - 60
        with pytest.raises(WebhookSignatureInvalid):
            gateway.construct_event(
                payload=body, signature_header=sign_payload(body, fake_stripe.webhook_secret, stale)
            )

    def test_recent_enough(self, fake_stripe):
        body = self.event_body()
        recent = int(time.time()) - gateway.WEBHOOK_TOLERANCE_SECONDS + 60
        header = sign_payload(body, fake_stripe.webhook_secret, recent)
        assert gateway.construct_event(payload=body, signature_header=header)["id"] == "evt_test_1"

    @pytest.mark.parametrize("header", [None, "", "garbage", "t=abc,v1=def", "t=1700000000", "v1=abcdef"])
    def test_missing_or_malformed_header(self, fake_stripe, header):
        with pytest.raises(WebhookSignatureInvalid):
            gateway.construct_event(payload=self.event_body(), signature_header=header)

    @pytest.mark.parametrize(
        "body", [b"not json", b"[]", b"{}", json.dumps({"id": "evt_1", "object": "event", "type": "x"}).encode()]
    )
    def test_a_correctly_signed_body_that_is_not_an_event(self, fake_stripe, body):
        header = sign_payload(body, fake_stripe.webhook_secret)
        with pytest.raises(WebhookPayloadInvalid) as caught:
            gateway.construct_event(payload=body, signature_header=header)
        assert (caught.value.status_code, caught.value.code) == (400, "INVALID_PAYLOAD")

    def test_a_body_that_is_not_utf8(self, fake_stripe):
        with pytest.raises(WebhookPayloadInvalid):
            gateway.construct_event(payload=b"\xff\xfe", signature_header=f"t={int(time.time())},v1=00")

    def test_no_webhook_secret(self, fake_stripe):
        body = self.event_body()
        header = sign_payload(body, fake_stripe.webhook_secret)
        with override_settings(STRIPE_WEBHOOK_SECRET=""), pytest.raises(GatewayNotConfigured):
            gateway.construct_event(payload=body, signature_header=header)


class TestFakeStripe:
    def test_parse_form(self):
        body = (
            "mode=payment&line_items[0][price_data][unit_amount]=1999&line_items[0][quantity]=3"
            "&line_items[1][quantity]=1&metadata[kind]=order&expand[]=a&expand[]=b&empty="
        )
        assert parse_form(body) == {
            "mode": "payment",
            "line_items": [{"price_data": {"unit_amount": "1999"}, "quantity": "3"}, {"quantity": "1"}],
            "metadata": {"kind": "order"},
            "expand": ["a", "b"],
            "empty": "",
        }

    def test_sign_payload_is_stripes_scheme(self):
        import hashlib
        import hmac

        header = sign_payload(b'{"a":1}', "whsec_x", timestamp=1700000000)
        expected = hmac.new(b"whsec_x", b'1700000000.{"a":1}', hashlib.sha256).hexdigest()
        assert header == f"t=1700000000,v1={expected}"

    def test_a_lost_answer_after_stripe_acted(self, fake_stripe):
        """Stripe made the refund; the client heard nothing (the SDK's retries replay the
        stored answer, lost again), then after 24 h the key is forgotten: a second refund
        of the whole charge is refused as `charge_already_refunded`."""
        intent = fake_stripe.mark_paid(create().id)["payment_intent"]
        fake_stripe.lose_responses("/v1/refunds", method="POST")
        with override_settings(STRIPE_MAX_NETWORK_RETRIES=1), pytest.raises(GatewayError) as caught:
            gateway.create_refund(payment_intent_id=intent, idempotency_key="r1")
        assert caught.value.transient and len(fake_stripe.refunds) == 1
        assert len(fake_stripe.calls("POST", "/v1/refunds")) == 2  # the SDK's retry, same key, answer lost too
        assert len(gateway.list_refunds(payment_intent_id=intent)) == 1  # GETs are answered

        fake_stripe.keep_responses()
        assert gateway.create_refund(payment_intent_id=intent, idempotency_key="r1").id in fake_stripe.refunds
        fake_stripe.forget_idempotency_keys()
        with pytest.raises(GatewayError) as caught:
            gateway.create_refund(payment_intent_id=intent, idempotency_key="r1")
        assert caught.value.stripe_code == "charge_already_refunded" and not caught.value.transient

    def test_a_charge_shows_what_was_refunded(self, fake_stripe):
        intent = fake_stripe.payment_intents[fake_stripe.mark_paid(create().id)["payment_intent"]]
        fake_stripe.refund_in_dashboard(intent["id"], amount=1000)
        charge = fake_stripe.charge_event("charge.refunded", intent["id"])["data"]["object"]
        assert (charge["amount_refunded"], charge["refunded"], charge["payment_intent"]) == (1000, False, intent["id"])
        status, body, _, _ = fake_stripe.handle("GET", f"/v1/charges/{intent['latest_charge']}", _auth(), "", "")
        assert status == 200 and body["amount_refunded"] == 1000

    def test_state_is_reset_between_tests(self, fake_stripe):
        assert fake_stripe.requests == [] and fake_stripe.sessions == {}
        create()

    def test_state_is_reset_between_tests_too(self, fake_stripe):
        assert fake_stripe.requests == [] and fake_stripe.sessions == {}
