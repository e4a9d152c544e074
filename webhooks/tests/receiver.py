"""A merchant's webhook receiver for tests: a small HTTP server on a free 127.0.0.1 port
that records every request (headers, body, when it began and ended) and answers what the
test scripted (`respond(500, 500, 200)`; after the script, 200), optionally slowly."""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks import Webhook


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    began: float
    ended: float | None = None

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]

    @property
    def event(self) -> dict:
        return json.loads(self.body)

    def verified(self, secret: str) -> dict:
        """The event, after the standardwebhooks package checked its signature (raises if bad)."""
        return Webhook(secret).verify(self.body, self.headers)


@dataclass
class Receiver:
    delay: float = 0.0
    default_status: int = 200
    extra_headers: dict = field(default_factory=dict)
    body: bytes = b"ok"

    def __post_init__(self):
        self.requests: list[Received] = []
        self._script: deque[int] = deque()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                began = time.monotonic()
                length = int(self.headers.get("Content-Length") or 0)
                record = Received(
                    self.path, {k.lower(): v for k, v in self.headers.items()}, self.rfile.read(length), began
                )
                with receiver._lock:
                    receiver.requests.append(record)
                    status = receiver._script.popleft() if receiver._script else receiver.default_status
                if receiver.delay:
                    time.sleep(receiver.delay)
                try:
                    self.send_response(status)
                    for name, value in receiver.extra_headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(receiver.body)))
                    self.end_headers()
                    self.wfile.write(receiver.body)
                except OSError:  # the client went away (timed out, or was killed)
                    pass
                record.ended = time.monotonic()

            def log_message(self, format, *args):  # noqa: A002 - quiet test output
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/hooks"

    def respond(self, *statuses: int) -> None:
        with self._lock:
            self._script.extend(statuses)

    def ids(self) -> list[str]:
        with self._lock:
            return [r.webhook_id for r in self.requests]

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
