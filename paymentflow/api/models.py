from django.conf import settings
from django.db import models


class IdempotencyKey(models.Model):
    """The first response to a request sent with an `Idempotency-Key`, kept for replay.

    Written in the same transaction as the operation it records (see
    `paymentflow.api.idempotency`); purged after 24 h by `manage.py purge_idempotency_keys`.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    # sha256 of method, path and the canonical JSON body: the same key with another body is refused.
    fingerprint = models.CharField(max_length=64)
    method = models.CharField(max_length=8)
    path = models.CharField(max_length=255)
    response_status = models.PositiveSmallIntegerField()
    response_content_type = models.CharField(max_length=100)
    # The rendered body, replayed byte for byte.
    response_body = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "key"], name="idempotency_user_key_unique")]

    def __str__(self) -> str:
        return f"{self.key} ({self.method} {self.path} -> {self.response_status})"
