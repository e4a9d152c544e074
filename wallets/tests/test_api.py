import io
import json
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.test import override_settings
from django.utils import timezone

from accounts.tests.factories import UserFactory
from paymentflow.api.models import IdempotencyKey
from paymentflow.testing.assertions import assert_error
from wallets import services
from wallets.models import LedgerEntry, Wallet
from wallets.tests.factories import WalletFactory, funded_wallet

pytestmark = pytest.mark.django_db

WALLET = "/api/v1/wallet"
DEPOSIT = "/api/v1/wallet/deposit"
WITHDRAW = "/api/v1/wallet/withdraw"
TRANSACTIONS = "/api/v1/wallet/transactions"
WALLET_KEYS = {"id", "balance", "currency", "isLocked", "createdAt", "updatedAt"}
TRANSACTION_KEYS = {
    "id",
    "type",
    "amount",
    "balanceBefore",
    "balanceAfter",
    "currency",
    "referenceType",
    "referenceId",
    "description",
    "createdAt",
}


def post(client, path, body, **headers):
    return client.post(path, data=json.dumps(body), content_type="application/json", headers=headers)


def balance_of(user) -> Decimal:
    return Wallet.objects.get(user=user).balance


class TestGetWallet:
    def test_shape(self, buyer_client, buyer_wallet):
        response = buyer_client.get(WALLET)
        assert response.status_code == 200
        body = response.json()
        assert set(body) == WALLET_KEYS
        assert body["id"] == str(buyer_wallet.pk)
        assert (body["balance"], body["currency"], body["isLocked"]) == ("0.00", "USD", False)
        assert body["createdAt"].endswith("Z")

    def test_requires_a_token(self, api_client):
        for method, path in [("get", WALLET), ("post", DEPOSIT), ("post", WITHDRAW), ("get", TRANSACTIONS)]:
            assert_error(getattr(api_client, method)(path), 401, "NOT_AUTHENTICATED")

    def test_seed_flow_register_deposit_and_read(self, api_client):
        registered = post(
            api_client, "/api/v1/auth/register", {"email": "a@b.co", "password": "SecurePass123!", "role": "USER"}
        )
        assert registered.status_code == 201
        assert Wallet.objects.filter(user__email="a@b.co").exists()  # created at registration
        api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {registered.json()['accessToken']}")
        assert post(api_client, DEPOSIT, {"amount": 500.00}).status_code == 200
        assert api_client.get(WALLET).json()["balance"] == "500.00"


class TestDeposit:
    def test_returns_wallet_and_transaction(self, buyer_client, buyer_wallet):
        response = post(buyer_client, DEPOSIT, {"amount": "500.00", "description": "Salary"})
        assert response.status_code == 200
        body = response.json()
        assert set(body) == {"wallet", "transaction"}
        assert set(body["wallet"]) == WALLET_KEYS and set(body["transaction"]) == TRANSACTION_KEYS
        assert body["wallet"]["balance"] == "500.00"
        tx = body["transaction"]
        assert (tx["type"], tx["amount"], tx["balanceBefore"], tx["balanceAfter"]) == (
            "DEPOSIT",
            "500.00",
            "0.00",
            "500.00",
        )
        assert (tx["currency"], tx["referenceType"], tx["referenceId"], tx["description"]) == (
            "USD",
            None,
            None,
            "Salary",
        )
        assert LedgerEntry.objects.get(pk=tx["id"]).wallet_id == buyer_wallet.pk

    @pytest.mark.parametrize("amount", [25, 25.5, "25.50", "0.01"])
    def test_accepts_numbers_and_numeric_strings(self, buyer_client, buyer_wallet, amount):
        response = post(buyer_client, DEPOSIT, {"amount": amount})
        assert response.status_code == 200, response.json()
        assert response.json()["transaction"]["amount"] == f"{Decimal(str(amount)):.2f}"

    def test_a_user_without_a_wallet_gets_one_on_first_use(self, client_for):
        staff_like = UserFactory()  # created outside registration
        assert post(client_for(staff_like), DEPOSIT, {"amount": "1.00"}).status_code == 200
        assert balance_of(staff_like) == Decimal("1.00")

    def test_above_maximum(self, buyer_client, buyer_wallet):
        body = assert_error(post(buyer_client, DEPOSIT, {"amount": "10000.01"}), 400, "INVALID_DEPOSIT_AMOUNT")
        assert "10000.00" in body["message"]
        assert post(buyer_client, DEPOSIT, {"amount": "10000.00"}).status_code == 200

    @override_settings(MAXIMUM_DEPOSIT=Decimal("50.00"))
    def test_maximum_comes_from_settings(self, buyer_client, buyer_wallet):
        assert_error(post(buyer_client, DEPOSIT, {"amount": "50.01"}), 400, "INVALID_DEPOSIT_AMOUNT")

    @override_settings(WALLET_DIRECT_DEPOSITS=False)
    def test_direct_deposits_disabled(self, buyer_client, buyer_wallet):
        assert_error(post(buyer_client, DEPOSIT, {"amount": "5.00"}), 403, "DIRECT_DEPOSITS_DISABLED")

    def test_locked_wallet(self, buyer_client, buyer_wallet):
        services.wallet_set_locked(wallet_ids=[buyer_wallet.pk], locked=True)
        assert_error(post(buyer_client, DEPOSIT, {"amount": "5.00"}), 403, "WALLET_LOCKED")
        assert buyer_client.get(WALLET).json()["isLocked"] is True
        assert balance_of(buyer_wallet.user) == 0


