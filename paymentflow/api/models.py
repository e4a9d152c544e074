from django.conf import settings
from django.db import models


class IdempotencyKey(models.Model):
    """The first response to a request sent with an `Idempotency-Key`, kept for replay.

    Written in the same transaction as the operation it records, or, for an operation that
    calls Stripe between transactions, claimed first and completed after (see
    `paymentflow.api.idempotency`); purged after 24 h by `manage.py purge_idempotency_keys`.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    # sha256 of method, path and the canonical JSON body: the same key with another body is refused.
    fingerprint = models.CharField(max_length=64)
    method = models.CharField(max_length=8)
    path = models.CharField(max_length=255)
    # Null while a multi-step operation (one that calls Stripe between its transactions) is
    # still running: the key is claimed, the response not known yet.
    response_status = models.PositiveSmallIntegerField(null=True)
    response_content_type = models.CharField(max_length=100, blank=True, default="")
    # The rendered body, replayed byte for byte.
    response_body = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "key"], name="idempotency_user_key_unique")]

    def __str__(self) -> str:
        return f"{self.key} ({self.method} {self.path} -> {self.response_status})"

    @property
    def in_progress(self) -> bool:
        return self.response_status is None
