"""The ledger's guarantees: append-only (ORM and database), and reconcile_ledger's checks."""

import io
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction

from accounts.models import User
from demo.management.commands.seed_demo import DEMO_USERS
from wallets import services
from wallets.models import JournalEntry, LedgerEntry, LedgerImmutableError, Wallet
from wallets.tests.factories import WalletFactory, funded_wallet

pytestmark = pytest.mark.django_db
D = Decimal


@pytest.fixture
def leg(db):
    wallet = funded_wallet(amount="10.00")
    return LedgerEntry.objects.get(wallet=wallet)


class TestAppendOnly:
    def test_orm_refuses_to_change_a_leg(self, leg):
        leg.amount = D("99.00")
        with pytest.raises(LedgerImmutableError):
            leg.save()
        with pytest.raises(LedgerImmutableError):
            leg.delete()
        with pytest.raises(LedgerImmutableError):
            LedgerEntry.objects.filter(pk=leg.pk).update(amount=D("99.00"))
        with pytest.raises(LedgerImmutableError):
            LedgerEntry.objects.filter(pk=leg.pk).delete()

    def test_orm_refuses_to_change_a_journal_entry(self, leg):
        journal = leg.journal
        journal.description = "rewritten"
        with pytest.raises(LedgerImmutableError):
            journal.save()
        with pytest.raises(LedgerImmutableError):
            JournalEntry.objects.all().delete()
        with pytest.raises(LedgerImmutableError):
            JournalEntry.objects.update(description="rewritten")

    @pytest.mark.parametrize(
        "sql",
        [
            "UPDATE wallets_ledgerentry SET amount = 99, delta = 99",
            "DELETE FROM wallets_ledgerentry",
            "UPDATE wallets_journalentry SET description = 'rewritten'",
            "DELETE FROM wallets_journalentry",
        ],
    )
    def test_database_refuses_raw_update_and_delete(self, leg, sql):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql)
        assert LedgerEntry.objects.get(pk=leg.pk).amount == D("10.00")


class TestReconcile:
    def test_clean_ledger_reconciles(self, reconcile, merchant, staff):
        buyer_wallet = funded_wallet(amount="100.00")
        merchant_wallet = WalletFactory(user=merchant)
        services.wallet_withdraw(wallet=buyer_wallet, amount=D("10.00"))
        services.wallet_transfer(source=buyer_wallet, destination=merchant_wallet, amount=D("30.00"))
        services.wallet_adjust(
            wallet=merchant_wallet, amount=D("-5.00"), description="fee", internal_note="staff test", staff_user=staff
        )
        out = reconcile()
        assert "Ledger reconciles: no drift." in out
        assert "external:deposits" in out and "-100.00" in out

    def test_detects_a_balance_tampered_with_in_raw_sql(self):
        honest = funded_wallet(amount="10.00")
        tampered = funded_wallet(amount="10.00")
        with connection.cursor() as cursor:
            cursor.execute("UPDATE wallets_wallet SET balance = balance + 5 WHERE id = %s", [tampered.pk])
        stderr = io.StringIO()
        with pytest.raises(CommandError) as excinfo:
            call_command("reconcile_ledger", "--no-progress", stdout=io.StringIO(), stderr=stderr)
        message = str(excinfo.value)
        assert str(tampered.pk) in message and str(honest.pk) not in message
        assert "[balances]" in stderr.getvalue() and "[zero-sum]" in stderr.getvalue()

    def test_detects_a_broken_chain_and_an_unbalanced_journal(self, reconcile):
        wallet = funded_wallet(amount="10.00")
        # A leg inserted behind the services' back: next sequence, but it claims the
        # balance was 50.00 before (the chain says 10.00), and it has no counter-leg.
        rogue = JournalEntry.objects.create(description="rogue")
        LedgerEntry.objects.create(
            journal=rogue,
            wallet=wallet,
            type="DEPOSIT",
            amount=D("5.00"),
            delta=D("5.00"),
            balance_before=D("50.00"),
            balance_after=D("55.00"),
            sequence=2,
            currency="USD",
        )
        stderr = io.StringIO()
        with pytest.raises(CommandError) as excinfo:
            call_command("reconcile_ledger", "--no-progress", stdout=io.StringIO(), stderr=stderr)
        assert str(wallet.pk) in str(excinfo.value)
        problems = stderr.getvalue()
        assert "[chains]" in problems and "sequence 2" in problems
        assert "[journals]" in problems and str(rogue.pk) in problems
        assert "[balances]" in problems  # the column says 10.00, the legs 15.00

    def test_detects_a_gap_in_the_sequence(self, reconcile):
        wallet = funded_wallet(amount="10.00")
        with connection.cursor() as cursor:
            cursor.execute("UPDATE wallets_wallet SET last_sequence = 3 WHERE id = %s", [wallet.pk])
        services.wallet_deposit(wallet=wallet, amount=D("1.00"))  # lands at sequence 4
        with pytest.raises(CommandError, match=str(wallet.pk)):
            reconcile()

    def test_progress_indicator_on_large_ledgers(self, monkeypatch):
        from wallets import reconciliation

        monkeypatch.setattr(reconciliation, "BATCH_SIZE", 2)
        for _ in range(5):
            funded_wallet(amount="1.00")
        out = io.StringIO()
        call_command("reconcile_ledger", stdout=out)
        assert "5/5" in out.getvalue() and "no drift" in out.getvalue()


def test_seed_demo_funds_the_buyer_once():
    call_command("seed_demo", stdout=io.StringIO())
    call_command("seed_demo", stdout=io.StringIO())
    buyer = User.objects.get(email=DEMO_USERS[0][0])
    assert Wallet.objects.get(user=buyer).balance == D("500.00")
    assert LedgerEntry.objects.filter(wallet__user=buyer).count() == 1
