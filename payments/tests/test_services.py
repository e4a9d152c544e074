"""The payment lifecycle's own rules, below any owner: the two transition maps, the
constraints that back them in the database, and the services' preconditions."""

from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from payments import services
from payments.hooks import hooks_for
from payments.models import CheckoutPayment
from payments.tests.factories import CheckoutPaymentFactory

pytestmark = pytest.mark.django_db
Status, RefundStatus = CheckoutPayment.Status, CheckoutPayment.RefundStatus


@pytest.mark.parametrize(
    ("start", "to", "allowed"),
    [
        (Status.PENDING, Status.SUCCEEDED, True),
        (Status.PENDING, Status.EXPIRED, True),
        (Status.SUCCEEDED, Status.PENDING, False),
        (Status.FAILED, Status.SUCCEEDED, False),
        (Status.EXPIRED, Status.FAILED, False),
    ],
)
def test_status_changes_follow_the_map(start, to, allowed):
    payment = CheckoutPaymentFactory(status=start, paid_at=timezone.now() if start == Status.SUCCEEDED else None)
    fields = {"paid_at": timezone.now()} if to == Status.SUCCEEDED else {}
    if allowed:
        assert services._change(payment, status=to, **fields).status == to
    else:
        with pytest.raises(ValueError):
            services._change(payment, status=to, **fields)
        payment.refresh_from_db()
        assert payment.status == start


def test_a_refund_never_goes_back_from_succeeded():
    payment = CheckoutPaymentFactory(
        status=Status.SUCCEEDED, paid_at=timezone.now(), stripe_payment_intent_id="pi_1",
        refund_status=RefundStatus.SUCCEEDED, refund_requested_at=timezone.now(), refunded_at=timezone.now(),
        stripe_refund_id="re_1",
    )  # fmt: skip
    for to in (None, RefundStatus.PENDING):
        with pytest.raises(ValueError):
            services._change(payment, refund_status=to)


@pytest.mark.parametrize(
    "fields",
    [
        {"status": Status.SUCCEEDED},  # paid without paid_at
        {"amount": Decimal("0.00")},
        {"status": "PAID"},
        {"refund_status": RefundStatus.PENDING, "refund_requested_at": timezone.now()},  # nothing paid yet
        {"refund_attempt_started_at": timezone.now()},  # a refund attempt with no refund in progress
    ],
)
def test_the_database_refuses_what_the_lifecycle_never_writes(fields):
    with pytest.raises(IntegrityError), transaction.atomic():
        CheckoutPaymentFactory(**fields)


@pytest.mark.django_db(transaction=True)
def test_a_payment_is_created_only_inside_its_owners_transaction(buyer):
    from django.db.transaction import TransactionManagementError

    with pytest.raises(TransactionManagementError):
        services.payment_create(kind="order", payer=buyer, amount=Decimal("1.00"), currency="USD")


def test_an_unknown_kind_has_no_hooks():
    with pytest.raises(LookupError):
        hooks_for("gift-card")
