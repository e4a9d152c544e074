"""Stored emails take their normal form (accounts.emails). Addresses that would become one
address of several accounts, or that have no normal form, are left unchanged and reported:
merging accounts is a decision for staff, never for a migration."""

from django.db import migrations

from accounts.emails import plan_normalization


def normalize_stored_emails(apps, schema_editor):
    User = apps.get_model("accounts", "User")
    plan = plan_normalization(list(User.objects.values_list("pk", "email")))
    for pk, email in plan.updates.items():
        User.objects.filter(pk=pk).update(email=email)
    if plan.updates or plan.clashes or plan.invalid:
        print("\n" + plan.report())  # noqa: T201 -- shown by `manage.py migrate`, for the operator


class Migration(migrations.Migration):
    dependencies = [("accounts", "0001_initial")]

    operations = [migrations.RunPython(normalize_stored_emails, migrations.RunPython.noop)]
