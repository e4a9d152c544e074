"""Schemathesis fuzzing of the live OpenAPI schema, in process, inside pytest-django's database.

The schema is fetched from `/api/schema/` through the WSGI app (what clients download), and
every operation in it is called with generated requests as a buyer and as a merchant who
own real objects (wallets with money, products, orders), so that `{id}` paths and
`productId` bodies often name something that exists. Checks, on every response:

- no 5xx (`not_a_server_error`);
- the status code is documented, the content type and the body match the schema;
- every error carries the contract's envelope (`error_envelope` below);
- and, in a run of schema-violating requests only, that each is refused
  (`negative_data_rejection`).

Nothing is excluded. The Stripe webhook is fuzzed too (with the fake Stripe's secret set,
unsigned garbage must be a 400 in the envelope, never a 500); logout cannot end the run,
since it revokes only the refresh token it is given (the fuzzer cannot guess ours) and
access tokens are stateless. `Idempotency-Key` is a documented header, so it is fuzzed too.

Bounded and reproducible: a fixed seed, derandomized Hypothesis, a few examples per
operation. Run just this: `make test PYTEST_ARGS="-k fuzz"`.
"""

import os
from decimal import Decimal

import pytest
import schemathesis
from django.core import signals
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from accounts.services import user_issue_tokens
from accounts.tests.factories import MerchantFactory, UserFactory
from catalog.tests.factories import ProductFactory
from orders.models import Order
from orders.services import order_purchase
from paymentflow.testing.assertions import ENVELOPE_KEYS
from paymentflow.wsgi import application
from wallets.tests.factories import funded_wallet

# Bounded for `make test`; FUZZ_EXAMPLES=200 FUZZ_SEED=<n> for a deeper local run.
EXAMPLES_PER_OPERATION = int(os.environ.get("FUZZ_EXAMPLES", "12"))
SEED = int(os.environ.get("FUZZ_SEED", "20260101"))

CONFIG = schemathesis.Config.from_dict(
    {
        "seed": SEED,
        "generation": {"max-examples": EXAMPLES_PER_OPERATION, "deterministic": True, "database": "none"},
    }
)


@schemathesis.check
def error_envelope(ctx, response, case):
    """Every error answer (4xx and 5xx) is the contract's envelope, with the status it was sent with."""
    if response.status_code < 400:
        return None
    content_type = response.headers.get("content-type", [""])[0]
    assert content_type.startswith("application/json"), (
        f"{response.status_code} {content_type} for {case.method} {case.formatted_path}: {response.text[:300]!r}"
    )
    body = response.json()
    assert isinstance(body, dict) and set(body) == ENVELOPE_KEYS, f"not the error envelope: {body!r}"
    assert body["statusCode"] == response.status_code, body
    assert body["code"] and body["code"] == body["code"].upper(), body
    return None


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    error_envelope,
]


class World:
    """A buyer and a merchant with money and objects, and a stranger owning others."""

    def __init__(self):
        self.buyer = UserFactory()
        self.merchant = MerchantFactory()
        other_merchant = MerchantFactory()
        stranger = UserFactory()
        for user in (self.buyer, self.merchant, stranger):
            funded_wallet(user=user, amount=Decimal("5000.00"))
        funded_wallet(user=other_merchant, amount=Decimal("100.00"))
        mine = ProductFactory(merchant=self.merchant, price=Decimal("3.00"), available_units=500)
        mine_inactive = ProductFactory(merchant=self.merchant, is_active=False)
        theirs = ProductFactory(merchant=other_merchant, price=Decimal("2.00"), available_units=500)
        theirs_inactive = ProductFactory(merchant=other_merchant, is_active=False)
        orders = [
            order_purchase(buyer=self.buyer, product_id=mine.pk, payment_method=Order.PaymentMethod.WALLET),
            order_purchase(buyer=self.buyer, product_id=theirs.pk, payment_method=Order.PaymentMethod.WALLET),
            order_purchase(buyer=stranger, product_id=theirs.pk, payment_method=Order.PaymentMethod.WALLET),
            order_purchase(buyer=self.merchant, product_id=theirs.pk, payment_method=Order.PaymentMethod.WALLET),
            # PENDING card orders (the fake Stripe made their sessions): cancellable.
            order_purchase(buyer=self.buyer, product_id=mine.pk, payment_method=Order.PaymentMethod.GATEWAY),
            order_purchase(buyer=stranger, product_id=mine.pk, payment_method=Order.PaymentMethod.GATEWAY),
        ]
        self.product_ids = [str(p.pk) for p in (mine, mine_inactive, theirs, theirs_inactive)]
        self.order_ids = [str(o.pk) for o in orders]
        self.auth = {
            role: {"Authorization": f"Bearer {user_issue_tokens(user=user)['access_token']}"}
            for role, user in (("buyer", self.buyer), ("merchant", self.merchant))
        }


