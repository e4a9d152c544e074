"""The schedule: each job fired once per interval however many schedulers tick at once;
each run reported in one place (a failure, e.g. a reconciliation drift, at ERROR)."""

import logging
from datetime import timedelta

import pytest
from django.core.management import CommandError
from django.utils import timezone
from django_tasks_db.models import DBTaskResult
from prometheus_client import REGISTRY

from paymentflow.jobs.models import ScheduledJob
from paymentflow.jobs.scheduler import schedule_tick
from paymentflow.jobs.tasks import run_scheduled_job
from paymentflow.testing.concurrency import run_at_once
from wallets.models import Wallet
from wallets.tests.factories import funded_wallet

JOBS = {
    "purge_idempotency_keys": {"command": "purge_idempotency_keys", "every": 3600},
    "reconcile_ledger": {"command": "reconcile_ledger", "args": ["--no-progress"], "every": 86400},
    "kick_due_webhook_deliveries": {"callable": "webhooks.delivery.webhook_deliveries_kick_due", "every": 30},
    "switched_off": {"command": "reconcile_ledger", "every": 0},
}


@pytest.fixture
def jobs(settings):
    settings.SCHEDULED_JOBS = JOBS


def fired_tasks() -> list[str]:
    return sorted(
        t.args_kwargs["args"][0] for t in DBTaskResult.objects.filter(task_path__endswith="run_scheduled_job")
    )


def test_due_jobs_fire_once_per_interval(db, jobs):
    now = timezone.now()
    assert sorted(schedule_tick(now=now)) == [
        "kick_due_webhook_deliveries",
        "purge_idempotency_keys",
        "reconcile_ledger",
    ]
    assert schedule_tick(now=now + timedelta(seconds=29)) == []
    assert schedule_tick(now=now + timedelta(seconds=30)) == ["kick_due_webhook_deliveries"]
    assert sorted(schedule_tick(now=now + timedelta(hours=1, seconds=1))) == [
        "kick_due_webhook_deliveries",
        "purge_idempotency_keys",
    ]
    assert fired_tasks() == sorted(
        ["kick_due_webhook_deliveries"] * 3 + ["purge_idempotency_keys"] * 2 + ["reconcile_ledger"]
    )
    assert not ScheduledJob.objects.filter(name="switched_off").exists()


def test_a_shortened_interval_takes_effect_at_once(db, jobs, settings):
    now = timezone.now()
    schedule_tick(now=now)  # reconcile_ledger next due in a day
    settings.SCHEDULED_JOBS = {**JOBS, "reconcile_ledger": {**JOBS["reconcile_ledger"], "every": 60}}
    assert "reconcile_ledger" in schedule_tick(now=now + timedelta(seconds=1))


@pytest.mark.concurrency
def test_schedulers_ticking_at_the_same_moment_fire_each_job_once(transactional_db, jobs):
    now = timezone.now()
    fired = run_at_once([lambda: schedule_tick(now=now)] * 8)
    assert sorted(name for names in fired for name in names) == [
        "kick_due_webhook_deliveries",
        "purge_idempotency_keys",
        "reconcile_ledger",
    ]
    assert fired_tasks() == ["kick_due_webhook_deliveries", "purge_idempotency_keys", "reconcile_ledger"]


def test_a_run_is_reported_on_the_job(db, jobs):
    schedule_tick()
    assert run_scheduled_job.call("purge_idempotency_keys") == "Purged 0 idempotency key(s) older than 24 h."
    job = ScheduledJob.objects.get(name="purge_idempotency_keys")
    assert job.last_succeeded is True and job.last_finished_at and job.last_message.startswith("Purged 0")
    assert run_scheduled_job.call("kick_due_webhook_deliveries") == "Kicked 0 webhook deliveries."


def test_a_reconciliation_drift_fails_the_job_and_is_logged_at_error(db, jobs, caplog):
    schedule_tick()
    wallet = funded_wallet(amount="10.00")
    Wallet.objects.filter(pk=wallet.pk).update(balance="11.00")  # drift: balance != its ledger
    drifts, failed_runs = (
        counted("paymentflow_reconcile_drift_total", check="balances"),
        counted("paymentflow_scheduled_job_runs_total", job="reconcile_ledger", outcome="failed"),
    )
    with caplog.at_level(logging.ERROR, logger="paymentflow.jobs"), pytest.raises(CommandError, match="Ledger drift"):
        run_scheduled_job.call("reconcile_ledger")
    (record,) = [r for r in caplog.records if r.name == "paymentflow.jobs" and r.levelno >= logging.WARNING]
    assert record.levelno == logging.ERROR and "reconcile_ledger failed" in record.getMessage()
    assert str(wallet.pk) in record.getMessage()
    job = ScheduledJob.objects.get(name="reconcile_ledger")
    assert job.last_succeeded is False and "Ledger drift" in job.last_message
    assert counted("paymentflow_reconcile_drift_total", check="balances") == drifts + 1
    assert counted("paymentflow_scheduled_job_runs_total", job="reconcile_ledger", outcome="failed") == failed_runs + 1


def counted(sample: str, **labels) -> float:
    return REGISTRY.get_sample_value(sample, labels) or 0.0
