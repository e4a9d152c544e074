"""Database helpers shared by every app: one atomic block that survives transient failures.

PostgreSQL may abort a transaction that did nothing wrong: a deadlock victim
(`40P01 deadlock_detected`) or a serialization failure (`40001`). The right answer is to
run the whole transaction again, a bounded number of times, never to show the client a 500.

    from paymentflow.db import atomic_with_retry

    @atomic_with_retry
    def wallet_withdraw(*, wallet, amount): ...

    result = atomic_with_retry(lambda: do_things(), attempts=5)()

A retry only makes sense for the *outermost* transaction: inside an outer
`transaction.atomic` the failed transaction is already doomed, so a nested call simply
runs in a savepoint and lets the error reach the outermost retrying block.
"""

import functools
import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

import psycopg.errors
from django.db import DEFAULT_DB_ALIAS, OperationalError, connections, transaction

from paymentflow.api.exceptions import ApplicationError

logger = logging.getLogger("paymentflow.db")

DEFAULT_ATTEMPTS = 3
_TRANSIENT = (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)
_LOCK_TIMEOUT = psycopg.errors.LockNotAvailable  # a lock wait beyond a `lock_timeout`

T = TypeVar("T")


class DatabaseBusy(ApplicationError):
    """Still deadlocking after every retry, or a lock waited for beyond its `lock_timeout`:
    tell the client to come back, never a 500."""

    status_code = 503
    code = "DATABASE_BUSY"
    default_message = "The service is busy; please retry the request."


def _caused_by(exc: BaseException, kinds) -> bool:
    """True if `exc` or an error it was raised from is one of `kinds` (psycopg's under Django's)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, kinds):
            return True
        seen.add(id(exc))
        exc = exc.__cause__
    return False


def is_transient_error(exc: BaseException) -> bool:
    """True for a deadlock victim or a serialization failure."""
    return _caused_by(exc, _TRANSIENT)


def atomic_with_retry(
    func: Callable[..., T] | None = None, *, attempts: int = DEFAULT_ATTEMPTS, using: str = DEFAULT_DB_ALIAS
):
    """Run `func` in `transaction.atomic`, retrying the whole transaction on transient errors.

    Usable bare (`@atomic_with_retry`), with options (`@atomic_with_retry(attempts=5)`), or
    as a wrapper (`atomic_with_retry(fn)()`). After `attempts` failures it raises
    `DatabaseBusy` (503).
    """
    return _retrying(func, attempts=attempts, using=using, outermost_atomic=True)


def autocommit_with_retry(
    func: Callable[..., T] | None = None, *, attempts: int = DEFAULT_ATTEMPTS, using: str = DEFAULT_DB_ALIAS
):
    """`atomic_with_retry` for a function whose only write is ONE statement: as the outermost
    block it opens no transaction, so PostgreSQL commits that statement the moment it ends
    (no BEGIN / COMMIT round trips, and no locks held while Python sends the COMMIT); a
    transient error runs the function again. Inside a caller's transaction it runs in a
    savepoint, like `atomic_with_retry`, so a statement that fails does not doom the
    caller's transaction. A function that writes in two statements must not use this.
    """
    return _retrying(func, attempts=attempts, using=using, outermost_atomic=False)


def _retrying(func, *, attempts: int, using: str, outermost_atomic: bool):
    def decorate(fn: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(fn)
        def wrapper(*args, **kwargs) -> T:
            if connections[using].in_atomic_block:
                with transaction.atomic(using=using):
                    return fn(*args, **kwargs)
            for attempt in range(1, attempts + 1):
                try:
                    if not outermost_atomic:
                        return fn(*args, **kwargs)
                    with transaction.atomic(using=using):
                        return fn(*args, **kwargs)
                except OperationalError as exc:
                    if _caused_by(exc, _LOCK_TIMEOUT):  # waited its limit already: busy, not retried
                        logger.warning("lock wait timed out: %s", exc)
                        raise DatabaseBusy() from exc
                    if not is_transient_error(exc):
                        raise
                    if attempt == attempts:
                        logger.warning("transient database error, giving up after %d attempts: %s", attempts, exc)
                        raise DatabaseBusy() from exc
                    logger.info("transient database error (attempt %d/%d), retrying: %s", attempt, attempts, exc)
                    # A little jitter so two deadlock victims do not collide again in lockstep.
                    time.sleep(random.uniform(0.005, 0.02) * attempt)  # noqa: S311 - not cryptographic
            raise AssertionError("unreachable")  # pragma: no cover

        return wrapper

    if func is not None:
        return decorate(func)
    return decorate
