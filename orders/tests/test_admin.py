"""The orders back office: read-only lists and pages, search, filters, the refund action."""

from decimal import Decimal

import pytest
from django.urls import reverse

from orders import services
from orders.models import Order
from orders.tests.factories import OrderFactory
from orders.tests.utils import balance, stock

pytestmark = pytest.mark.django_db
CHANGELIST = reverse("admin:orders_order_changelist")


@pytest.fixture
def staff_client(client, django_user_model):
    staff = django_user_model.objects.create_superuser("staff@example.com", "StaffPass123!")
    client.force_login(staff)
    return client


def test_changelist_search_and_filters(
    staff_client, buyer, funded_buyer_wallet, product, django_assert_max_num_queries
):
    done = services.order_purchase_with_wallet(buyer=buyer, product_id=product.pk)
    pending = OrderFactory(stripe_session_id="cs_test_abc")
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


def test_detail_is_read_only_and_shows_stripe_ids(staff_client):
    order = OrderFactory(stripe_session_id="cs_test_xyz", stripe_payment_intent_id="pi_test_xyz")
    response = staff_client.get(reverse("admin:orders_order_change", args=[order.pk]))
    assert response.status_code == 200
    assert b"cs_test_xyz" in response.content and b"pi_test_xyz" in response.content
    assert b'name="_save"' not in response.content
    assert staff_client.get(reverse("admin:orders_order_add")).status_code == 403
    assert staff_client.post(reverse("admin:orders_order_delete", args=[order.pk]), {"post": "yes"}).status_code == 403
    assert Order.objects.filter(pk=order.pk).exists()


def test_refund_action_goes_through_the_service(staff_client, buyer, funded_buyer_wallet, product, reconcile):
    done = services.order_purchase_with_wallet(buyer=buyer, product_id=product.pk, quantity=2)
    pending = OrderFactory()

    response = staff_client.post(
        CHANGELIST, {"action": "refund_orders", "_selected_action": [str(done.pk), str(pending.pk)]}, follow=True
    )

    assert response.status_code == 200
    messages = [str(m) for m in response.context["messages"]]
    assert any("Refunded 1 order" in m for m in messages)
    assert any("Only a completed order can be refunded." in m for m in messages)
    done.refresh_from_db()
    assert done.status == "REFUNDED" and done.refund_reason == "Refunded by staff."
    assert balance(buyer) == Decimal("500.00") and stock(product) == 10
    assert Order.objects.get(pk=pending.pk).status == "PENDING"
    reconcile()
