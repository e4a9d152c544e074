"""Back office: the schedule and how each job's last run ended (task results, with
tracebacks, are django-tasks-db's own admin)."""

from django.contrib import admin

from paymentflow.admin import ReadOnlyAdminMixin
from paymentflow.jobs.models import ScheduledJob


@admin.register(ScheduledJob)
class ScheduledJobAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["name", "next_run_at", "last_enqueued_at", "last_finished_at", "last_succeeded"]
    fields = ["name", "next_run_at", "last_enqueued_at", "last_finished_at", "last_succeeded", "last_message"]
    readonly_fields = fields
