"""Top-ups under `manage.py expire_pending_checkouts` (`payments.sweeps`,
`payments.services.payment_close`): PENDING top-ups whose Checkout Session has expired,
settled when Stripe's `checkout.session.expired` never came. The real SDK against the fake
Stripe, signed webhooks through the real endpoint; nothing of ours is mocked."""

import io
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.test import override_settings
from django.utils import timezone

from paymentflow.testing.concurrency import run_at_once
from payments.models import CheckoutPayment
from payments.services import Closed, payment_close
from wallets.models import TopUp, Wallet
from wallets.services import wallet_set_locked
from wallets.tests.factories import TopUpFactory, WalletFactory
from wallets.tests.test_topups import clearing_balance, deposits_for, start_topup
from webhooks.tests.utils import deliver_session_event

D = Decimal
SESSIONS = "/v1/checkout/sessions"


def sweep() -> str:
    out = io.StringIO()
    call_command("expire_pending_checkouts", stdout=out)
    return out.getvalue()


def age(topup_id, minutes=1):
    """The top-up's session expired `minutes` ago (as far as our row says)."""
    payment_id = TopUp.objects.get(pk=topup_id).payment_id
    CheckoutPayment.objects.filter(pk=payment_id).update(expires_at=timezone.now() - timedelta(minutes=minutes))


def payment(topup_id) -> CheckoutPayment:
    return TopUp.objects.select_related("payment").get(pk=topup_id).payment


def status(topup_id) -> str:
    return TopUp.objects.get(pk=topup_id).status


def balance(user) -> Decimal:
    return Wallet.objects.get(user=user).balance


