from django.apps import AppConfig


class JobsConfig(AppConfig):
    """The background worker and the schedule it runs (label `jobs`)."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "paymentflow.jobs"
    label = "jobs"
    verbose_name = "Scheduled jobs"
