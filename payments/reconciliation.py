"""Our card payments against Stripe's own records (`manage.py reconcile_stripe`).

What proves the books, and how it is read:

- Stripe's side: its Checkout Sessions (amount, currency, paid or not) and its refunds,
  each read as one paged list since the window's start (`--days`, default
  RECONCILE_WINDOW), plus a retrieve for a session of ours that the list does not show.
- Ours: every payment created in the window, and, for all time, the ledger's balance of
  `stripe:clearing` (registered by wallets, `payments.hooks.clearing_balance`), which
  must be minus the sum of the applied payments whose money was not taken back.

Every difference is named: a payment Stripe took that we never applied (also through a
session that may be ours but was never recorded), a payment we applied that Stripe does
not show paid, an amount or currency that differs, a refund we do
not know of, a refund we recorded that Stripe does not have, a refund still in progress,
a payment flagged for staff, and a clearing balance that does not add up. Balance
transactions are not read: a session's payment status and its refunds already say what
moved for each payment, and fees are not part of our books.
"""

from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.db.models import Sum
from django.utils import timezone

from payments import gateway, services
from payments.hooks import clearing_balance
from payments.models import CheckoutPayment

RECONCILE_WINDOW = timedelta(days=30)
#: Sessions are created a moment after their payment row: read Stripe from a little earlier.
SLACK = timedelta(hours=1)

Status, RefundStatus = CheckoutPayment.Status, CheckoutPayment.RefundStatus


@dataclass(frozen=True)
class Difference:
    what: str  # a short name: "not applied", "unknown refund", "amount", ...
    message: str
    payment_id: str | None = None

    def __str__(self) -> str:
        return f"[{self.what}] {self.message}"


def reconcile_stripe(*, window: timedelta = RECONCILE_WINDOW, ignored: list[str] | None = None) -> list[Difference]:
    """Every difference between our card payments and Stripe's records (empty: they agree).
    Raises GatewayError when Stripe cannot be read. Without a Stripe key only our side is
    checked (clearing), and any card payment of the window is reported not compared.

    Each session Stripe lists is looked up by its id among our payments (of any age), never
    by its metadata; a paid one recorded on none of them is not ours (another integration's,
    the Dashboard's) and only noted in `ignored`, unless it may be one our create made whose
    answer was lost (`services.lost_session_line`): that is a difference until its webhook
    (or staff) settles it."""
    since = timezone.now() - window
    if not gateway.is_configured():  # only our side can be checked
        opened = CheckoutPayment.objects.filter(created_at__gte=since, stripe_session_id__isnull=False).count()
        message = f"Stripe is not configured: {opened} card payment(s) of the window could not be compared"
        return ([Difference("not compared", message)] if opened else []) + _clearing()
    sessions = gateway.list_checkout_sessions(created_since=since - SLACK)
    refunds = defaultdict(list)
    for refund in gateway.list_refunds(created_since=since - SLACK):
        if refund.is_made:
            refunds[refund.payment_intent_id].append(refund)
    differences, compared = [], set()
    ours = _payments_by_session_id([s.id for s in sessions])
    for session in sessions:
        payment = ours.get(session.id)
        if payment is None:
            differences += _unrecorded_session(session, refunds, ignored if ignored is not None else [])
            continue
        compared.add(payment.pk)
        differences += _compare(payment, session, refunds.get(session.payment_intent_id, []))
    payments = CheckoutPayment.objects.filter(created_at__gte=since, stripe_session_id__isnull=False)
    for payment in payments.order_by("created_at").iterator():
        if payment.pk in compared:
            continue
        session = _retrieve(payment, differences)  # ours, but not in Stripe's list
        if session is not None:
            differences += _compare(payment, session, refunds.get(session.payment_intent_id, []))
    differences += _clearing()
    return differences


def _payments_by_session_id(session_ids: list[str]) -> dict[str, CheckoutPayment]:
    found = {}
    for start in range(0, len(session_ids), 1000):  # bounded IN lists
        chunk = session_ids[start : start + 1000]
        found.update({p.stripe_session_id: p for p in CheckoutPayment.objects.filter(stripe_session_id__in=chunk)})
    return found


