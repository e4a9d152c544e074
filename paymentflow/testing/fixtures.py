"""pytest fixtures shared by every app (registered in the root conftest.py via
`pytest_plugins`; the Stripe ones live in `payments.testing.fixtures`).

- `network_guard` (autouse, every test of the suite): any HTTP connection made through
  urllib3 (what the Stripe SDK uses) to a host other than the loopback is refused and
  fails the test: nothing in the tests may reach the internet.
- `live_server`: pytest-django's, but listening with a deep backlog (`LIVE_SERVER_BACKLOG`)
  instead of Django's 10, so that a burst of concurrent connections from the concurrency
  tests is queued, never reset ("Connection reset by peer") on a loaded machine.
- `reconcile`: runs `manage.py reconcile_ledger`, for tests that end by proving the books.
"""

from __future__ import annotations

import os

import pytest
import urllib3.util.connection
from django.core.servers.basehttp import ThreadedWSGIServer
from pytest_django.live_server_helper import LiveServer

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


class NetworkGuard:
    """Refuses urllib3 connections to anything but the loopback and remembers them."""

    def __init__(self, real_create_connection):
        self._real = real_create_connection
        self.blocked: list[tuple] = []

    def create_connection(self, address, *args, **kwargs):
        if address[0] not in LOOPBACK_HOSTS:
            self.blocked.append(tuple(address))
            raise OSError(f"tests may not reach the network: refused a connection to {address[0]}:{address[1]}")
        return self._real(address, *args, **kwargs)


@pytest.fixture(autouse=True)
def network_guard(monkeypatch) -> NetworkGuard:
    """Autouse. A test that checks the guard itself clears `blocked` before it ends."""
    guard = NetworkGuard(urllib3.util.connection.create_connection)
    monkeypatch.setattr(urllib3.util.connection, "create_connection", guard.create_connection)
    yield guard
    if guard.blocked:
        pytest.fail(f"the test tried to reach the network: {guard.blocked}")


#: The live server's listen backlog (the kernel caps it at net.core.somaxconn).
LIVE_SERVER_BACKLOG = 1024


class DeepBacklogWSGIServer(ThreadedWSGIServer):
    request_queue_size = LIVE_SERVER_BACKLOG


@pytest.fixture(scope="session")
def live_server(request) -> LiveServer:
    """Overrides pytest-django's `live_server` (same address option, same helper), with
    `DeepBacklogWSGIServer` as the server thread's `server_class`: pytest-django 4.14 has
    no setting for it, but its `LiveServer(start=False)` lets it be set before starting."""
    addr = request.config.getvalue("liveserver") or os.getenv("DJANGO_LIVE_TEST_SERVER_ADDRESS") or "localhost"
    server = LiveServer(addr, start=False)
    server.thread.server_class = DeepBacklogWSGIServer
    server.start()
    yield server
    server.stop()


@pytest.fixture
def reconcile():
    """reconcile() -> `manage.py reconcile_ledger`'s output; raises CommandError on any drift
    (balances, chains, journals, stock, top-ups)."""
    import io

    from django.core.management import call_command

    def run() -> str:
        out = io.StringIO()
        call_command("reconcile_ledger", "--no-progress", stdout=out, stderr=io.StringIO())
        return out.getvalue()

    return run
