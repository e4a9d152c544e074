"""`manage.py run_worker` (`make worker`): the background worker, in the foreground.

It runs the tasks of every queue (django-tasks-db's `db_worker`: merchant webhook
deliveries, scheduled jobs) one at a time, and ticks the schedule (`paymentflow.jobs.
scheduler`) in a background thread. Any number may run at once, on any number of
machines: each task is claimed by one worker (`SELECT ... FOR UPDATE SKIP LOCKED`) and each
scheduled firing by one scheduler (a conditional UPDATE). SIGTERM / Ctrl-C finish the
task in hand, then stop. With WORKER_METRICS_PORT it serves its own counters (webhook
deliveries, scheduled job runs, reconciliation drifts) to Prometheus on that port.
"""

import os
import socket

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.utils import timezone
from prometheus_client import start_http_server

from paymentflow.jobs.scheduler import scheduler_thread_tick


class Command(BaseCommand):
    help = "Run the background worker: queued tasks (webhook deliveries, scheduled jobs) and the schedule."

    def add_arguments(self, parser):
        parser.add_argument("--no-schedule", action="store_true", help="Run tasks only; do not fire scheduled jobs.")

    def handle(self, *args, no_schedule: bool = False, **options):
        worker_id = f"{socket.gethostname()}-{os.getpid()}"[:64]
        scheduler = BackgroundScheduler(timezone=timezone.get_current_timezone())
        if not no_schedule:
            scheduler.add_job(
                scheduler_thread_tick,
                IntervalTrigger(seconds=settings.SCHEDULER_TICK_SECONDS),
                id="schedule_tick",
                next_run_time=timezone.now(),
                max_instances=1,
                coalesce=True,
            )
            scheduler.start()
        if settings.WORKER_METRICS_PORT:
            start_http_server(settings.WORKER_METRICS_PORT, addr=settings.WORKER_METRICS_ADDRESS)
        self.stdout.write(f"Worker {worker_id}: tasks of every queue" + ("" if no_schedule else ", and the schedule"))
        try:
            call_command(
                "db_worker",
                queue_name="*",
                interval=settings.WORKER_POLL_SECONDS,
                reload=False,
                worker_id=worker_id,
                verbosity=options["verbosity"],
            )
        finally:
            if scheduler.running:
                scheduler.shutdown(wait=False)
