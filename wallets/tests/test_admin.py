"""The back office, through Django's test client logged in as staff."""

from decimal import Decimal

import pytest
from django.test import Client

from wallets import services
from wallets.models import LedgerEntry, Wallet
from wallets.tests.factories import funded_wallet

pytestmark = pytest.mark.django_db
D = Decimal


@pytest.fixture
def admin_client(staff):
    client = Client()
    client.force_login(staff)
    return client


@pytest.fixture
def wallet(buyer):
    return funded_wallet(user=buyer, amount="40.00")


def test_wallet_list_and_page_show_balance_read_only_and_recent_entries(admin_client, wallet):
    listing = admin_client.get("/admin/wallets/wallet/")
    assert listing.status_code == 200
    assert wallet.user.email in listing.content.decode()

    page = admin_client.get(f"/admin/wallets/wallet/{wallet.pk}/change/")
    html = page.content.decode()
    assert page.status_code == 200
    assert "40.00" in html and "Recent ledger entries" in html and "DEPOSIT" in html
    assert 'name="balance"' not in html  # not an input: read-only
    assert "Adjust balance" in html


def test_wallet_cannot_be_saved_added_or_deleted_from_the_admin(admin_client, wallet):
    response = admin_client.post(f"/admin/wallets/wallet/{wallet.pk}/change/", {"balance": "999.00"})
    assert response.status_code == 403
    assert admin_client.get("/admin/wallets/wallet/add/").status_code == 403
    assert admin_client.post(f"/admin/wallets/wallet/{wallet.pk}/delete/", {"post": "yes"}).status_code == 403
    assert Wallet.objects.get(pk=wallet.pk).balance == D("40.00")


def test_lock_and_unlock_actions(admin_client, wallet):
    changelist = "/admin/wallets/wallet/"
    response = admin_client.post(changelist, {"action": "lock_wallets", "_selected_action": [str(wallet.pk)]})
    assert response.status_code == 302
    assert Wallet.objects.get(pk=wallet.pk).is_locked is True
    admin_client.post(changelist, {"action": "unlock_wallets", "_selected_action": [str(wallet.pk)]})
    assert Wallet.objects.get(pk=wallet.pk).is_locked is False


def test_adjust_balance_posts_an_adjustment_with_staff_description_and_note(admin_client, wallet, staff):
    url = f"/admin/wallets/wallet/{wallet.pk}/adjust/"
    assert admin_client.get(url).status_code == 200
    response = admin_client.post(url, {"amount": "-15.00", "description": "Chargeback #42", "internal_note": "Bank"})
    assert response.status_code == 302
    leg = LedgerEntry.objects.get(wallet=wallet, type="ADJUSTMENT")
    assert (leg.delta, leg.balance_after) == (D("-15.00"), D("25.00"))
    assert leg.journal.created_by == staff and leg.journal.description == "Chargeback #42"
    assert Wallet.objects.get(pk=wallet.pk).balance == D("25.00")


def test_adjust_balance_cannot_make_a_balance_negative(admin_client, wallet):
    response = admin_client.post(
        f"/admin/wallets/wallet/{wallet.pk}/adjust/", {"amount": "-40.01", "description": "x", "internal_note": "y"}
    )
    assert response.status_code == 200
    assert "Insufficient funds" in response.content.decode()
    assert not LedgerEntry.objects.filter(type="ADJUSTMENT").exists()


def test_adjust_balance_needs_the_permission(wallet, merchant):
    merchant.is_staff = True
    merchant.save()
    client = Client()
    client.force_login(merchant)
    response = client.post(
        f"/admin/wallets/wallet/{wallet.pk}/adjust/", {"amount": "5.00", "description": "x", "internal_note": "y"}
    )
    assert response.status_code == 403
    assert not LedgerEntry.objects.filter(type="ADJUSTMENT").exists()


def test_ledger_is_read_only_searchable_and_filterable(admin_client, wallet, merchant):
    services.wallet_transfer(
        source=wallet,
        destination=funded_wallet(user=merchant, amount="0"),
        amount=D("5.00"),
        reference_type="order",
        reference_id="ord-777",
    )
    leg = LedgerEntry.objects.get(wallet=wallet, type="PAYMENT")
    found = admin_client.get("/admin/wallets/ledgerentry/", {"q": "ord-777"}).content.decode()
    assert "order:ord-777" in found
    by_type = admin_client.get("/admin/wallets/ledgerentry/", {"type__exact": "PAYMENT"})
    assert by_type.status_code == 200 and "PAYMENT" in by_type.content.decode()
    assert (
        admin_client.get("/admin/wallets/ledgerentry/", {"created_at__year": str(leg.created_at.year)}).status_code
        == 200
    )
    assert admin_client.get(f"/admin/wallets/ledgerentry/{leg.pk}/change/").status_code == 200
    assert admin_client.get("/admin/wallets/ledgerentry/add/").status_code == 403
    assert admin_client.post(f"/admin/wallets/ledgerentry/{leg.pk}/delete/", {"post": "yes"}).status_code == 403
    assert admin_client.get(f"/admin/wallets/journalentry/{leg.journal_id}/change/").status_code == 200
    assert admin_client.get("/admin/wallets/journalentry/", {"q": "ord-777"}).status_code == 200


@pytest.mark.parametrize("amount", ["999999999999.99", "-999999999999.99"])
def test_an_adjustment_beyond_the_balance_column_is_a_form_error_not_a_500(admin_client, wallet, amount):
    """Issue 11, defect 4: 40.00 + 999999999999.99 does not fit a money column."""
    before = LedgerEntry.objects.count()
    response = admin_client.post(f"/admin/wallets/wallet/{wallet.pk}/adjust/", {"amount": amount, "reason": "Typo"})
    assert response.status_code == 200  # the form again, with its error
    assert response.context["form"].errors
    assert Wallet.objects.get(pk=wallet.pk).balance == D("40.00") and LedgerEntry.objects.count() == before
