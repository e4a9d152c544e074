"""The loop of the expiry sweeps (`expire_pending_orders`, `expire_pending_topups`): settle
each candidate on its own, count the outcomes, and fail the command naming the ones that
could not be settled (the next run retries them) without stopping at the first."""

import logging
from collections import Counter
from collections.abc import Callable, Iterable

from django.core.management.base import BaseCommand, CommandError

from paymentflow.api.exceptions import ApplicationError

logger = logging.getLogger("paymentflow.sweeps")


def run_sweep(
    command: BaseCommand,
    *,
    ids: Iterable,
    settle: Callable,
    noun: str,
    also_failing: tuple[type[Exception], ...] = (),
) -> None:
    """`settle(id)` returns the object with its new `status`; an ApplicationError (Stripe
    unreachable, ...) or one of `also_failing` counts that id as failed."""
    ids = list(ids)
    outcomes: Counter[str] = Counter()
    failed = []
    for object_id in ids:
        try:
            outcomes[settle(object_id).status] += 1
        except ApplicationError as exc:
            logger.warning("Could not expire %s %s: %s (%s)", noun, object_id, exc.code, exc.message)
            failed.append(str(object_id))
        except also_failing as exc:
            logger.error("Could not expire %s %s: %s", noun, object_id, exc)
            failed.append(str(object_id))
    summary = ", ".join(f"{status}: {count}" for status, count in sorted(outcomes.items())) or "nothing to do"
    command.stdout.write(f"Expired pending {noun}s ({len(ids)} found): {summary}")
    if failed:
        raise CommandError(f"{len(failed)} {noun}(s) could not be expired: {', '.join(failed)}")