BAD_AMOUNTS = [
    pytest.param('{"amount": 0}', id="zero"),
    pytest.param('{"amount": "0.00"}', id="zero-string"),
    pytest.param('{"amount": -5}', id="negative"),
    pytest.param('{"amount": "1.234"}', id="three-decimals"),
    pytest.param('{"amount": 1.234}', id="three-decimals-number"),
    pytest.param('{"amount": "NaN"}', id="nan-string"),
    pytest.param('{"amount": NaN}', id="nan-literal"),
    pytest.param('{"amount": "Infinity"}', id="infinity"),
    pytest.param('{"amount": 1e400}', id="1e400"),
    pytest.param('{"amount": "1e13"}', id="beyond-column"),
    pytest.param('{"amount": "abc"}', id="letters"),
    pytest.param('{"amount": true}', id="boolean"),
    pytest.param('{"amount": null}', id="null"),
    pytest.param('{"amount": ""}', id="empty"),
    pytest.param("{}", id="missing"),
]


@pytest.mark.parametrize("path", [DEPOSIT, WITHDRAW])
@pytest.mark.parametrize("raw", BAD_AMOUNTS)
def test_bad_amounts_are_validation_errors_naming_the_field(buyer_client, path, raw):
    response = buyer_client.post(path, data=raw, content_type="application/json")
    body = assert_error(response, 400, "VALIDATION_ERROR")
    assert "amount" in body["details"]
    assert not LedgerEntry.objects.exists()


@pytest.mark.parametrize("path", [DEPOSIT, WITHDRAW])
def test_unknown_fields_and_long_descriptions_are_refused(buyer_client, path):
    body = assert_error(post(buyer_client, path, {"amount": "5.00", "currency": "EUR"}), 400, "VALIDATION_ERROR")
    assert "currency" in body["details"]
    body = assert_error(post(buyer_client, path, {"amount": "5.00", "description": "x" * 256}), 400, "VALIDATION_ERROR")
    assert "description" in body["details"]


