"""OutputSerializer (fields built and bound once per class, then shared) renders exactly what
DRF's generic `Serializer.to_representation` renders, whatever the order's state, one at a
time, many at once, and from many threads at once."""

import copy
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from rest_framework import serializers
from rest_framework.renderers import JSONRenderer

from catalog.tests.factories import ProductFactory
from orders.models import Order
from orders.serializers import OrderSerializer
from orders.services import order_purchase_with_wallet
from orders.tests.factories import OrderFactory, funded_buyer
from paymentflow.api.serializers import OutputSerializer
from payments.models import CheckoutPayment
from payments.services import payment_release

generic_to_representation = serializers.Serializer.to_representation


def plain_drf_copy(serializer_class):
    """A plain `serializers.Serializer` with copies of the class's declared fields; nested
    OutputSerializers are copied the same way, so nothing in it takes the shared-fields path."""
    fields = {
        name: plain_drf_copy(type(field))(*field._args, **field._kwargs)
        if isinstance(field, OutputSerializer)
        else copy.deepcopy(field)
        for name, field in serializer_class._declared_fields.items()
    }
    return type(f"Plain{serializer_class.__name__}", (serializers.Serializer,), fields)


PlainOrderSerializer = plain_drf_copy(OrderSerializer)


def reference(order) -> dict:
    return PlainOrderSerializer(order).data


def assert_same(actual, expected):
    assert actual == expected
    assert JSONRenderer().render(actual) == JSONRenderer().render(expected)  # key order too


def failed_order() -> Order:
    order = OrderFactory(quantity=3)
    payment_release(payment_id=order.payment_id, status=CheckoutPayment.Status.FAILED, reason="Your card was declined.")
    return Order.objects.select_related("product", "payment").get(pk=order.pk)


@pytest.fixture
def orders(db) -> dict[str, Order]:
    product = ProductFactory(price="12.50", available_units=10)
    completed = order_purchase_with_wallet(buyer=funded_buyer("100.00"), product_id=product.id, quantity=2)
    return {
        "completed": completed,  # as the service returns it (the view renders this one)
        "completed_reloaded": Order.objects.select_related("product", "payment").get(pk=completed.pk),
        "pending": OrderFactory(
            payment__stripe_session_id="cs_test_pending",
            payment__checkout_url="https://checkout.stripe.com/c/pay/cs_test_pending",
        ),
        "failed": failed_order(),
        "unsaved": OrderFactory.build(),  # every timestamp None
    }


# What each order must show, so that the comparisons below are about orders in these states.
STATES = {
    "completed": {"status": "COMPLETED", "payment_method": "WALLET", "quantity": 2, "amount": "25.00"},
    "completed_reloaded": {"status": "COMPLETED", "payment_method": "WALLET", "unit_price": "12.50"},
    "pending": {
        "status": "PENDING",
        "payment_method": "GATEWAY",
        "stripe_session_id": "cs_test_pending",
        "checkout_url": "https://checkout.stripe.com/c/pay/cs_test_pending",
        "completed_at": None,
    },
    "failed": {"status": "FAILED", "failure_reason": "Your card was declined.", "quantity": 3, "completed_at": None},
    "unsaved": {"created_at": None, "updated_at": None, "completed_at": None, "stripe_session_id": None},
}


def test_the_reference_is_drf_generic_path_all_the_way_down():
    assert OrderSerializer.to_representation is OutputSerializer.to_representation  # else nothing here is tested
    assert PlainOrderSerializer.to_representation is generic_to_representation
    nested = PlainOrderSerializer._declared_fields["product"]
    assert type(nested).to_representation is generic_to_representation
    assert list(PlainOrderSerializer._declared_fields) == list(OrderSerializer._declared_fields)
    assert list(nested._declared_fields) == ["id", "name", "price"]


@pytest.mark.parametrize("name", STATES)
def test_one_order_renders_as_drf_does(orders, name):
    order = orders[name]
    data = OrderSerializer(order).data

    assert data.items() >= STATES[name].items()
    product = order.product
    assert data["product"] == {"id": str(product.id), "name": product.name, "price": f"{product.price:.2f}"}
    assert_same(data, reference(order))
    # DRF's own method on the real class: its fields deep-copied for this instance.
    assert_same(data, generic_to_representation(OrderSerializer(), order))
    if name == "completed":  # the service's object and the row it wrote render alike
        assert_same(data, OrderSerializer(orders["completed_reloaded"]).data)


def test_many_orders_render_as_drf_does(orders):
    listed = list(orders.values())
    data = OrderSerializer(listed, many=True).data

    assert [row["status"] for row in data] == ["COMPLETED", "COMPLETED", "PENDING", "FAILED", "PENDING"]
    assert_same(data, PlainOrderSerializer(listed, many=True).data)


def test_orders_rendered_one_after_the_other_do_not_leak_into_each_other(orders):
    pending, unsaved, failed = orders["pending"], orders["unsaved"], orders["failed"]
    expected = {key: reference(orders[key]) for key in ("pending", "unsaved", "failed")}

    first = OrderSerializer(pending).data
    second = OrderSerializer(unsaved).data
    third = OrderSerializer(failed).data
    again = OrderSerializer(pending).data

    assert second["stripe_session_id"] is None and second["created_at"] is None  # nothing left by `first`
    assert third["failure_reason"] == "Your card was declined." and first["failure_reason"] is None
    assert len({first["product"]["id"], second["product"]["id"], third["product"]["id"]}) == 3
    assert_same(first, expected["pending"])
    assert_same(second, expected["unsaved"])
    assert_same(third, expected["failed"])
    assert_same(again, expected["pending"])


THREADS, RENDERS = 8, 200


def test_concurrent_renders_each_get_their_own_output(orders, monkeypatch):
    pool = [order for name, order in orders.items() if name != "completed_reloaded"] + [
        OrderFactory.build(
            quantity=i % 7 + 1,
            status=Order.Status.FAILED if i % 3 else Order.Status.PENDING,
            failure_reason=f"reason {i}" if i % 3 else None,
            payment__stripe_session_id=f"cs_test_{i}" if i % 2 else None,
        )
        for i in range(19)
    ]
    expected = [reference(order) for order in pool]  # also loads every order's product here
    assert len({str(row) for row in expected}) == len(pool)
    # Start with nothing built: the threads also race to build the shared fields.
    monkeypatch.delattr(OrderSerializer, "_bound_fields", raising=False)
    start = threading.Barrier(THREADS)

    def render(thread: int) -> list:
        start.wait()
        wrong = []
        for i in range(RENDERS):
            k = (thread * 5 + i) % len(pool)  # the threads render different orders at any moment
            if OrderSerializer(pool[k]).data != expected[k]:
                wrong.append((thread, i, k))
        return wrong

    with ThreadPoolExecutor(max_workers=THREADS) as executor:
        results = list(executor.map(render, range(THREADS)))

    assert results == [[]] * THREADS
