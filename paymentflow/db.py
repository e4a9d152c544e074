"""Database helpers shared by every app: one atomic block that survives transient failures,
and a bounded wait for row locks.

PostgreSQL may abort a transaction that did nothing wrong: a deadlock victim
(`40P01 deadlock_detected`) or a serialization failure (`40001`). The right answer is to
run the whole transaction again, a bounded number of times, never to show the client a 500.

    from paymentflow.db import atomic_with_retry, set_lock_timeout

    @atomic_with_retry
    def wallet_withdraw(*, wallet, amount): ...

    result = atomic_with_retry(lambda: do_things(), attempts=5)()

A retry only makes sense for the *outermost* transaction: inside an outer
`transaction.atomic` the failed transaction is already doomed, so a nested call simply
runs in a savepoint and lets the error reach the outermost retrying block.

Nothing here sets anything on the connection's session: behind PgBouncer in transaction
pooling a session setting would stay on whichever server connection the pooler gave that
transaction. A setting a transaction needs is made for that transaction (`SET LOCAL`).
"""

import functools
import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

import psycopg.errors
from django.db import DEFAULT_DB_ALIAS, OperationalError, connections, transaction
from django.db.transaction import TransactionManagementError

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
    `DatabaseBusy` (503); a lock waited for beyond a `lock_timeout` raises it at once.
    """

    def decorate(fn: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(fn)
        def wrapper(*args, **kwargs) -> T:
            if connections[using].in_atomic_block:
                with transaction.atomic(using=using):
                    return fn(*args, **kwargs)
            for attempt in range(1, attempts + 1):
                try:
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


def set_lock_timeout(milliseconds: int, *, using: str = DEFAULT_DB_ALIAS) -> None:
    """Until the current transaction ends, a wait for a row lock longer than this fails with
    `LockNotAvailable`, which `atomic_with_retry` answers 503 DATABASE_BUSY: requests do not
    pile up behind a stuck lock holder. `SET LOCAL` (as `set_config(..., true)`, which takes
    a parameter): the connection's own setting is untouched. No-op on SQLite, whose one
    database lock has its own `timeout` (settings)."""
    connection = connections[using]
    if connection.vendor != "postgresql":
        return
    if not connection.in_atomic_block:
        raise TransactionManagementError("set_lock_timeout() sets the current transaction's timeout: open one first.")
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('lock_timeout', %s, true)", [f"{int(milliseconds)}ms"])


#: psycopg keeps the conversion of a query (its `%s` placeholders parsed into `$n`) in a
#: process-wide LRU cache only for queries of at most 50 parameters and 4 KiB (its
#: defaults, `psycopg._queries`, to keep ORM-built bulk INSERTs of varying sizes out of
#: it: psycopg discussion #628). The wallet postings' one write statement (journal entry,
#: legs, balances, and a sale's order row) has more than 50 and was parsed again on every
#: purchase, deposit and withdrawal: about 0.8 ms of CPU each (docs/PERFORMANCE.md).
#: Our statements come in a handful of fixed shapes, so a larger limit keeps them cached
#: without letting the cache churn. psycopg is pinned (requirements.txt); the test
#: `test_every_statement_of_a_purchase_is_converted_once_per_process` fails if a release
#: moves these names.
PSYCOPG_CACHED_STATEMENT_PARAMS = 256
PSYCOPG_CACHED_STATEMENT_LENGTH = 16 * 1024


def cache_long_statement_conversions() -> None:
    """Raise psycopg's limits for caching a query's conversion (called once, at start-up)."""
    from psycopg import _queries

    _queries.MAX_CACHED_STATEMENT_PARAMS = max(_queries.MAX_CACHED_STATEMENT_PARAMS, PSYCOPG_CACHED_STATEMENT_PARAMS)
    _queries.MAX_CACHED_STATEMENT_LENGTH = max(_queries.MAX_CACHED_STATEMENT_LENGTH, PSYCOPG_CACHED_STATEMENT_LENGTH)