@pytest.mark.django_db
class TestSweep:
    def test_expires_old_sessions_at_stripe_and_the_top_up_as_the_webhook_would(
        self, fake_stripe, buyer, buyer_client, reconcile
    ):
        old, fresh = start_topup(buyer_client, "20.00"), start_topup(buyer_client, "30.00")
        age(old["id"])

        out = sweep()

        assert out.strip() == "Expired card checkouts: 1 found; expired: 1; 0 not settled"
        assert fake_stripe.last("POST", f"{SESSIONS}/{old['stripeSessionId']}/expire")
        assert fake_stripe.sessions[old["stripeSessionId"]]["status"] == "expired"
        topup = TopUp.objects.get(pk=old["id"])
        assert topup.status == TopUp.Status.EXPIRED and topup.failure_reason == "The checkout session expired unpaid."
        # Not yet expired: left alone, not even asked about at Stripe.
        assert status(fresh["id"]) == TopUp.Status.PENDING
        assert fake_stripe.sessions[fresh["stripeSessionId"]]["status"] == "open"
        assert not fake_stripe.calls("POST", f"{SESSIONS}/{fresh['stripeSessionId']}/expire")
        assert not deposits_for(old["id"]).exists() and balance(buyer) == D("0.00")

        # Stripe's own expired event, late, changes nothing; a second run finds nothing.
        _, response = deliver_session_event(fake_stripe, "checkout.session.expired", old["stripeSessionId"])
        assert response.status_code == 200 and status(old["id"]) == TopUp.Status.EXPIRED
        assert sweep().strip() == "Expired card checkouts: 0 found; nothing to do; 0 not settled"
        reconcile()

    def test_paid_at_stripe_is_credited_once_and_the_late_webhooks_add_nothing(
        self, fake_stripe, buyer, buyer_client, reconcile
    ):
        body = start_topup(buyer_client, "25.50")
        session = fake_stripe.mark_paid(body["stripeSessionId"])
        age(body["id"])

        assert sweep().strip() == "Expired card checkouts: 1 found; paid: 1; 0 not settled"

        assert status(body["id"]) == TopUp.Status.COMPLETED
        assert payment(body["id"]).stripe_payment_intent_id == session["payment_intent"]
        assert fake_stripe.sessions[body["stripeSessionId"]]["status"] == "complete"  # not expired
        assert balance(buyer) == D("25.50") and clearing_balance() == D("-25.50")
        assert deposits_for(body["id"]).count() == 2  # the two legs of the one deposit
        reconcile()

        for type_ in ("checkout.session.completed", "checkout.session.async_payment_succeeded",
                      "checkout.session.expired"):  # fmt: skip
            _, response = deliver_session_event(fake_stripe, type_, body["stripeSessionId"])
            assert response.status_code == 200
        assert sweep().strip() == "Expired card checkouts: 0 found; nothing to do; 0 not settled"

        assert status(body["id"]) == TopUp.Status.COMPLETED and balance(buyer) == D("25.50")
        assert deposits_for(body["id"]).count() == 2 and not fake_stripe.refunds
        reconcile()

    def test_paid_into_a_wallet_locked_meanwhile_is_refunded_not_credited(
        self, fake_stripe, buyer, buyer_client, reconcile
    ):
        body = start_topup(buyer_client, "30.00")
        session = fake_stripe.mark_paid(body["stripeSessionId"])
        wallet_set_locked(wallet_ids=[Wallet.objects.get(user=buyer).pk], locked=True)
        age(body["id"])

        assert sweep().strip() == "Expired card checkouts: 1 found; paid_not_applied: 1; 0 not settled"  # exits 0

        assert status(body["id"]) == TopUp.Status.FAILED and payment(body["id"]).refund_status == "SUCCEEDED"
        assert payment(body["id"]).stripe_refund_id in fake_stripe.refunds
        assert fake_stripe.last("POST", "/v1/refunds").params["payment_intent"] == session["payment_intent"]
        _, response = deliver_session_event(fake_stripe, "checkout.session.completed", body["stripeSessionId"])
        assert response.status_code == 200 and len(fake_stripe.refunds) == 1
        assert balance(buyer) == D("0.00") and not deposits_for(body["id"]).exists()
        reconcile()

    def test_a_delayed_payment_still_processing_is_left_pending(self, fake_stripe, buyer, buyer_client, reconcile):
        body = start_topup(buyer_client, "40.00")
        fake_stripe.mark_completed_unpaid(body["stripeSessionId"])
        age(body["id"])

        assert sweep().strip() == "Expired card checkouts: 1 found; processing: 1; 0 not settled"  # exits 0

        assert status(body["id"]) == TopUp.Status.PENDING and not deposits_for(body["id"]).exists()
        fake_stripe.mark_async_succeeded(body["stripeSessionId"])
        deliver_session_event(fake_stripe, "checkout.session.async_payment_succeeded", body["stripeSessionId"])
        assert status(body["id"]) == TopUp.Status.COMPLETED and balance(buyer) == D("40.00")
        reconcile()

    def test_stripe_down_keeps_it_pending_and_exits_non_zero_then_the_next_run_expires_it(
        self, fake_stripe, buyer_client, reconcile
    ):
        body = start_topup(buyer_client)
        age(body["id"])
        fake_stripe.down = True
        out = io.StringIO()

        with pytest.raises(CommandError) as exc_info:
            call_command("expire_pending_checkouts", stdout=out)

        assert str(exc_info.value) == f"Not settled (retried next run): {payment(body['id']).pk}"
        assert out.getvalue().strip() == "Expired card checkouts: 1 found; nothing to do; 1 not settled"
        assert status(body["id"]) == TopUp.Status.PENDING

        fake_stripe.down = False
        assert sweep().strip() == "Expired card checkouts: 1 found; expired: 1; 0 not settled"
        reconcile()

    def test_one_failure_does_not_stop_the_sweep(self, fake_stripe, buyer, buyer_client, reconcile):
        failing, paid, unpaid = (start_topup(buyer_client, amount) for amount in ("1.00", "2.00", "3.00"))
        fake_stripe.mark_paid(paid["stripeSessionId"])
        for body in (failing, paid, unpaid):
            age(body["id"])
        fake_stripe.fail_next(1, status=503, path=f"{SESSIONS}/{failing['stripeSessionId']}/expire")
        out = io.StringIO()

        with pytest.raises(CommandError, match=str(payment(failing["id"]).pk)):
            call_command("expire_pending_checkouts", stdout=out)

        assert out.getvalue().strip() == "Expired card checkouts: 3 found; expired: 1, paid: 1; 1 not settled"
        assert status(failing["id"]) == TopUp.Status.PENDING
        assert status(paid["id"]) == TopUp.Status.COMPLETED and status(unpaid["id"]) == TopUp.Status.EXPIRED
        assert balance(buyer) == D("2.00")
        reconcile()

    def test_a_session_stripe_would_not_expire_stays_pending_and_is_reported(self, fake_stripe, buyer_client):
        body = start_topup(buyer_client)
        age(body["id"])
        # A 4xx on the expire: the gateway reads the session back, and it is still open.
        fake_stripe.fail_next(1, status=400, path=f"{SESSIONS}/{body['stripeSessionId']}/expire")

        with pytest.raises(CommandError, match=str(payment(body["id"]).pk)):
            sweep()

        assert status(body["id"]) == TopUp.Status.PENDING
        assert fake_stripe.sessions[body["stripeSessionId"]]["status"] == "open"

    def test_a_paid_session_that_does_not_match_is_not_credited_and_is_refunded(
        self, fake_stripe, buyer, buyer_client, reconcile
    ):
        body = start_topup(buyer_client, "30.00")
        CheckoutPayment.objects.filter(pk=payment(body["id"]).pk).update(amount=D("300.00"))  # not what Stripe took
        fake_stripe.mark_paid(body["stripeSessionId"])
        age(body["id"])

        assert "paid_not_applied: 1" in sweep()

        assert status(body["id"]) == TopUp.Status.FAILED and balance(buyer) == D("0.00")
        assert payment(body["id"]).refund_status == "SUCCEEDED" and len(fake_stripe.refunds) == 1
        reconcile()

    def test_without_stripe_configured_it_stays_pending(self, buyer):
        topup = TopUpFactory(wallet=WalletFactory(user=buyer))
        age(topup.pk, minutes=60)

        with pytest.raises(CommandError, match=str(topup.payment_id)):
            sweep()

        assert status(topup.pk) == TopUp.Status.PENDING


