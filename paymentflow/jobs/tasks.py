"""The task that runs one scheduled job, and the one place a job's outcome is reported."""

import io
import logging

from django.conf import settings
from django.core.management import call_command
from django.utils import timezone
from django.utils.module_loading import import_string
from django_tasks import task

from paymentflow import metrics
from paymentflow.jobs.models import ScheduledJob

logger = logging.getLogger("paymentflow.jobs")

MESSAGE_LIMIT = 4000


@task()
def run_scheduled_job(name: str) -> str:
    """Run the job `name` of `settings.SCHEDULED_JOBS`: a management command (its output is
    the message; a CommandError, e.g. a reconciliation's drift, is a failure) or a callable
    (what it returns is the message). A failure is reported, then re-raised so that the
    task's result keeps it with its traceback (admin: Task results)."""
    job = settings.SCHEDULED_JOBS[name]
    output = io.StringIO()
    try:
        if "command" in job:
            call_command(job["command"], *job.get("args", []), stdout=output, stderr=output)
        else:
            output.write(str(import_string(job["callable"])() or ""))
    except Exception as exc:
        report_job_outcome(name=name, succeeded=False, message=f"{type(exc).__name__}: {exc}\n{output.getvalue()}")
        raise
    message = output.getvalue().strip()
    report_job_outcome(name=name, succeeded=True, message=message)
    return message[:MESSAGE_LIMIT]


def report_job_outcome(*, name: str, succeeded: bool, message: str) -> None:
    """Every run of a scheduled job ends here: logged (a failure, e.g. a reconciliation's
    drift, at ERROR), counted, and kept on the job's row for the back office."""
    message = message.strip()[:MESSAGE_LIMIT]
    metrics.scheduled_job_ran(job=name, succeeded=succeeded)
    if succeeded:
        logger.info("Scheduled job %s succeeded: %s", name, message)
    else:
        logger.error("Scheduled job %s failed: %s", name, message)
    ScheduledJob.objects.filter(name=name).update(
        last_finished_at=timezone.now(), last_succeeded=succeeded, last_message=message
    )
