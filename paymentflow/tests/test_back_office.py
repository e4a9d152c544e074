"""The back office's rough edges (issue 12, items 10, 11 and 13), through Django's test client
logged in as staff."""

import re
from decimal import Decimal

import pytest
from django.test import Client

from accounts.models import User
from accounts.tests.factories import UserFactory
from catalog.tests.factories import ProductFactory
from orders.tests.factories import OrderFactory
from wallets import selectors, services
from wallets.models import JournalEntry, SystemAccount, Wallet
from wallets.tests.factories import funded_wallet

pytestmark = pytest.mark.django_db
D = Decimal


@pytest.fixture
def staff():
    return User.objects.create_superuser("staff@example.com", "StaffPass123!")


@pytest.fixture
def admin(staff):
    client = Client()
    client.force_login(staff)
    return client


class TestAdjustmentTexts:
    """12.10: what the customer sees and what only staff see are two fields, both recorded."""

    def test_the_form_says_who_sees_what(self, admin):
        wallet = funded_wallet(amount="10.00")
        html = admin.get(f"/admin/wallets/wallet/{wallet.pk}/adjust/").content.decode()
        assert "shown to the customer" in html.lower()
        assert "staff only" in html.lower()

    def test_the_customer_sees_the_description_never_the_internal_note(self, admin, client_for):
        wallet = funded_wallet(amount="10.00")
        response = admin.post(
            f"/admin/wallets/wallet/{wallet.pk}/adjust/",
            {"amount": "5.00", "description": "Goodwill credit", "internal_note": "Ticket 812: courier lost parcel"},
        )
        assert response.status_code == 302, response.content.decode()[:2000]
        seen = client_for(wallet.user).get("/api/v1/wallet/transactions").content.decode()
        assert "Goodwill credit" in seen
        assert "Ticket 812" not in seen
        journal = JournalEntry.objects.get(reference_type="adjustment")
        assert journal.description == "Goodwill credit"
        assert journal.staff_note.note == "Ticket 812: courier lost parcel"
        page = admin.get(f"/admin/wallets/journalentry/{journal.pk}/change/").content.decode()
        assert "Ticket 812: courier lost parcel" in page

    def test_both_are_required(self, admin):
        wallet = funded_wallet(amount="10.00")
        response = admin.post(f"/admin/wallets/wallet/{wallet.pk}/adjust/", {"amount": "5.00", "description": "x"})
        assert response.status_code == 200
        assert not JournalEntry.objects.filter(reference_type="adjustment").exists()


class TestSystemAccountBalances:
    """12.11: a system account's balance is the sum of its legs, shown as such."""

    def test_list_and_page_show_what_the_ledger_computes(self, admin):
        funded_wallet(amount="120.50")
        services.wallet_withdraw(wallet=funded_wallet(amount="30.00"), amount=D("7.25"))
        expected = selectors.system_wallet_balances()
        assert expected[SystemAccount.EXTERNAL_DEPOSITS] == D("-150.50")

        listing = admin.get("/admin/wallets/wallet/").content.decode()
        assert "-150.50" in listing and "7.25" in listing
        deposits = Wallet.objects.get(code=SystemAccount.EXTERNAL_DEPOSITS)
        page = admin.get(f"/admin/wallets/wallet/{deposits.pk}/change/").content.decode()
        assert "-150.50" in page


class TestPolish:
    """12.13."""

    def test_the_site_is_named_and_view_site_goes_to_the_api_docs(self, admin):
        html = admin.get("/admin/").content.decode()
        assert "Payment Flow back office" in html and "Django administration" not in html
        assert 'href="/api/docs/"' in html

    def test_users_are_deactivated_not_deleted(self, admin, staff):
        user = UserFactory()
        funded_wallet(user=user, amount="5.00")  # a protected row refers to the user
        changelist = admin.get("/admin/accounts/user/").content.decode()
        assert "delete_selected" not in changelist and "deactivate_users" in changelist
        response = admin.post(
            "/admin/accounts/user/", {"action": "deactivate_users", "_selected_action": [str(user.pk), str(staff.pk)]}
        )
        assert response.status_code == 302
        user.refresh_from_db()
        staff.refresh_from_db()
        assert user.is_active is False
        assert staff.is_active is True  # never yourself

    def test_a_deactivated_user_is_refused_by_the_api(self, admin, client_for):
        user = UserFactory()
        client = client_for(user)
        admin.post("/admin/accounts/user/", {"action": "deactivate_users", "_selected_action": [str(user.pk)]})
        assert client.get("/api/v1/auth/me").status_code == 401

    def test_a_negative_price_is_a_field_error(self, admin):
        product = ProductFactory(price=D("5.00"))
        response = admin.post(
            f"/admin/catalog/product/{product.pk}/change/",
            {"name": product.name, "description": "", "price": "-5.00", "is_active": "on"},
        )
        html = response.content.decode()
        assert response.status_code == 200
        assert "Constraint" not in html
        assert "greater than" in html.lower()
        product.refresh_from_db()
        assert product.price == D("5.00")

    def test_an_adjustments_journal_reads_without_none(self, admin, staff):
        wallet = funded_wallet(amount="10.00")
        services.wallet_adjust(
            wallet=wallet, amount=D("1.00"), description="Credit", internal_note="why", staff_user=staff
        )
        for url in (f"/admin/wallets/wallet/{wallet.pk}/change/", "/admin/wallets/ledgerentry/"):
            assert ":None" not in admin.get(url).content.decode(), url

    def test_the_orders_list_is_narrow(self, admin):
        order = OrderFactory()
        html = admin.get("/admin/orders/order/").content.decode()
        headers = re.findall(r'<th scope="col"[^>]*class="[^"]*column-(\w+)', html)
        assert len(headers) <= 7, headers
        row_text = re.sub(r"<[^>]+>", " ", html)  # the text, without the links' targets
        assert str(order.pk) not in row_text  # a short id, linking to the full one
        assert str(order.pk)[:8] in row_text
