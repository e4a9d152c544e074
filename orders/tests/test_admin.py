"""The orders back office: read-only lists and pages, search, filters, the refund action."""

from decimal import Decimal

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.urls import reverse

from orders import services
from orders.models import Order
from orders.tests.factories import OrderFactory
from orders.tests.utils import balance, stock
from wallets.models import Wallet
from wallets.services import wallet_deposit, wallet_set_locked, wallet_withdraw

pytestmark = pytest.mark.django_db
CHANGELIST = reverse("admin:orders_order_changelist")


@pytest.fixture
def staff_client(client, staff):
    client.force_login(staff)
    return client


def test_changelist_search_and_filters(
    staff_client, buyer, funded_buyer_wallet, product, django_assert_max_num_queries
):
    done = services.order_purchase_with_wallet(buyer=buyer, product_id=product.pk)
    pending = OrderFactory(payment__stripe_session_id="cs_test_abc")
    for _ in range(10):
        OrderFactory()

    with django_assert_max_num_queries(12):
        assert staff_client.get(CHANGELIST).status_code == 200
    for query, expected in [
        ({"q": str(done.pk)}, [done.pk]),
        ({"q": buyer.email}, [done.pk]),
        ({"q": product.merchant.email}, [done.pk]),
        ({"q": "cs_test_abc"}, [pending.pk]),
        ({"q": "not-a-uuid"}, []),
        ({"status__exact": "COMPLETED"}, [done.pk]),
        ({"payment_method__exact": "WALLET"}, [done.pk]),
    ]:
        response = staff_client.get(CHANGELIST, query)
        assert response.status_code == 200, query
        assert [o.pk for o in response.context["cl"].result_list] == expected, query


def test_detail_is_read_only_and_shows_its_card_payment(staff_client):
    order = OrderFactory(payment__stripe_session_id="cs_test_xyz")
    response = staff_client.get(reverse("admin:orders_order_change", args=[order.pk]))
    assert response.status_code == 200
    assert b"cs_test_xyz" in response.content
    assert reverse("admin:payments_checkoutpayment_change", args=[order.payment_id]).encode() in response.content
    assert b'name="_save"' not in response.content
    assert staff_client.get(reverse("admin:orders_order_add")).status_code == 403
    assert staff_client.post(reverse("admin:orders_order_delete", args=[order.pk]), {"post": "yes"}).status_code == 403
    assert Order.objects.filter(pk=order.pk).exists()


def test_refund_action_asks_first_then_refunds_through_the_service_with_the_reason(
    staff_client, buyer, funded_buyer_wallet, product, reconcile
):
    """Issue 12.9: a confirmation page listing the orders and their amounts, with a reason."""
    done = services.order_purchase_with_wallet(buyer=buyer, product_id=product.pk, quantity=2)
    pending = OrderFactory()
    selected = {"action": "refund_orders", "_selected_action": [str(done.pk), str(pending.pk)]}

    page = staff_client.post(CHANGELIST, selected)

    assert page.status_code == 200 and "admin/orders/order/refund_confirmation.html" in [t.name for t in page.templates]
    html = page.content.decode()
    assert str(done.pk) in html and str(pending.pk) in html and "50.00" in html and 'name="reason"' in html
    assert Order.objects.get(pk=done.pk).status == "COMPLETED"  # nothing happened yet

    without_reason = staff_client.post(CHANGELIST, {**selected, "confirm": "yes", "reason": ""})
    assert without_reason.status_code == 200 and without_reason.context["form"].errors
    assert Order.objects.get(pk=done.pk).status == "COMPLETED"

    confirmed = {**selected, "confirm": "yes", "reason": "Damaged in transit"}
    response = staff_client.post(CHANGELIST, confirmed, follow=True)

    assert response.status_code == 200
    messages = [str(m) for m in response.context["messages"]]
    assert any("Refunded 1 order" in m for m in messages)
    assert any(f"Order {pending.pk}: Only a completed order can be refunded." in m for m in messages)
    done.refresh_from_db()
    assert done.status == "REFUNDED" and done.refund_reason == "Damaged in transit"
    assert balance(buyer) == Decimal("500.00") and stock(product) == 10
    assert Order.objects.get(pk=pending.pk).status == "PENDING"
    reconcile()


def test_refund_action_says_whose_wallet_refused(staff_client, buyer, funded_buyer_wallet, product, merchant):
    order = services.order_purchase_with_wallet(buyer=buyer, product_id=product.pk, quantity=2)
    wallet_withdraw(wallet=Wallet.objects.get(user=merchant), amount=Decimal("40.00"))
    selected = {"action": "refund_orders", "_selected_action": [str(order.pk)], "confirm": "yes", "reason": "x"}

    response = staff_client.post(CHANGELIST, selected, follow=True)

    (message,) = [str(m) for m in response.context["messages"]]
    assert f"the merchant's wallet ({merchant.email})" in message and "Insufficient funds" in message
    wallet_deposit(wallet=Wallet.objects.get(user=merchant), amount=Decimal("100.00"))  # the merchant could pay now,
    wallet_set_locked(wallet_ids=[Wallet.objects.get(user=buyer).pk], locked=True)  # but the buyer's wallet is locked
    response = staff_client.post(CHANGELIST, selected, follow=True)
    (message,) = [str(m) for m in response.context["messages"]]
    assert f"the buyer's wallet ({buyer.email})" in message
    assert Order.objects.get(pk=order.pk).status == "COMPLETED"


def test_an_admin_refund_records_the_staff_member_and_a_log_entry_with_the_reason(
    staff_client, staff, buyer, funded_buyer_wallet, product, merchant, reconcile
):
    """Who refunded from the back office: the order's `refunded_by` and the admin's history
    (LogEntry) with the reason; a refund the merchant makes through the API names nobody."""
    order = services.order_purchase_with_wallet(buyer=buyer, product_id=product.pk)
    by_merchant = services.order_purchase_with_wallet(buyer=buyer, product_id=product.pk)
    services.order_refund(order_id=by_merchant.pk, merchant=merchant, reason="merchant's own")
    selected = {"action": "refund_orders", "_selected_action": [str(order.pk)], "confirm": "yes"}

    staff_client.post(CHANGELIST, {**selected, "reason": "Damaged in transit"}, follow=True)

    order.refresh_from_db()
    assert order.status == "REFUNDED" and order.refunded_by == staff
    (entry,) = LogEntry.objects.filter(object_id=str(order.pk))
    assert entry.user == staff and entry.action_flag == CHANGE
    assert entry.content_type.model_class() is Order and "Damaged in transit" in entry.get_change_message()
    assert Order.objects.get(pk=by_merchant.pk).refunded_by is None
    assert not LogEntry.objects.filter(object_id=str(by_merchant.pk)).exists()
    reconcile()