class TestWithdraw:
    def test_returns_wallet_and_transaction(self, buyer, buyer_client):
        funded_wallet(user=buyer, amount="100.00")
        response = post(buyer_client, WITHDRAW, {"amount": "40.00"})
        assert response.status_code == 200
        body = response.json()
        assert body["wallet"]["balance"] == "60.00"
        tx = body["transaction"]
        assert (tx["type"], tx["amount"], tx["balanceBefore"], tx["balanceAfter"]) == (
            "WITHDRAWAL",
            "40.00",
            "100.00",
            "60.00",
        )
        assert tx["description"] == "Withdrawal"

    def test_insufficient_funds(self, buyer, buyer_client):
        funded_wallet(user=buyer, amount="10.00")
        body = assert_error(post(buyer_client, WITHDRAW, {"amount": "25.00"}), 400, "INSUFFICIENT_FUNDS")
        assert body["message"] == "Insufficient funds. Required: $25.00, Available: $10.00"
        assert body["error"] == "Bad Request"
        assert balance_of(buyer) == Decimal("10.00")

    def test_below_minimum(self, buyer, buyer_client):
        funded_wallet(user=buyer, amount="10.00")
        assert_error(post(buyer_client, WITHDRAW, {"amount": "0.99"}), 400, "INVALID_WITHDRAWAL_AMOUNT")

    def test_locked_wallet(self, buyer, buyer_client):
        wallet = funded_wallet(user=buyer, amount="10.00")
        services.wallet_set_locked(wallet_ids=[wallet.pk], locked=True)
        assert_error(post(buyer_client, WITHDRAW, {"amount": "5.00"}), 403, "WALLET_LOCKED")


class TestTransactions:
    def _history(self, user):
        wallet = funded_wallet(user=user, amount="100.00")  # DEPOSIT 1
        services.wallet_withdraw(wallet=wallet, amount=Decimal("10.00"))  # WITHDRAWAL 2
        services.wallet_deposit(wallet=wallet, amount=Decimal("5.00"))  # DEPOSIT 3
        return wallet

    def test_newest_first_with_meta(self, buyer, buyer_client):
        self._history(buyer)
        response = buyer_client.get(TRANSACTIONS)
        assert response.status_code == 200
        body = response.json()
        assert body["meta"] == {"total": 3, "page": 1, "limit": 20, "totalPages": 1}
        assert [tx["amount"] for tx in body["data"]] == ["5.00", "10.00", "100.00"]
        assert set(body["data"][0]) == TRANSACTION_KEYS
        assert body["data"][0]["balanceAfter"] == "95.00"

    def test_paging(self, buyer, buyer_client):
        self._history(buyer)
        body = buyer_client.get(TRANSACTIONS, {"page": 2, "limit": 2}).json()
        assert body["meta"] == {"total": 3, "page": 2, "limit": 2, "totalPages": 2}
        assert [tx["amount"] for tx in body["data"]] == ["100.00"]
        assert buyer_client.get(TRANSACTIONS, {"limit": 1000}).json()["meta"]["limit"] == 100
        assert_error(buyer_client.get(TRANSACTIONS, {"page": 0}), 400, "VALIDATION_ERROR")

    def test_filter_by_type(self, buyer, buyer_client):
        self._history(buyer)
        body = buyer_client.get(TRANSACTIONS, {"type": "DEPOSIT"}).json()
        assert body["meta"]["total"] == 2
        assert {tx["type"] for tx in body["data"]} == {"DEPOSIT"}
        body = assert_error(buyer_client.get(TRANSACTIONS, {"type": "BRIBE"}), 400, "VALIDATION_ERROR")
        assert "type" in body["details"]

    def test_only_the_callers_own(self, buyer, buyer_client, merchant):
        self._history(merchant)
        assert buyer_client.get(TRANSACTIONS).json()["meta"]["total"] == 0

    def test_transfer_legs_show_their_reference(self, buyer, buyer_client, merchant, client_for):
        buyer_wallet = funded_wallet(user=buyer, amount="50.00")
        services.wallet_transfer(
            source=buyer_wallet,
            destination=WalletFactory(user=merchant),
            amount=Decimal("20.00"),
            reference_type="order",
            reference_id="abc",
        )
        paid = buyer_client.get(TRANSACTIONS, {"type": "PAYMENT"}).json()["data"][0]
        earned = client_for(merchant).get(TRANSACTIONS).json()["data"][0]
        assert (paid["referenceType"], paid["referenceId"], paid["balanceAfter"]) == ("order", "abc", "30.00")
        assert (earned["type"], earned["amount"], earned["referenceId"]) == ("REVENUE", "20.00", "abc")