def _retrieve(payment: CheckoutPayment, differences: list) -> gateway.CheckoutSession | None:
    try:
        return gateway.retrieve_checkout_session(session_id=payment.stripe_session_id)
    except gateway.GatewayError as exc:
        if exc.http_status != 404:
            raise
        message = f"{payment.kind} payment {payment.pk}: Stripe has no session {payment.stripe_session_id}"
        differences.append(Difference("missing session", message, str(payment.pk)))
        return None


def _compare(payment: CheckoutPayment, session: gateway.CheckoutSession, refunds: list) -> list[Difference]:
    found = []

    def differ(what: str, message: str) -> None:
        found.append(Difference(what, f"{payment.kind} payment {payment.pk}: {message}", str(payment.pk)))

    paid = session.payment_status == "paid"
    refunded = sum((r.amount for r in refunds), Decimal("0.00"))
    refund_ids = ", ".join(r.id for r in refunds)
    if not services.same_money(payment, session):
        differ("amount", f"ours is {payment.amount} {payment.currency}, Stripe's session {session.id} is "
                         f"{session.amount_total} {(session.currency or '').upper()}")  # fmt: skip
    if paid and payment.status != Status.SUCCEEDED and payment.refund_status is None and not refunds:
        differ("not applied", f"Stripe took {session.amount_total} (session {session.id}) and we never applied it")
    if payment.status == Status.SUCCEEDED and not paid:
        differ("not paid", f"applied, but Stripe's session {session.id} is {session.payment_status}")
    if payment.refund_status == RefundStatus.SUCCEEDED and payment.stripe_refund_id not in {r.id for r in refunds}:
        differ("refund missing", f"we recorded refund {payment.stripe_refund_id}; Stripe shows {refund_ids or 'none'}")
    if payment.refund_status != RefundStatus.SUCCEEDED and refunds:
        differ("unknown refund", f"Stripe refunded {refunded} ({refund_ids}); we record the refund as "
                                 f"{payment.refund_status or 'none'}")  # fmt: skip
    if payment.refund_status == RefundStatus.PENDING and not refunds:
        differ("refund in progress", f"a refund asked for at {payment.refund_requested_at:%Y-%m-%d %H:%M} UTC is "
                                     "not at Stripe yet (the sweep makes it)")  # fmt: skip
    if payment.needs_attention:
        differ("needs staff", payment.attention_reason)
    return found


def _unrecorded_session(session: gateway.CheckoutSession, refunds, ignored: list[str]) -> list[Difference]:
    """A session recorded on none of our payments. Unpaid: of no interest. Paid: not ours
    (noted in `ignored`), unless it may be ours with its create's answer lost and Stripe
    has not given all of it back."""
    if session.payment_status != "paid":
        return []
    line = services.lost_session_line(session)
    if isinstance(line, str):
        ignored.append(f"session {session.id} (paid {session.amount_total} {session.currency}): not ours, {line}")
        return []
    refunded = sum((r.amount for r in refunds.get(session.payment_intent_id, [])), Decimal("0.00"))
    if refunded >= (session.amount_total or 0):
        return []
    message = (
        f"Stripe took {session.amount_total} through session {session.id}, which names "
        f"{session.metadata.get('kind')} {line.reference_id}, whose payment {line.payment_id} never recorded a "
        f"session (our create's answer lost?); its webhook asks Stripe whether it is ours (refunded: {refunded})"
    )
    return [Difference("unrecorded session", message, str(line.payment_id))]


def _clearing() -> list[Difference]:
    applied = CheckoutPayment.objects.filter(status=Status.SUCCEEDED, refund_status=None).aggregate(
        total=Sum("amount")
    )["total"] or Decimal("0.00")
    balance = clearing_balance()
    if balance != -applied:
        message = f"stripe:clearing is {balance}, but the applied card payments not refunded add up to {-applied}"
        return [Difference("clearing", message)]
    return []
