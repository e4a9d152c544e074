from decimal import Decimal

import pytest
from django.db import IntegrityError, connection, transaction
from django.db.transaction import TransactionManagementError
from django.test import override_settings

from accounts.services import user_register
from accounts.tests.factories import UserFactory
from wallets import services
from wallets.exceptions import (
    DirectDepositsDisabled,
    InsufficientFunds,
    InvalidDepositAmount,
    InvalidTransfer,
    InvalidWithdrawalAmount,
    WalletLocked,
)
from wallets.models import JournalEntry, LedgerEntry, SystemAccount, Wallet
from wallets.selectors import system_wallet_balances, wallet_balance
from wallets.tests.factories import WalletFactory, funded_wallet

pytestmark = pytest.mark.django_db
D = Decimal


def balance(wallet: Wallet) -> Decimal:
    return Wallet.objects.get(pk=wallet.pk).balance


class TestRegistration:
    def test_user_register_creates_the_wallet(self):
        user = user_register(email="new@example.com", password="SecurePass123!", role="USER")
        wallet = Wallet.objects.get(user=user)
        assert (wallet.kind, wallet.balance, wallet.currency, wallet.is_locked) == ("USER", D("0.00"), "USD", False)

    def test_one_wallet_per_user(self, buyer_wallet):
        with pytest.raises(IntegrityError), transaction.atomic():
            Wallet.objects.create(user=buyer_wallet.user)


class TestDeposit:
    def test_posts_a_balanced_journal_entry(self, buyer_wallet):
        movement = services.wallet_deposit(wallet=buyer_wallet, amount=D("500.00"), description="Salary")

        assert balance(buyer_wallet) == D("500.00")
        leg = movement.leg_for(buyer_wallet)
        assert (leg.type, leg.amount, leg.delta) == ("DEPOSIT", D("500.00"), D("500.00"))
        assert (leg.balance_before, leg.balance_after, leg.sequence) == (D("0.00"), D("500.00"), 1)
        assert movement.wallet_for(buyer_wallet).balance == D("500.00")
        legs = list(LedgerEntry.objects.filter(journal=movement.journal))
        assert len(legs) == 2 and sum(x.delta for x in legs) == 0
        system_leg = next(x for x in legs if x.wallet_id != buyer_wallet.pk)
        assert system_leg.wallet.code == SystemAccount.EXTERNAL_DEPOSITS
        assert (system_leg.balance_before, system_leg.balance_after, system_leg.sequence) == (None, None, None)
        assert movement.journal.description == "Salary"

    def test_system_account_balance_is_derived_and_never_stored(self, buyer_wallet):
        services.wallet_deposit(wallet=buyer_wallet, amount=D("30.00"))
        services.wallet_deposit(wallet=buyer_wallet, amount=D("12.50"))
        deposits = Wallet.objects.get(code=SystemAccount.EXTERNAL_DEPOSITS)
        assert deposits.balance == 0  # the column is never touched in the hot path
        assert wallet_balance(wallet=deposits) == D("-42.50")
        assert system_wallet_balances()[SystemAccount.EXTERNAL_DEPOSITS] == D("-42.50")

    def test_stripe_top_up_uses_the_clearing_account_and_a_reference(self, buyer_wallet):
        movement = services.wallet_deposit(
            wallet=buyer_wallet,
            amount=D("20.00"),
            source=SystemAccount.STRIPE_CLEARING,
            reference_type="top_up",
            reference_id="cs_123",
        )
        assert movement.journal.reference_type == "top_up" and movement.journal.reference_id == "cs_123"
        assert system_wallet_balances()[SystemAccount.STRIPE_CLEARING] == D("-20.00")

    def test_maximum_deposit_is_allowed_and_one_cent_more_is_not(self, buyer_wallet):
        services.wallet_deposit(wallet=buyer_wallet, amount=D("10000.00"))
        with pytest.raises(InvalidDepositAmount):
            services.wallet_deposit(wallet=buyer_wallet, amount=D("10000.01"))
        assert balance(buyer_wallet) == D("10000.00")

    @pytest.mark.parametrize("amount", [D("0"), D("-1.00"), D("1.001"), D("NaN"), D("Infinity")])
    def test_refuses_amounts_that_are_not_money(self, buyer_wallet, amount):
        with pytest.raises(InvalidDepositAmount):
            services.wallet_deposit(wallet=buyer_wallet, amount=amount)
        assert not LedgerEntry.objects.exists()

    def test_direct_deposits_can_be_switched_off(self, buyer_wallet):
        with override_settings(WALLET_DIRECT_DEPOSITS=False), pytest.raises(DirectDepositsDisabled):
            services.wallet_direct_deposit(wallet=buyer_wallet, amount=D("5.00"))
        # Money from the card gateway still arrives.
        services.wallet_deposit(wallet=buyer_wallet, amount=D("5.00"), source=SystemAccount.STRIPE_CLEARING)
        assert balance(buyer_wallet) == D("5.00")


