"""OpenAPI generation: every operation documents the error envelope for the statuses it
can answer, so clients (and the schemathesis fuzzing) know the shape of a refusal; money
is documented as what it is on the wire."""

from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema

from paymentflow.api.permissions import Public
from paymentflow.api.serializers import MONEY_OUTPUT_PATTERN, ErrorSerializer

_WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
_BODY_METHODS = {"POST", "PUT", "PATCH"}

# What each error status means to a client, whatever the operation (the `code` says which).
ERROR_DESCRIPTIONS = {
    "400": "The request was refused: invalid input (`VALIDATION_ERROR`, `PARSE_ERROR`) or a business rule "
    "(`INSUFFICIENT_FUNDS`, `PRODUCT_OUT_OF_STOCK`...).",
    "401": "No token, or a token that is invalid or expired (`NOT_AUTHENTICATED`, `TOKEN_NOT_VALID`).",
    "403": "The caller may not do this (`PERMISSION_DENIED`, `WALLET_LOCKED`...).",
    "404": "No such object, or one the caller may not see.",
    "405": "This path does not answer that method (`METHOD_NOT_ALLOWED`).",
    "406": "The `Accept` header asks for something other than JSON (`NOT_ACCEPTABLE`).",
    "409": "The request conflicts with the current state, or the same `Idempotency-Key` is still being processed.",
    "413": "The request body is larger than 256 KiB (`PAYLOAD_TOO_LARGE`).",
    "415": "The body is not `application/json` (`UNSUPPORTED_MEDIA_TYPE`).",
    "429": "Too many requests; retry after the `Retry-After` header's seconds (`THROTTLED`).",
    "500": "An unexpected error; quote the `X-Request-ID` response header when reporting it.",
    "502": "The payment gateway failed (`GATEWAY_ERROR`); nothing was charged twice, retry with the same "
    "`Idempotency-Key`.",
    "503": "A dependency is unavailable or busy (`DATABASE_UNAVAILABLE`, `DATABASE_BUSY`, "
    "`GATEWAY_NOT_CONFIGURED`); retry shortly.",
}


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
        # Every operation: 405 and 406 (content negotiation), 413 (any body, checked before the
        # view), 503 (the database unavailable or still deadlocked after the retries).
        statuses = ["400", "404", "405", "406", "413", "429", "503"]
        if not self._is_public():
            statuses += ["401", "403"]
        if self.method in _WRITE_METHODS:
            statuses.append("409")
        if self.method in _BODY_METHODS and self.view.parser_classes and self.get_request_serializer() is not None:
            statuses.append("415")  # a body parsed as JSON, sent as something else
        return statuses

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        for status in self._error_statuses():
            if status not in responses:
                responses[status] = self._get_response_for_code(ErrorSerializer, status, direction=direction)
        for status, response in responses.items():
            if status in ERROR_DESCRIPTIONS and not response.get("description"):
                response["description"] = ERROR_DESCRIPTIONS[status]
        return responses


def document_money_outputs(result, generator, request, public):
    """POSTPROCESSING_HOOKS: a read-only decimal is an amount we return, always non-negative
    with two places ("25.00"); drf-spectacular's pattern for DecimalField allows a minus sign."""

    def visit(node):
        if isinstance(node, dict):
            if node.get("format") == "decimal" and node.get("readOnly"):
                node["pattern"] = MONEY_OUTPUT_PATTERN
                node.setdefault("example", "25.00")
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(result.get("components", {}))
    return result
