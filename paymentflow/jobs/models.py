"""One row per scheduled job: when it is next due, and how its last run ended."""

from django.db import models


class ScheduledJob(models.Model):
    """`next_run_at` is the lock that makes one worker, of however many, fire the job once
    per interval: firing is a conditional UPDATE of this row (paymentflow.jobs.scheduler)."""

    name = models.CharField(max_length=100, primary_key=True)
    next_run_at = models.DateTimeField()
    last_enqueued_at = models.DateTimeField(null=True, blank=True)
    last_finished_at = models.DateTimeField(null=True, blank=True)
    last_succeeded = models.BooleanField(null=True, blank=True)
    last_message = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name