class TestWithdraw:
    def test_debits_and_chains_the_balances(self):
        wallet = funded_wallet(amount="100.00")
        movement = services.wallet_withdraw(wallet=wallet, amount=D("40.00"))
        leg = movement.leg_for(wallet)
        assert (leg.type, leg.amount, leg.delta) == ("WITHDRAWAL", D("40.00"), D("-40.00"))
        assert (leg.balance_before, leg.balance_after, leg.sequence) == (D("100.00"), D("60.00"), 2)
        assert balance(wallet) == D("60.00")
        assert system_wallet_balances()[SystemAccount.EXTERNAL_WITHDRAWALS] == D("40.00")

    def test_insufficient_funds_names_both_amounts(self):
        wallet = funded_wallet(amount="10.00")
        with pytest.raises(InsufficientFunds) as excinfo:
            services.wallet_withdraw(wallet=wallet, amount=D("25.00"))
        assert excinfo.value.message == "Insufficient funds. Required: $25.00, Available: $10.00"
        assert excinfo.value.status_code == 400
        assert balance(wallet) == D("10.00")

    def test_the_whole_balance_can_be_withdrawn(self):
        wallet = funded_wallet(amount="10.00")
        services.wallet_withdraw(wallet=wallet, amount=D("10.00"))
        assert balance(wallet) == 0

    def test_minimum_withdrawal(self):
        wallet = funded_wallet(amount="10.00")
        with pytest.raises(InvalidWithdrawalAmount):
            services.wallet_withdraw(wallet=wallet, amount=D("0.99"))
        services.wallet_withdraw(wallet=wallet, amount=D("1.00"))
        assert balance(wallet) == D("9.00")


class TestLockedWallet:
    def test_refuses_credits_and_debits(self):
        wallet = funded_wallet(amount="50.00")
        assert services.wallet_set_locked(wallet_ids=[wallet.pk], locked=True) == 1
        for call in (
            lambda: services.wallet_deposit(wallet=wallet, amount=D("1.00")),
            lambda: services.wallet_withdraw(wallet=wallet, amount=D("1.00")),
        ):
            with pytest.raises(WalletLocked) as excinfo:
                call()
            assert excinfo.value.status_code == 403
        services.wallet_set_locked(wallet_ids=[wallet.pk], locked=False)
        services.wallet_withdraw(wallet=wallet, amount=D("1.00"))
        assert balance(wallet) == D("49.00")