@pytest.mark.django_db
class TestPaymentClose:
    @pytest.mark.parametrize("final", [TopUp.Status.COMPLETED, TopUp.Status.FAILED, TopUp.Status.EXPIRED])
    def test_a_payment_out_of_pending_is_a_no_op_without_stripe(self, fake_stripe, buyer, final):
        topup = TopUpFactory(wallet=WalletFactory(user=buyer))
        paid = final == TopUp.Status.COMPLETED
        TopUp.objects.filter(pk=topup.pk).update(status=final, completed_at=timezone.now() if paid else None)
        CheckoutPayment.objects.filter(pk=topup.payment_id).update(
            status="SUCCEEDED" if paid else final, paid_at=timezone.now() if paid else None
        )

        assert payment_close(payment=payment(topup.pk), reason="x") == Closed.SETTLED
        assert status(topup.pk) == final and not fake_stripe.requests

    def test_without_a_session_it_expires_without_asking_stripe(self, fake_stripe, buyer):
        topup = TopUpFactory(wallet=WalletFactory(user=buyer), payment__stripe_session_id=None)

        assert payment_close(payment=payment(topup.pk), reason="x") == Closed.EXPIRED
        assert status(topup.pk) == TopUp.Status.EXPIRED and not fake_stripe.requests

    def test_a_session_already_expired_at_stripe_is_read_back(self, fake_stripe, buyer_client):
        body = start_topup(buyer_client)
        fake_stripe.mark_expired(body["stripeSessionId"])

        assert payment_close(payment=payment(body["id"]), reason="x") == Closed.EXPIRED
        assert status(body["id"]) == TopUp.Status.EXPIRED
        assert fake_stripe.last("GET", f"{SESSIONS}/{body['stripeSessionId']}")  # after Stripe's 400


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("paid", [False, True], ids=["unpaid", "paid"])
def test_no_row_lock_is_held_while_stripe_expires_the_session(fake_stripe, buyer, buyer_client, paid, reconcile):
    """While Stripe is asked to expire the session, another connection can lock the top-up
    and the wallet at once (NOWAIT)."""
    body = start_topup(buyer_client, "10.00")
    if paid:
        fake_stripe.mark_paid(body["stripeSessionId"])
    age(body["id"])

    def rows_lockable_now():
        try:
            with transaction.atomic():
                TopUp.objects.select_for_update(nowait=True).get(pk=body["id"])
                Wallet.objects.select_for_update(nowait=True).get(user=buyer)
                return status(body["id"])
        finally:
            connection.close()  # this runs in the fake Stripe's thread

    fake_stripe.on_next_request(f"{SESSIONS}/{body['stripeSessionId']}/expire", rows_lockable_now)

    sweep()

    assert fake_stripe.hook_results == [TopUp.Status.PENDING]
    assert status(body["id"]) == (TopUp.Status.COMPLETED if paid else TopUp.Status.EXPIRED)
    reconcile()


