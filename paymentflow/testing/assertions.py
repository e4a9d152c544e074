"""Assertions shared by every app's tests."""

ENVELOPE_KEYS = {"statusCode", "error", "code", "message", "details", "timestamp", "path", "method"}


def assert_error(response, status: int, code: str) -> dict:
    """The response is the contract's error envelope with this status and code; returns the body."""
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = response.json()
    assert set(body) == ENVELOPE_KEYS, body
    assert (body["statusCode"], body["code"]) == (status, code), body
    return body