class TestTransfer:
    def test_payment_and_revenue_in_one_journal_entry(self, merchant):
        buyer_wallet = funded_wallet(amount="100.00")
        merchant_wallet = WalletFactory(user=merchant)
        movement = services.wallet_transfer(
            source=buyer_wallet,
            destination=merchant_wallet,
            amount=D("25.00"),
            reference_type="order",
            reference_id="0b7e",
            description="Order 0b7e",
        )
        paid, earned = movement.leg_for(buyer_wallet), movement.leg_for(merchant_wallet)
        assert (paid.type, paid.delta, paid.balance_after) == ("PAYMENT", D("-25.00"), D("75.00"))
        assert (earned.type, earned.delta, earned.balance_after) == ("REVENUE", D("25.00"), D("25.00"))
        assert paid.journal_id == earned.journal_id
        assert (movement.journal.reference_type, movement.journal.reference_id) == ("order", "0b7e")
        assert (balance(buyer_wallet), balance(merchant_wallet)) == (D("75.00"), D("25.00"))

    def test_refund_goes_back_with_refund_types(self, merchant):
        buyer_wallet = funded_wallet(amount="100.00")
        merchant_wallet = WalletFactory(user=merchant)
        services.wallet_transfer(source=buyer_wallet, destination=merchant_wallet, amount=D("25.00"))
        movement = services.wallet_transfer(
            source=merchant_wallet,
            destination=buyer_wallet,
            amount=D("25.00"),
            source_type=LedgerEntry.Type.REFUND,
            destination_type=LedgerEntry.Type.REFUND,
        )
        assert movement.leg_for(buyer_wallet).type == "REFUND"
        assert (balance(buyer_wallet), balance(merchant_wallet)) == (D("100.00"), D("0.00"))

    def test_insufficient_funds_moves_nothing(self, merchant):
        buyer_wallet = funded_wallet(amount="10.00")
        merchant_wallet = WalletFactory(user=merchant)
        with pytest.raises(InsufficientFunds):
            services.wallet_transfer(source=buyer_wallet, destination=merchant_wallet, amount=D("10.01"))
        assert (balance(buyer_wallet), balance(merchant_wallet)) == (D("10.00"), D("0.00"))
        assert JournalEntry.objects.count() == 1  # only the funding deposit

    def test_either_side_locked_refuses(self, merchant):
        buyer_wallet = funded_wallet(amount="10.00")
        merchant_wallet = WalletFactory(user=merchant)
        services.wallet_set_locked(wallet_ids=[merchant_wallet.pk], locked=True)
        with pytest.raises(WalletLocked):
            services.wallet_transfer(source=buyer_wallet, destination=merchant_wallet, amount=D("1.00"))

    def test_refuses_self_transfer_and_system_accounts(self):
        wallet = funded_wallet(amount="10.00")
        with pytest.raises(InvalidTransfer):
            services.wallet_transfer(source=wallet, destination=wallet, amount=D("1.00"))
        system = services.system_wallet(SystemAccount.EXTERNAL_DEPOSITS)
        with pytest.raises(InvalidTransfer):
            services.wallet_transfer(source=wallet, destination=system, amount=D("1.00"))
        assert balance(wallet) == D("10.00")

    def test_wallets_locked_by_the_caller_are_not_locked_again(self, merchant, django_assert_num_queries):
        """A purchase locks both wallets in one statement and passes them on: the transfer
        then writes the journal entry, both legs and both balances in one statement."""
        buyer_wallet = funded_wallet(amount="10.00")
        merchant_wallet = WalletFactory(user=merchant)
        with transaction.atomic():
            with django_assert_num_queries(1) as lock:
                wallets = services.wallets_lock_for_users(buyer_wallet.user_id, merchant.pk)
            assert "FOR UPDATE" in lock.captured_queries[0]["sql"]
            with django_assert_num_queries(1):
                movement = services.wallet_transfer(
                    source=wallets[buyer_wallet.user_id],
                    destination=wallets[merchant.pk],
                    amount=D("4.00"),
                    locked_by_caller=True,
                )
        assert (balance(buyer_wallet), balance(merchant_wallet)) == (D("6.00"), D("4.00"))
        assert movement.leg_for(merchant_wallet).balance_after == D("4.00")
        assert Wallet.objects.get(pk=merchant_wallet.pk).last_sequence == 1

    def test_a_refusal_on_wallets_locked_by_the_caller_leaves_its_transaction_usable(self, merchant):
        buyer_wallet = funded_wallet(amount="1.00")
        WalletFactory(user=merchant)
        with transaction.atomic():
            wallets = services.wallets_lock_for_users(buyer_wallet.user_id, merchant.pk)
            with pytest.raises(InsufficientFunds):
                services.wallet_transfer(
                    source=wallets[buyer_wallet.user_id],
                    destination=wallets[merchant.pk],
                    amount=D("4.00"),
                    locked_by_caller=True,
                )
            assert balance(buyer_wallet) == D("1.00")  # the transaction still answers
        assert JournalEntry.objects.count() == 1  # only the funding deposit

    def test_wallets_lock_for_users_creates_a_missing_wallet(self, merchant):
        buyer = UserFactory()
        Wallet.objects.filter(user=buyer).delete()
        with transaction.atomic():
            wallets = services.wallets_lock_for_users(buyer.pk, merchant.pk)
        assert set(wallets) == {buyer.pk, merchant.pk}
        assert Wallet.objects.get(user=buyer).balance == D("0.00")

    def test_joins_the_callers_transaction(self, merchant):
        """The purchase runs the transfer inside its own atomic block: roll that back, nothing moved."""
        buyer_wallet = funded_wallet(amount="10.00")
        merchant_wallet = WalletFactory(user=merchant)

        class Abort(Exception):
            pass

        with pytest.raises(Abort), transaction.atomic():
            services.wallet_transfer(source=buyer_wallet, destination=merchant_wallet, amount=D("4.00"))
            assert balance(merchant_wallet) == D("4.00")
            raise Abort
        assert (balance(buyer_wallet), balance(merchant_wallet)) == (D("10.00"), D("0.00"))
        assert LedgerEntry.objects.filter(type="PAYMENT").count() == 0