@pytest.mark.django_db(transaction=True)
@pytest.mark.concurrency
@override_settings(MAX_PENDING_CHECKOUTS=6)
def test_two_sweeps_and_the_paid_webhook_at_once_settle_each_top_up_once(fake_stripe, buyer, buyer_client, reconcile):
    paid = [start_topup(buyer_client, "10.00") for _ in range(3)]
    unpaid = [start_topup(buyer_client, "1.00") for _ in range(3)]
    for body in paid:
        fake_stripe.mark_paid(body["stripeSessionId"])
    CheckoutPayment.objects.update(expires_at=timezone.now() - timedelta(minutes=5))

    def run():
        # A session the other run expired first reads back "expired": not an error.
        return sweep()

    def webhook():
        _, response = deliver_session_event(fake_stripe, "checkout.session.completed", paid[0]["stripeSessionId"])
        return response.status_code

    first, second, delivered = run_at_once([run, run, webhook])

    assert delivered == 200
    assert all(out.startswith("Expired card checkouts") for out in (first, second))
    assert {status(b["id"]) for b in paid} == {TopUp.Status.COMPLETED}
    assert {status(b["id"]) for b in unpaid} == {TopUp.Status.EXPIRED}
    assert all(fake_stripe.sessions[b["stripeSessionId"]]["status"] == "expired" for b in unpaid)
    assert all(deposits_for(b["id"]).count() == 2 for b in paid)  # one deposit each
    assert balance(buyer) == D("30.00") and clearing_balance() == D("-30.00") and not fake_stripe.refunds
    reconcile()


@pytest.mark.django_db
def test_a_lost_async_payment_failure_fails_the_top_up(fake_stripe, buyer, buyer_client, reconcile):
    """One rule for orders and top-ups: a complete, unpaid session whose delayed payment
    failed at Stripe (its `async_payment_failed` event lost) is settled from its PaymentIntent."""
    body = start_topup(buyer_client, "40.00")
    fake_stripe.mark_completed_unpaid(body["stripeSessionId"])
    fake_stripe.mark_async_failed(body["stripeSessionId"])
    age(body["id"])

    assert sweep().strip() == "Expired card checkouts: 1 found; failed: 1; 0 not settled"

    assert status(body["id"]) == TopUp.Status.FAILED and payment(body["id"]).status == "FAILED"
    assert balance(buyer) == D("0.00") and not deposits_for(body["id"]).exists()
    reconcile()
