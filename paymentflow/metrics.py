"""Our business metrics, and `GET /metrics` that serves them with django-prometheus's.

Every metric of ours is defined here, and counted through the small functions below: one
line at the place that decides (an order changes status in `orders.services`, a ledger leg
is written in `wallets.services`, an error answer is built in `api.errors`, ...). Money
and order counts move only when their transaction commits (`transaction.on_commit`), so a
rolled-back or retried transaction counts nothing; answers (errors, replays, throttling)
count when they are made.

Several gunicorn workers: gunicorn.conf.py points prometheus_client's multiprocess mode at
a directory (PROMETHEUS_MULTIPROC_DIR) before the workers start; each worker writes its
values there and the endpoint adds them up, so any worker answers for the whole instance.
Without it (runserver, a management command, the tests) the process's own registry is
served. Each instance is scraped on its own; Prometheus sums instances.

`METRICS_TOKEN` unset: 404. Set: `Authorization: Bearer <token>`, else 401.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterable
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.http import Http404, HttpResponse
from django.views.decorators.http import require_safe
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

ORDERS = Counter(
    "paymentflow_orders",
    "Orders entering a status (created PENDING or COMPLETED, or moved there), by payment method.",
    ["payment_method", "status"],
)
ORDER_AMOUNT = Histogram(
    "paymentflow_order_amount",
    "Amount of each order that completed, in the deployment's currency.",
    ["payment_method"],
    buckets=(1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 10000),
)
API_ERRORS = Counter(
    "paymentflow_api_errors",
    "Error answers (the envelope) by route, code and status: business refusals such as "
    "INSUFFICIENT_FUNDS on the orders route, validation, THROTTLED, DATABASE_BUSY, 5xx.",
    ["route", "code", "status"],
)
LEDGER_MOVEMENTS = Counter(
    "paymentflow_ledger_movements",
    "Ledger legs written on user wallets, by type (DEPOSIT, WITHDRAWAL, PAYMENT, REVENUE, REFUND, ADJUSTMENT).",
    ["type"],
)
LEDGER_AMOUNT = Counter(
    "paymentflow_ledger_amount",
    "Sum of the amounts of those legs, by type, in the deployment's currency.",
    ["type"],
)
STRIPE_EVENTS = Counter(
    "paymentflow_stripe_events",
    "Stripe events by type and outcome: processed, ignored, failed, duplicate (already handled).",
    ["type", "outcome"],
)
IDEMPOTENT_REPLAYS = Counter(
    "paymentflow_idempotent_replays",
    "Requests answered with the stored response of an earlier request with the same Idempotency-Key.",
)
THROTTLED_REQUESTS = Counter(
    "paymentflow_throttled_requests",
    "Requests refused 429 by a throttle, by scope.",
    ["scope"],
)
# Counted by the worker (webhooks.delivery), served by its own endpoint (run_worker).
WEBHOOK_DELIVERIES = Counter(
    "paymentflow_webhook_deliveries",
    "Merchant webhook delivery attempts by outcome: succeeded, retrying, failed (given up).",
    ["outcome"],
)
# Counted by reconcile_ledger and reconcile_stripe (in the worker when the schedule runs them).
RECONCILE_DRIFT = Counter(
    "paymentflow_reconcile_drift",
    "Drifts found by reconcile_ledger (by check: balances, chains, journals, zero-sum, stock, ...) and "
    "reconcile_stripe (check 'stripe: <kind of difference>') runs.",
    ["check"],
)
SCHEDULED_JOB_RUNS = Counter(
    "paymentflow_scheduled_job_runs",
    "Runs of scheduled jobs by the worker, by job and outcome (succeeded, failed).",
    ["job", "outcome"],
)


# --- Counting: one call at the place that decides ------------------------------------------------


def order_entered_status(order) -> None:
    """After the commit: the order is in `order.status` (created so, or just moved there)."""
    method, status, amount = order.payment_method, order.status, float(order.amount)

    def count():
        ORDERS.labels(method, status).inc()
        if status == "COMPLETED":
            ORDER_AMOUNT.labels(method).observe(amount)

    transaction.on_commit(count)


def ledger_legs_written(legs: Iterable[tuple[str, Decimal]]) -> None:
    """After the commit: user-wallet legs `(type, amount)` were written."""
    legs = [(type_, float(amount)) for type_, amount in legs]

    def count():
        for type_, amount in legs:
            LEDGER_MOVEMENTS.labels(type_).inc()
            LEDGER_AMOUNT.labels(type_).inc(amount)

    transaction.on_commit(count)


def stripe_event_handled(*, event_type: str, outcome: str) -> None:
    """After the commit: what handling one delivery of a Stripe event came to."""
    transaction.on_commit(lambda: STRIPE_EVENTS.labels(event_type, outcome).inc())


def error_answered(request, *, status_code: int, code: str) -> None:
    match = getattr(request, "resolver_match", None)
    API_ERRORS.labels(match.route if match else "", code, str(status_code)).inc()


def idempotent_replay() -> None:
    IDEMPOTENT_REPLAYS.inc()


def request_throttled(*, scope: str) -> None:
    THROTTLED_REQUESTS.labels(scope).inc()


def webhook_delivery_attempted(*, outcome: str) -> None:
    WEBHOOK_DELIVERIES.labels(outcome).inc()


def reconcile_drift_found(*, check: str, count: int = 1) -> None:
    RECONCILE_DRIFT.labels(check).inc(count)


def scheduled_job_ran(*, job: str, succeeded: bool) -> None:
    SCHEDULED_JOB_RUNS.labels(job, "succeeded" if succeeded else "failed").inc()


# --- The endpoint ------------------------------------------------------------------------------------


def _registry():
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # every worker's files, added up
        return registry
    return REGISTRY


def _authorized(request) -> bool:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and secrets.compare_digest(token.encode(), settings.METRICS_TOKEN.encode())


@require_safe
def metrics_view(request):
    """`GET /metrics`: Prometheus text; 404 without METRICS_TOKEN, 401 without the token."""
    if not settings.METRICS_TOKEN:
        raise Http404("metrics are off")
    if not _authorized(request):
        return HttpResponse(
            "401 Unauthorized\n",
            status=401,
            content_type="text/plain",
            headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
        )
    return HttpResponse(generate_latest(_registry()), content_type=CONTENT_TYPE_LATEST)