class TestAdjust:
    def test_credit_and_debit_record_staff_description_and_note(self, staff):
        wallet = funded_wallet(amount="10.00")
        movement = services.wallet_adjust(
            wallet=wallet, amount=D("5.00"), description="Goodwill", internal_note="staff test", staff_user=staff
        )
        assert movement.journal.created_by == staff and movement.journal.description == "Goodwill"
        assert movement.journal.staff_note.note == "staff test"
        assert movement.leg_for(wallet).type == "ADJUSTMENT"
        services.wallet_adjust(
            wallet=wallet, amount=D("-15.00"), description="Chargeback", internal_note="staff test", staff_user=staff
        )
        assert balance(wallet) == 0
        assert system_wallet_balances()[SystemAccount.ADJUSTMENTS] == D("10.00")

    def test_never_makes_a_balance_negative(self, staff):
        wallet = funded_wallet(amount="10.00")
        with pytest.raises(InsufficientFunds):
            services.wallet_adjust(
                wallet=wallet, amount=D("-10.01"), description="Too much", internal_note="staff test", staff_user=staff
            )
        assert balance(wallet) == D("10.00")

    def test_needs_staff_a_description_a_note_and_a_non_zero_amount(self, staff):
        wallet = funded_wallet(amount="10.00")
        with pytest.raises(InvalidTransfer):
            services.wallet_adjust(
                wallet=wallet, amount=D("1.00"), description="x", internal_note="staff test", staff_user=UserFactory()
            )
        with pytest.raises(InvalidTransfer):
            services.wallet_adjust(
                wallet=wallet, amount=D("1.00"), description="  ", internal_note="staff test", staff_user=staff
            )
        with pytest.raises(InvalidTransfer):
            services.wallet_adjust(
                wallet=wallet, amount=D("1.00"), description="x", internal_note=" ", staff_user=staff
            )
        with pytest.raises(InvalidTransfer):
            services.wallet_adjust(
                wallet=wallet, amount=D("0.00"), description="x", internal_note="staff test", staff_user=staff
            )

    def test_allowed_on_a_locked_wallet(self, staff):
        wallet = funded_wallet(amount="10.00")
        services.wallet_set_locked(wallet_ids=[wallet.pk], locked=True)
        services.wallet_adjust(
            wallet=wallet,
            amount=D("-10.00"),
            description="Fraud recovery",
            internal_note="staff test",
            staff_user=staff,
        )
        assert balance(wallet) == 0


class TestDatabaseConstraints:
    def test_user_balance_cannot_go_negative_even_in_raw_sql(self, buyer_wallet):
        with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("UPDATE wallets_wallet SET balance = -1 WHERE id = %s", [buyer_wallet.pk])

    def test_ledger_amounts_must_be_positive(self, buyer_wallet):
        journal = JournalEntry.objects.create()
        with pytest.raises(IntegrityError), transaction.atomic():
            LedgerEntry.objects.create(
                journal=journal,
                wallet=buyer_wallet,
                type="DEPOSIT",
                amount=D("-1.00"),
                delta=D("-1.00"),
                currency="USD",
            )

    def test_balance_after_must_follow_from_before_and_delta(self, buyer_wallet):
        journal = JournalEntry.objects.create()
        with pytest.raises(IntegrityError), transaction.atomic():
            LedgerEntry.objects.create(
                journal=journal,
                wallet=buyer_wallet,
                type="DEPOSIT",
                amount=D("1.00"),
                delta=D("1.00"),
                balance_before=D("0.00"),
                balance_after=D("5.00"),
                sequence=1,
                currency="USD",
            )


@pytest.mark.django_db(transaction=True)
def test_wallets_locked_by_the_caller_need_its_transaction(merchant):
    """Outside a transaction the locks would already be gone: refused before any write."""
    buyer_wallet = funded_wallet(amount="10.00")
    merchant_wallet = WalletFactory(user=merchant)
    with pytest.raises(TransactionManagementError):
        services.wallet_transfer(
            source=buyer_wallet, destination=merchant_wallet, amount=D("1.00"), locked_by_caller=True
        )
    assert (balance(buyer_wallet), balance(merchant_wallet)) == (D("10.00"), D("0.00"))


@pytest.mark.parametrize("deltas", [["5.00"], ["5.00", "-4.99"], ["0.00", "0.00"]])
def test_an_unbalanced_journal_entry_is_refused_explicitly(buyer_wallet, deltas):
    """A raise, not an `assert`: the guard holds under `python -O` too (ruff's S101 is on)."""
    from wallets.services import Leg, _post

    system = services.system_wallet(SystemAccount.EXTERNAL_DEPOSITS)
    legs = [
        Leg(wallet.pk, LedgerEntry.Type.ADJUSTMENT, Decimal(d)) for wallet, d in zip([buyer_wallet, system], deltas)
    ]
    with pytest.raises(ValueError):
        _post(legs=legs)
    assert not LedgerEntry.objects.exists() and Wallet.objects.get(pk=buyer_wallet.pk).balance == 0