class TestIdempotency:
    def test_replay_returns_the_identical_response_and_moves_money_once(self, buyer, buyer_client, buyer_wallet):
        first = post(buyer_client, DEPOSIT, {"amount": "20.00"}, **{"Idempotency-Key": "k-1"})
        second = post(buyer_client, DEPOSIT, {"amount": "20.00"}, **{"Idempotency-Key": "k-1"})
        assert first.status_code == second.status_code == 200
        assert second.content == first.content
        assert second["Idempotent-Replayed"] == "true"
        assert balance_of(buyer) == Decimal("20.00")
        assert LedgerEntry.objects.filter(wallet=buyer_wallet).count() == 1

    def test_same_body_in_another_key_order_is_the_same_request(self, buyer, buyer_client, buyer_wallet):
        headers = {"Idempotency-Key": "k-order"}
        buyer_client.post(
            DEPOSIT, data='{"amount":"2.00","description":"x"}', content_type="application/json", headers=headers
        )
        again = buyer_client.post(
            DEPOSIT, data='{ "description": "x", "amount": "2.00" }', content_type="application/json", headers=headers
        )
        assert again.status_code == 200 and again["Idempotent-Replayed"] == "true"
        assert balance_of(buyer) == Decimal("2.00")

    def test_different_body_is_refused(self, buyer, buyer_client, buyer_wallet):
        post(buyer_client, DEPOSIT, {"amount": "20.00"}, **{"Idempotency-Key": "k-2"})
        assert_error(
            post(buyer_client, DEPOSIT, {"amount": "21.00"}, **{"Idempotency-Key": "k-2"}),
            400,
            "IDEMPOTENCY_KEY_REUSED",
        )
        # The same key on another endpoint is another request too.
        assert_error(
            post(buyer_client, WITHDRAW, {"amount": "20.00"}, **{"Idempotency-Key": "k-2"}),
            400,
            "IDEMPOTENCY_KEY_REUSED",
        )
        assert balance_of(buyer) == Decimal("20.00")

    def test_keys_are_scoped_to_the_user(self, buyer, buyer_client, merchant, client_for):
        post(buyer_client, DEPOSIT, {"amount": "3.00"}, **{"Idempotency-Key": "shared"})
        response = post(client_for(merchant), DEPOSIT, {"amount": "3.00"}, **{"Idempotency-Key": "shared"})
        assert response.status_code == 200 and "Idempotent-Replayed" not in response
        assert (balance_of(buyer), balance_of(merchant)) == (Decimal("3.00"), Decimal("3.00"))

    def test_business_refusals_are_stored_and_replayed(self, buyer, buyer_client):
        wallet = funded_wallet(user=buyer, amount="10.00")
        first = post(buyer_client, WITHDRAW, {"amount": "25.00"}, **{"Idempotency-Key": "k-3"})
        assert_error(first, 400, "INSUFFICIENT_FUNDS")
        services.wallet_deposit(wallet=wallet, amount=Decimal("100.00"))
        again = post(buyer_client, WITHDRAW, {"amount": "25.00"}, **{"Idempotency-Key": "k-3"})
        assert again.content == first.content  # the key's outcome is fixed, as at Stripe
        assert balance_of(buyer) == Decimal("110.00")
        assert IdempotencyKey.objects.get(key="k-3").response_status == 400

    def test_validation_errors_are_not_stored(self, buyer, buyer_client, buyer_wallet):
        assert_error(
            post(buyer_client, DEPOSIT, {"amount": "abc"}, **{"Idempotency-Key": "k-4"}), 400, "VALIDATION_ERROR"
        )
        assert not IdempotencyKey.objects.exists()
        assert post(buyer_client, DEPOSIT, {"amount": "4.00"}, **{"Idempotency-Key": "k-4"}).status_code == 200

    @pytest.mark.parametrize("key", ["", "x" * 256, "clé", "tab\there"])
    def test_malformed_key_is_a_validation_error(self, buyer_client, buyer_wallet, key):
        body = assert_error(
            post(buyer_client, DEPOSIT, {"amount": "1.00"}, **{"Idempotency-Key": key}), 400, "VALIDATION_ERROR"
        )
        assert "idempotencyKey" in body["details"]
        assert not LedgerEntry.objects.exists()

    def test_longest_valid_key(self, buyer_client, buyer_wallet):
        assert post(buyer_client, DEPOSIT, {"amount": "1.00"}, **{"Idempotency-Key": "~" * 255}).status_code == 200

    def test_purge_removes_only_records_older_than_24_hours(self, buyer, buyer_client, buyer_wallet):
        post(buyer_client, DEPOSIT, {"amount": "1.00"}, **{"Idempotency-Key": "old"})
        post(buyer_client, DEPOSIT, {"amount": "1.00"}, **{"Idempotency-Key": "new"})
        IdempotencyKey.objects.filter(key="old").update(created_at=timezone.now() - timedelta(hours=25))
        call_command("purge_idempotency_keys", stdout=io.StringIO())
        assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["new"]