# The objects of the running test, for the generation hooks below (one test at a time per
# process: pytest-xdist runs tests in separate processes).
_current: list[World] = []


@pytest.fixture
def fuzz_world(db, fake_stripe):
    # Requests go through the real WSGI handler, whose request_started / request_finished
    # signals would close the connection that holds the test's transaction; Django's own
    # test client detaches the same receiver for the same reason.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    world = World()
    _current.append(world)
    try:
        yield world
    finally:
        _current.remove(world)
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


# Fetched once per process through the WSGI app, as a client would (no database needed).
schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", application, config=CONFIG)


@schema.hook
def flatmap_path_parameters(ctx, path_parameters):
    """Most `{id}`s name an object that exists (the caller's or someone else's)."""
    if not _current or "id" not in (path_parameters or {}):
        return st.just(path_parameters)
    world = _current[-1]
    known = world.order_ids if ctx.operation.path.startswith("/api/v1/orders/") else world.product_ids
    return st.sampled_from([*known, path_parameters["id"]]).map(lambda value: {**path_parameters, "id": value})


@schema.hook
def flatmap_body(ctx, body):
    """`POST /orders` mostly names a real product (the caller's own, another's, an inactive one)."""
    if not _current or not isinstance(body, dict) or "productId" not in body:
        return st.just(body)
    world = _current[-1]
    return st.sampled_from([*world.product_ids, body["productId"]]).map(lambda value: {**body, "productId": value})


# `fuzz_world` is made once per operation, not per example: examples of one operation share
# its state, as requests to a live server would (a refund, then the same refund again).
SHARED_STATE = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])


# Schema-violating requests only, with no hook rewriting them (the hooks above would put a
# valid id back into a mutated path or body) and the caller's token never mutated (it is
# sent by the test, not generated): each must be refused with a 4xx in the envelope.
NEGATIVE_CONFIG = schemathesis.Config.from_dict(
    {
        "seed": SEED,
        "generation": {
            "max-examples": EXAMPLES_PER_OPERATION,
            "deterministic": True,
            "database": "none",
            "mode": "negative",
            "with-security-parameters": False,
        },
    }
)
negative_schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", application, config=NEGATIVE_CONFIG)
NEGATIVE_CHECKS = [not_a_server_error, negative_data_rejection, error_envelope]


@schema.parametrize()
@SHARED_STATE
def test_fuzz_as_buyer(case, fuzz_world):
    case.call_and_validate(headers=fuzz_world.auth["buyer"], checks=CHECKS)


@schema.parametrize()
@SHARED_STATE
def test_fuzz_as_merchant(case, fuzz_world):
    case.call_and_validate(headers=fuzz_world.auth["merchant"], checks=CHECKS)


@negative_schema.parametrize()
@SHARED_STATE
def test_fuzz_schema_violations_are_refused(case, fuzz_world):
    case.call_and_validate(headers=fuzz_world.auth["buyer"], checks=NEGATIVE_CHECKS)
