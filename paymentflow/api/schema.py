"""OpenAPI generation: every operation documents the error envelope for the statuses it
can answer, so clients (and the schemathesis fuzzing) know the shape of a refusal."""

from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema

from paymentflow.api.permissions import Public
from paymentflow.api.serializers import ErrorSerializer

_WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


class AutoSchema(SpectacularAutoSchema):
    def _is_public(self) -> bool:
        return any(isinstance(p, Public) for p in self.view.get_permissions())

    def get_auth(self):
        """A `Public` operation takes a token but never needs one (drf-spectacular only
        recognises AllowAny itself, not a subclass): security `[{jwtAuth: []}, {}]`."""
        auths = super().get_auth()
        if self._is_public() and {} not in auths:
            auths.append({})
        return auths

    def _error_statuses(self) -> list[str]:
        # 503: the database is unavailable (DATABASE_UNAVAILABLE) or still deadlocked after
        # the retries (DATABASE_BUSY); every operation can meet either.
        statuses = ["400", "404", "429", "503"]
        if not self._is_public():
            statuses += ["401", "403"]
        if self.method in _WRITE_METHODS:
            statuses += ["409", "413"]
        return statuses

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        for status in self._error_statuses():
            if status not in responses:
                responses[status] = self._get_response_for_code(ErrorSerializer, status, direction=direction)
        return responses
