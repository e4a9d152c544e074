"""The schedule, fired once per interval however many workers run it.

Every worker runs `schedule_tick` every SCHEDULER_TICK_SECONDS (APScheduler, in a thread
of `manage.py run_worker`). A tick fires each job of `settings.SCHEDULED_JOBS` that is
due by moving its `ScheduledJob.next_run_at` forward with a conditional UPDATE: of the
workers that tick at the same moment only one matches the row, and only that one enqueues
the job's task, in the same transaction (so a fired job always has its task, and a task
is never enqueued for a firing that rolled back). Any worker then runs the task.

Ticking often and keeping the due time in the database, rather than one APScheduler
interval trigger per job in each worker, is what keeps the period right with several
workers: their triggers would start at different moments and each would find the job
not yet due when its own turn came.

A worker killed while running a job loses nothing but that run: the job fires again at its
next interval (every job is safe to run again: the sweeps and the purge re-check under
their row locks, the reconciliations only read).
"""

import logging
from datetime import timedelta

from django.conf import settings
from django.db import close_old_connections, transaction
from django.db.models import Q
from django.utils import timezone

from paymentflow.jobs.models import ScheduledJob
from paymentflow.jobs.tasks import run_scheduled_job

logger = logging.getLogger("paymentflow.jobs")


def enabled_jobs() -> dict[str, dict]:
    return {name: job for name, job in settings.SCHEDULED_JOBS.items() if job["every"] > 0}


def scheduler_thread_tick() -> None:
    """What the worker's scheduler thread runs: a tick on a fresh (or still healthy)
    connection of its own, never letting an error stop the scheduler."""
    close_old_connections()
    try:
        schedule_tick()
    except Exception:
        logger.exception("Scheduler tick failed; the next tick tries again")
    finally:
        close_old_connections()


def schedule_tick(*, now=None) -> list[str]:
    """Fire the jobs that are due; returns the names this worker fired."""
    now = now or timezone.now()
    jobs = enabled_jobs()
    # A job seen for the first time is due at once.
    ScheduledJob.objects.bulk_create([ScheduledJob(name=name, next_run_at=now) for name in jobs], ignore_conflicts=True)
    fired = []
    for name, job in jobs.items():
        every = timedelta(seconds=job["every"])
        with transaction.atomic():
            # Due, or scheduled further ahead than the interval allows (it was shortened).
            claimed = ScheduledJob.objects.filter(
                Q(next_run_at__lte=now) | Q(next_run_at__gt=now + every), name=name
            ).update(next_run_at=now + every, last_enqueued_at=now)
            if claimed:
                run_scheduled_job.enqueue(name)
                fired.append(name)
    if fired:
        logger.info("Scheduled jobs fired: %s", ", ".join(fired))
    return fired
