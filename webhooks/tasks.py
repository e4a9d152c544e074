"""The webhooks' background task: one delivery attempt (webhooks.delivery)."""

from django_tasks import task

from webhooks.delivery import webhook_delivery_attempt


@task()
def deliver_webhook(delivery_id: str) -> str:
    return webhook_delivery_attempt(delivery_id=delivery_id)
