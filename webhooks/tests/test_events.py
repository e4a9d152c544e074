"""Merchant webhook events are recorded in the transaction of the change they report: one
delivery per subscribed active endpoint of that merchant, nothing for a change that rolls
back, nothing for anyone else; the payload is the order as the API renders it."""

import json

import pytest
from django.db import transaction
from django_tasks_db.models import DBTaskResult

from catalog.tests.factories import ProductFactory
from orders import services
from orders.models import Order
from orders.tests.factories import OrderFactory
from payments.gateway import CheckoutSession
from payments.models import CheckoutPayment
from payments.services import payment_paid, payment_release
from wallets.exceptions import InsufficientFunds, WalletLocked
from wallets.models import Wallet
from wallets.services import wallet_set_locked
from wallets.tests.factories import WalletFactory, funded_wallet
from webhooks.models import WebhookDelivery
from webhooks.tests.factories import WebhookEndpointFactory


@pytest.fixture
def product(merchant):
    WalletFactory(user=merchant)
    return ProductFactory(merchant=merchant, price="25.00", available_units=10)


@pytest.fixture
def sale(buyer, merchant, product):
    """A function that buys one unit of `product` (the merchant's) from the wallet."""
    funded_wallet(user=buyer, amount="500.00")
    return lambda: services.order_purchase_with_wallet(buyer=buyer, product_id=product.pk)


def events_of(endpoint) -> list[dict]:
    return [json.loads(d.payload) for d in WebhookDelivery.objects.filter(endpoint=endpoint).order_by("created_at")]


def test_a_wallet_sale_records_order_completed_as_the_api_renders_the_order(merchant, merchant_client, sale):
    endpoint = WebhookEndpointFactory(merchant=merchant)
    order = sale()

    delivery = WebhookDelivery.objects.get(endpoint=endpoint)
    assert (delivery.status, delivery.attempts, delivery.event_type) == ("PENDING", 0, "order.completed")
    assert delivery.next_attempt_at is not None and delivery.locked_until is None
    event = json.loads(delivery.payload)
    assert set(event) == {"id", "type", "createdAt", "data"}
    assert (event["id"], event["type"]) == (str(delivery.event_id), "order.completed")
    assert event["createdAt"].endswith("Z")
    assert event["data"] == {"order": merchant_client.get(f"/api/v1/orders/{order.pk}").json()}
    assert delivery.payload == json.dumps(event, separators=(",", ":"), ensure_ascii=False)  # compact, as the API


def test_one_delivery_per_subscribed_active_endpoint_and_none_for_others(merchant, sale):
    everything = WebhookEndpointFactory(merchant=merchant, events=[])
    sales = WebhookEndpointFactory(merchant=merchant, events=["order.completed", "order.refunded"])
    refunds_only = WebhookEndpointFactory(merchant=merchant, events=["order.refunded"])
    disabled = WebhookEndpointFactory(merchant=merchant, is_active=False)
    another_merchants = WebhookEndpointFactory()

    sale()

    assert [len(events_of(e)) for e in (everything, sales, refunds_only, disabled, another_merchants)] == [
        1,
        1,
        0,
        0,
        0,
    ]
    ids = {e[0]["id"] for e in (events_of(everything), events_of(sales))}
    assert len(ids) == 1  # one event, the same webhook-id at every endpoint


def test_a_sale_that_rolls_back_records_nothing(buyer, merchant, product, sale):
    WebhookEndpointFactory(merchant=merchant)
    # Refused after the stock was taken and the buyer's debit computed: the merchant's wallet is locked.
    wallet_set_locked(wallet_ids=[Wallet.objects.get(user=merchant).pk], locked=True)
    with pytest.raises(WalletLocked):
        sale()
    wallet_set_locked(wallet_ids=[Wallet.objects.get(user=merchant).pk], locked=False)
    Wallet.objects.filter(user=buyer).update(balance=0)  # (no ledger needed: nothing will move)
    with pytest.raises(InsufficientFunds):
        sale()
    # And a sale that succeeded inside a transaction that then rolled back.
    with pytest.raises(RuntimeError), transaction.atomic():
        Wallet.objects.filter(user=buyer).update(balance=500)
        sale()
        assert WebhookDelivery.objects.count() == 1  # recorded inside the transaction...
        raise RuntimeError("the caller's transaction fails")
    assert WebhookDelivery.objects.count() == 0  # ... and gone with it
    assert not Order.objects.exists()


