"""The public product list's cache: versioned keys in the shared cache (Redis in production).

Every cached page lives under a key that embeds the current *list version*. Invalidating
is one `INCR` of that version (no delete-by-pattern): old pages are simply never read
again and expire after `LIST_TTL` seconds.

Writers call `invalidate_product_list_on_commit()` inside their transaction; the version
moves only after the commit, so a reader can never cache pre-commit rows under the new
version.

The cache is an optimisation, never a dependency: every function here logs and swallows
cache failures (django-redis already does with IGNORE_EXCEPTIONS and short socket
timeouts; the `except` here covers backends and errors it does not wrap), and a reader
that cannot reach the cache goes to the database. When a reader finds the cache
unreachable, this process stops asking it for `BYPASS_SECONDS` (a small circuit breaker),
so a Redis that times out costs one slow request per process per window, not every
request. Invalidation is always attempted, open breaker or not.
"""

import hashlib
import json
import logging
import time

from django.core.cache import cache
from django.db import transaction

logger = logging.getLogger("paymentflow.cache")

LIST_TTL = 60  # seconds
VERSION_KEY = "catalog:products:list-version"
PAGE_KEY_PREFIX = "catalog:products:list"
BYPASS_SECONDS = 5.0

# Process-local breaker: readers skip the cache until this time.monotonic() value.
_bypass_until = 0.0


def _trip() -> None:
    global _bypass_until
    _bypass_until = time.monotonic() + BYPASS_SECONDS
    logger.warning("product list cache unreachable: serving from the database for %.0f s", BYPASS_SECONDS)


def reset_bypass() -> None:
    """Close the breaker (tests; or after an operator fixed Redis and wants it used at once)."""
    global _bypass_until
    _bypass_until = 0.0


def bypassing() -> bool:
    return time.monotonic() < _bypass_until


def _fresh_version() -> int:
    # A time-based start (not 1) so that a version key lost to eviction or a Redis restart
    # can never come back with a number whose pages are still cached.
    return time.time_ns() // 1000


def current_version() -> int | None:
    """The list version, creating it when absent; None when the cache is unreachable."""
    if bypassing():
        return None
    try:
        version = cache.get(VERSION_KEY)
        if version is not None:
            return int(version)
        candidate = _fresh_version()
        added = cache.add(VERSION_KEY, candidate, timeout=None)
        if added is None:  # django-redis answers None when it swallowed a connection error
            _trip()
            return None
        if added:
            return candidate
        version = cache.get(VERSION_KEY)  # another process created it first
        return int(version) if version is not None else None
    except Exception:
        logger.warning("product list cache: cannot read the version", exc_info=True)
        _trip()
        return None


def page_key(version: int, params: dict) -> str:
    digest = hashlib.sha256(json.dumps(params, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    return f"{PAGE_KEY_PREFIX}:{version}:{digest}"


def get_page(key: str):
    try:
        return cache.get(key)
    except Exception:
        logger.warning("product list cache: read failed", exc_info=True)
        return None


def set_page(key: str, value) -> None:
    try:
        cache.set(key, value, timeout=LIST_TTL)
    except Exception:
        logger.warning("product list cache: write failed", exc_info=True)


def invalidate_product_list() -> None:
    """Move the list version on; every cached page becomes unreachable. Never raises."""
    try:
        try:
            if cache.incr(VERSION_KEY) is None:
                logger.warning("product list cache: invalidation skipped, cache unreachable")
        except ValueError:  # the version key is absent (never created, evicted, flushed)
            cache.set(VERSION_KEY, _fresh_version(), timeout=None)
    except Exception:
        logger.warning("product list cache: invalidation failed", exc_info=True)


def invalidate_product_list_on_commit() -> None:
    """Invalidate once the surrounding transaction commits (at once in autocommit)."""
    transaction.on_commit(invalidate_product_list)


def cached_list_page(*, params: dict, build):
    """The cached value for these (normalised) list parameters, or `build()` stored for
    LIST_TTL seconds. With the cache unreachable: `build()`, nothing stored."""
    version = current_version()
    if version is None:
        return build()
    key = page_key(version, params)
    value = get_page(key)
    if value is None:
        value = build()
        set_page(key, value)
    return value
