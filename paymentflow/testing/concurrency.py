"""Real concurrency in tests, shared by every `-m concurrency` test: requests to the live
server, or calls of our services, released together by a `threading.Barrier`.

- `post_at_once(live_server, posts, workers=...)`: each thread opens its own HTTP
  connection (a keep-alive `GET /healthz`), waits at the barrier, sends its POST and closes
  the connection, so the burst at the barrier is requests on open connections, not
  connection attempts piling up in the server's listen backlog.
- `run_at_once(calls)`: each call in its own thread, released together; each thread
  closes its database connections when done.

Only bounded waits, never timed assertions: `BARRIER_TIMEOUT` is generous (a loaded CI
machine may take many seconds to start 25 threads), and a thread that fails before the
barrier aborts it, so the others fail at once instead of waiting it out.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import requests
from django.db import connections

BARRIER_TIMEOUT = 60  # seconds: how long a thread waits for the others; never a speed limit
REQUEST_TIMEOUT = 120  # seconds: a request that takes longer is stuck, not slow

T = TypeVar("T")


@dataclass(frozen=True)
class Post:
    """One POST to the live server (or to `server`, another base URL: the scale-out test
    splits a burst over app instances): a JSON body or raw bytes (`data`), and headers."""

    path: str
    json: Any = None
    data: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    server: str | None = None


def post_at_once(live_server, posts: Sequence[Post], *, workers: int | None = None) -> list[requests.Response]:
    """POST every `Post`, `workers` at a time (default: all at once), each wave released
    together by a barrier; the responses in the order of `posts`."""
    workers = min(workers or len(posts), len(posts))
    assert len(posts) % workers == 0, "every wave must fill the barrier"
    barrier = threading.Barrier(workers, timeout=BARRIER_TIMEOUT)

    def send(post: Post) -> requests.Response:
        server = post.server or live_server.url
        with requests.Session() as session:
            try:  # connect now, so that the barrier releases requests, not connection attempts
                session.get(f"{server}/healthz", timeout=REQUEST_TIMEOUT).raise_for_status()
            except BaseException:
                barrier.abort()
                raise
            barrier.wait()
            return session.post(
                f"{server}{post.path}",
                json=post.json,
                data=post.data,
                headers=dict(post.headers),
                timeout=REQUEST_TIMEOUT,
            )

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(send, posts))


def run_at_once(calls: Sequence[Callable[[], T]]) -> list[T]:
    """Run every call in its own thread, all released together; their results in order (the
    first exception is raised). Each thread closes its database connections when done."""
    barrier = threading.Barrier(len(calls), timeout=BARRIER_TIMEOUT)

    def run(call: Callable[[], T]) -> T:
        try:
            barrier.wait()
            return call()
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(run, calls))
