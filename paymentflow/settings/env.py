"""Tiny readers for environment variables; a bad value fails at start-up, not mid-request."""

import os
from decimal import Decimal, InvalidOperation

from django.core.exceptions import ImproperlyConfigured


def env(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def env_bool(name: str, default: bool) -> bool:
    raw = env(name, "")
    if raw == "":
        return default
    if raw.lower() in {"1", "true", "yes", "on"}:
        return True
    if raw.lower() in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be 1 or 0, got {raw!r}.")


def _parsed(name: str, default, parse, expected: str):
    """`parse` of the variable's value, `default` when it is unset or empty."""
    raw = env(name, "")
    if raw == "":
        return default
    try:
        return parse(raw)
    except (ValueError, InvalidOperation) as exc:
        raise ImproperlyConfigured(f"{name} must be {expected}, got {raw!r}.") from exc


def env_int(name: str, default: int) -> int:
    return _parsed(name, default, int, "an integer")


def env_seconds(name: str, default: float) -> float:
    """A duration in seconds, > 0 (fractions allowed: tests use short ones)."""
    value = _parsed(name, default, float, "a number of seconds")
    if not 0 < value < float("inf"):
        raise ImproperlyConfigured(f"{name} must be above 0 seconds, got {value}.")
    return value


def env_decimal(name: str, default: Decimal) -> Decimal:
    value = _parsed(name, default, Decimal, "a decimal amount")
    if not value.is_finite() or value <= 0:
        raise ImproperlyConfigured(f"{name} must be a positive amount, got {value}.")
    return value.quantize(Decimal("0.01"))


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in env(name, default).split(",") if item.strip()]


def env_seconds_list(name: str, default: str) -> list[int]:
    """A comma-separated list of whole seconds, each > 0 (e.g. a retry schedule)."""
    raw = env_list(name, default)
    try:
        values = [int(item) for item in raw]
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be comma-separated whole seconds, got {raw!r}.") from exc
    if not values or any(value <= 0 for value in values):
        raise ImproperlyConfigured(f"{name} must list at least one number of seconds, each above 0.")
    return values


#: DRF's rate periods (it reads only the first letter: `5/fortnight` would fail on the
#: first request), spelled as the README documents them.
_RATE_PERIODS = frozenset(
    {"s", "sec", "second", "seconds", "m", "min", "minute", "minutes",
     "h", "hour", "hours", "d", "day", "days"}
)  # fmt: skip


def env_rate(name: str, default: str) -> str:
    """A throttle rate in DRF's syntax, `<requests>/<period>` (`10/minute`, `100/s`): at least
    one request per second, minute, hour or day."""
    raw = env(name, "") or default
    count, slash, period = raw.lower().partition("/")
    if not (slash and count.isdigit() and count.isascii() and int(count) > 0 and period in _RATE_PERIODS):
        raise ImproperlyConfigured(
            f"{name} must be <requests>/<period> with at least 1 request and a period of "
            f"second, minute, hour or day (e.g. 10/minute), got {raw!r}."
        )
    return f"{int(count)}/{period}"