def paid_session(order) -> CheckoutSession:
    """The paid Checkout Session of a card order, exactly as we created it."""
    return CheckoutSession(
        id=order.payment.stripe_session_id,
        url=None,
        payment_intent_id=f"pi_{order.pk.hex[:12]}",
        status="complete",
        payment_status="paid",
        amount_total=order.amount,
        currency=order.currency.lower(),
    )


def test_refund_cancel_fail_and_card_payment_are_events_too(merchant, buyer_client, merchant_client, sale):
    endpoint = WebhookEndpointFactory(merchant=merchant)
    wallet_sale = sale()
    services.order_refund(order_id=wallet_sale.pk, merchant=merchant)

    pending = [OrderFactory(product__merchant=merchant, payment__stripe_session_id=f"cs_test_{i}") for i in range(3)]
    payment_release(payment_id=pending[0].payment_id, status=CheckoutPayment.Status.FAILED, reason="card declined")
    payment_release(payment_id=pending[1].payment_id, status=CheckoutPayment.Status.EXPIRED, reason="expired")
    payment_paid(payment_id=pending[2].payment_id, session=paid_session(pending[2]))

    events = [(e["type"], e["data"]["order"]["id"], e["data"]["order"]["status"]) for e in events_of(endpoint)]
    assert events == [
        ("order.completed", str(wallet_sale.pk), "COMPLETED"),
        ("order.refunded", str(wallet_sale.pk), "REFUNDED"),
        ("order.failed", str(pending[0].pk), "FAILED"),
        ("order.cancelled", str(pending[1].pk), "CANCELLED"),
        ("order.completed", str(pending[2].pk), "COMPLETED"),  # a card sale
    ]
    failed = events_of(endpoint)[2]["data"]["order"]
    assert failed["failureReason"] == "card declined" and failed["paymentMethod"] == "GATEWAY"


def test_a_no_op_is_not_an_event(merchant, sale):
    endpoint = WebhookEndpointFactory(merchant=merchant)
    order = OrderFactory(product__merchant=merchant)
    payment_release(payment_id=order.payment_id, status=CheckoutPayment.Status.EXPIRED, reason="expired")
    endpoint.deliveries.all().delete()
    # Already CANCELLED: nothing changes, nothing is told.
    assert not payment_release(payment_id=order.payment_id, status=CheckoutPayment.Status.EXPIRED, reason="again")
    assert events_of(endpoint) == []


def test_each_delivery_is_kicked_after_the_commit(merchant, sale, django_capture_on_commit_callbacks):
    WebhookEndpointFactory.create_batch(2, merchant=merchant)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        sale()
    assert not DBTaskResult.objects.exists()  # nothing enqueued before the commit
    for callback in callbacks:
        callback()
    tasks = DBTaskResult.objects.all()
    assert sorted(t.args_kwargs["args"][0] for t in tasks) == sorted(
        str(pk) for pk in WebhookDelivery.objects.values_list("pk", flat=True)
    )
    assert {t.task_path for t in tasks} == {"webhooks.tasks.deliver_webhook"} and {t.status for t in tasks} == {"READY"}


def test_no_endpoint_no_row(sale):
    sale()
    assert not WebhookDelivery.objects.exists()


def test_an_event_nobody_subscribed_to_is_never_rendered(merchant, sale, monkeypatch):
    """Rendering an order costs about 0.2 ms, inside the sale's transaction: only an event
    that some endpoint will receive is rendered (most merchants have none)."""
    from webhooks import events

    rendered = []
    render_order = events._SUBJECT_RENDERERS["order"]
    monkeypatch.setitem(events._SUBJECT_RENDERERS, "order", lambda order: rendered.append(order) or render_order(order))
    WebhookEndpointFactory(merchant=merchant, events=["order.refunded"])  # not this event
    sale()
    assert rendered == [] and not WebhookDelivery.objects.exists()

    endpoint = WebhookEndpointFactory(merchant=merchant)
    order = sale()
    assert len(rendered) == 1
    assert [event["data"]["order"]["id"] for event in events_of(endpoint)] == [str(order.pk)]


def test_recording_outside_a_transaction_is_refused(transactional_db, merchant):
    from django.db.transaction import TransactionManagementError

    from webhooks.events import webhook_event_record

    WebhookEndpointFactory(merchant=merchant)
    with pytest.raises(TransactionManagementError):
        webhook_event_record(merchant_id=merchant.pk, event_type="order.completed", subject=OrderFactory())
    assert not WebhookDelivery.objects.exists()
