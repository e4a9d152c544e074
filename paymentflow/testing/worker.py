"""Real background workers for tests: `manage.py run_worker` in child processes, on this
test's database (which must be `transactional_db`, so they see its committed rows).

    with worker_processes(2, tmp_dir=tmp_path, WEBHOOK_LEASE_SECONDS="2") as workers:
        ...
        workers[0].kill()  # SIGKILL, mid-task

The workers have all started polling when the block begins. Each child gets the test
settings with DATABASE_URL pointing at the test database, the run's TEST_RUN_ID (so its
Redis keys are this run's), short poll and tick intervals, and every scheduled job off
unless the test turns it on (`SCHEDULE_<JOB>_SECONDS`). Its output goes to a file under
`tmp_dir`, shown when a wait fails.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from django.conf import settings
from django.db import connection

#: How long a test waits for the workers to do something before it fails (never asserted
#: on as a duration: it only bounds a wait that should end in seconds).
WAIT_LIMIT = 60.0


class Worker:
    def __init__(self, process: subprocess.Popen, log: Path):
        self.process, self.log = process, log

    def kill(self) -> None:
        """SIGKILL: no clean-up, no finishing the task in hand."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # finishes the task in hand, then exits
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def worker_environment(**overrides: str) -> dict[str, str]:
    db = connection.settings_dict
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="paymentflow.settings.test",
        DATABASE_URL=f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
        PAYMENTFLOW_TEST_RUN=settings.TEST_RUN_ID,
        WORKER_POLL_SECONDS="0.1",
        SCHEDULER_TICK_SECONDS="0.2",
        WEBHOOK_ALLOW_PRIVATE_URLS="1",
        PYTHONUNBUFFERED="1",
    )
    for name in settings.SCHEDULED_JOBS:
        env[f"SCHEDULE_{name.upper()}_SECONDS"] = "0"
    env.update(overrides)
    return env


@contextlib.contextmanager
def worker_processes(count: int, *, tmp_dir: Path, **overrides: str) -> Iterator[list[Worker]]:
    env = worker_environment(**overrides)
    manage = Path(settings.BASE_DIR) / "manage.py"
    workers = []
    try:
        for index in range(count):
            workers.append(start_worker(manage, env, tmp_dir / f"worker-{index}.log"))
        for worker in workers:  # all of them polling before the test goes on
            wait_until(lambda w=worker: "Starting worker" in w.output(), workers=workers, what="the workers to start")
        yield workers
    finally:
        for worker in workers:
            worker.stop()


def start_worker(manage: Path, env: dict[str, str], log: Path) -> Worker:
    with log.open("ab") as out:
        process = subprocess.Popen(  # noqa: S603 - our own manage.py
            [sys.executable, str(manage), "run_worker"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    return Worker(process, log)


def wait_until(condition: Callable[[], object], *, workers: list[Worker] = (), what: str) -> object:
    """Poll `condition` until it is truthy; fail (with the workers' output) after WAIT_LIMIT."""
    deadline = time.monotonic() + WAIT_LIMIT
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.05)
    logs = "\n".join(f"--- {w.log.name}\n{w.output()[-4000:]}" for w in workers)
    raise AssertionError(f"gave up waiting for {what}\n{logs}")