class TestQueryBudgets:
    """Each endpoint runs a fixed number of queries, whatever the data or the page size."""

    def test_get_wallet(self, buyer_client, buyer_wallet, django_assert_max_num_queries):
        with django_assert_max_num_queries(2):  # token user, wallet
            assert buyer_client.get(WALLET).status_code == 200

    def test_deposit(self, buyer_client, buyer_wallet, django_assert_max_num_queries):
        post(buyer_client, DEPOSIT, {"amount": "1.00"})  # the system account exists from now on
        # user, wallet, system account, savepoint, lock, journal + legs + balances, release
        with django_assert_max_num_queries(7):
            assert post(buyer_client, DEPOSIT, {"amount": "1.00"}).status_code == 200

    def test_deposit_with_idempotency_key(self, buyer_client, buyer_wallet, django_assert_max_num_queries):
        post(buyer_client, DEPOSIT, {"amount": "1.00"})
        # the 7 above + transaction, advisory lock, key lookup, savepoint pair, key insert
        with django_assert_max_num_queries(14):
            assert post(buyer_client, DEPOSIT, {"amount": "1.00"}, **{"Idempotency-Key": "q"}).status_code == 200
        with django_assert_max_num_queries(5):  # the replay: user, begin, lock, lookup, commit
            assert post(buyer_client, DEPOSIT, {"amount": "1.00"}, **{"Idempotency-Key": "q"}).status_code == 200

    def test_withdraw(self, buyer, buyer_client, django_assert_max_num_queries):
        funded_wallet(user=buyer, amount="10.00")
        post(buyer_client, WITHDRAW, {"amount": "1.00"})
        with django_assert_max_num_queries(7):
            assert post(buyer_client, WITHDRAW, {"amount": "1.00"}).status_code == 200

    @pytest.mark.parametrize("limit", [1, 50])
    def test_transactions_do_not_grow_with_the_page(self, buyer, buyer_client, django_assert_max_num_queries, limit):
        wallet = funded_wallet(user=buyer, amount="100.00")
        for _ in range(60):
            services.wallet_withdraw(wallet=wallet, amount=Decimal("1.00"))
        with django_assert_max_num_queries(3):  # token user, count, page (journal joined)
            response = buyer_client.get(TRANSACTIONS, {"limit": limit})
        assert len(response.json()["data"]) == limit


def test_schema_documents_the_wallet_endpoints_and_the_idempotency_header(api_client):
    schema = json.loads(api_client.get("/api/schema/?format=json").content)
    for path in ["/api/v1/wallet", "/api/v1/wallet/deposit", "/api/v1/wallet/withdraw", "/api/v1/wallet/transactions"]:
        assert path in schema["paths"]
    parameters = schema["paths"]["/api/v1/wallet/deposit"]["post"]["parameters"]
    assert any(p["name"] == "Idempotency-Key" and p["in"] == "header" for p in parameters)
    assert "balanceBefore" in schema["components"]["schemas"]["Transaction"]["properties"]
