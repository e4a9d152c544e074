"""gunicorn reads this file from the working directory (`gunicorn paymentflow.wsgi ...`).

The request limits are gunicorn's, stated here so that they are a decision, not an accident:
a request line (method, path with its query string, version) longer than 4094 bytes is
answered `414 URI Too Long` by gunicorn itself, with its own small HTML page (outside the
API's JSON contract), before Django sees it; more than 100 headers, or one over 8190 bytes,
is `431` likewise. The API never needs more: its
longest query string is a few hundred bytes (README, "Production").

It also sets up prometheus_client's multiprocess mode, so that `GET /metrics`, whichever worker
answers it, counts what every worker of this instance did (paymentflow/metrics.py):
- PROMETHEUS_MULTIPROC_DIR: the operator's directory (emptied of an earlier run's files at
  start), or a fresh temporary one, removed at exit. The master sets it before forking,
  so every worker writes its values there.
- A worker that exits is marked dead, so its live gauges stop counting.
Command-line options (--workers, --bind, ...) override this file.
"""

import os
import shutil
import tempfile
from pathlib import Path

limit_request_line = 4094
limit_request_fields = 100
limit_request_field_size = 8190

# The timeout chain (docs/ARCHITECTURE.md, "Operations: timeouts"): a worker busy with one
# request for longer than this is killed, so it must outlast the request's Stripe calls
# (STRIPE_REQUEST_DEADLINE_SECONDS, 12 s; up to twice that, as requests waits the time left
# both to connect and to read) and its database work; the balancer's server timeout (HAProxy,
# nginx in tests: 60 s) outlasts it in turn. paymentflow/tests/test_timeouts.py checks the order.
timeout = 30

_OWN_DIRECTORY = not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if _OWN_DIRECTORY:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="paymentflow-metrics-")


def on_starting(server):
    directory = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):  # values of an earlier run of this instance
        stale.unlink()


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    if _OWN_DIRECTORY:
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
