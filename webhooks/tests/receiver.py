"""A merchant's webhook receiver for tests: a small HTTP server on a free 127.0.0.1 port
that records every request (headers, body, when it began and ended) and answers what the
test scripted (`respond(500, 500, 200)`; after the script, 200), optionally slowly."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

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


class DripReceiver:
    """A receiver that reads the request, then sends its answer one byte every `interval`
    seconds (each byte well within a per-read timeout): only a wall-clock deadline on the
    whole attempt stops it. Records how long each connection lasted."""

    ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"

    def __init__(self, interval: float = 0.1):
        self.interval = interval
        self.durations: list[float] = []
        self._socket = socket.create_server(("127.0.0.1", 0))
        self._socket.settimeout(0.05)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._socket.getsockname()[1]}/hooks"

    def _serve(self):
        while not self._stopped.is_set():
            try:
                connection, _ = self._socket.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._drip, args=(connection,), daemon=True).start()

    def _drip(self, connection):
        began = time.monotonic()
        with connection:
            connection.settimeout(5)
            try:
                request = b""
                while b"\r\n\r\n" not in request:
                    request += connection.recv(65536)
                for byte in self.ANSWER:
                    time.sleep(self.interval)
                    connection.sendall(bytes([byte]))
            except OSError:  # the client gave up (its deadline)
                pass
        self.durations.append(time.monotonic() - began)

    def stop(self):
        self._stopped.set()
        self._thread.join()
        self._socket.close()


def tls_files(directory: Path, host: str) -> tuple[Path, Path, Path]:
    """A throwaway CA and a certificate for `host` signed by it (openssl's command line):
    (ca.pem, cert.pem, key.pem). Point SSL_CERT_FILE at ca.pem to trust it."""
    ca_key, ca, key, csr, cert = (directory / n for n in ("ca.key", "ca.pem", "key.pem", "req.csr", "cert.pem"))
    ext = directory / "ext.cnf"
    ext.write_text(f"subjectAltName=DNS:{host}\n")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for command in (
        ["req", "-x509", *ec, "-keyout", ca_key, "-out", ca, "-days", "2", "-subj", "/CN=Test webhook CA"],
        ["req", *ec, "-keyout", key, "-out", csr, "-subj", f"/CN={host}"],
        ["x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", cert, "-days", "2"]
        + ["-extfile", ext],
    ):
        subprocess.run(["openssl", *map(str, command)], check=True, capture_output=True)  # noqa: S603, S607
    return ca, cert, key


def serve_tls(receiver: Receiver, cert: Path, key: Path) -> list[str]:
    """Make `receiver` speak TLS with `cert`; returns the list of server names (SNI) its
    clients asked for."""
    server_names: list[str] = []
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    context.sni_callback = lambda _socket, name, _context: server_names.append(name)
    receiver._server.socket = context.wrap_socket(receiver._server.socket, server_side=True)
    return server_names
