"""The login and register throttle holds under concurrency, across processes, and fails open.

The windows here are an hour long, so that a burst of a few seconds practically never
straddles two windows (a fixed window restarts its count at its end; see throttling.py).
"""

import json
import os
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest
from django.test import override_settings

from paymentflow.testing.concurrency import Post, post_at_once

ROOT = Path(__file__).resolve().parents[2]
LOGIN = "/api/v1/auth/login"
WRONG = {"email": "nobody@example.com", "password": "WrongPass123!"}


@pytest.mark.concurrency
@pytest.mark.django_db(transaction=True)
@override_settings(AUTH_THROTTLE_RATE="5/hour")
def test_concurrent_logins_from_one_address_pass_at_most_the_rate(live_server):
    responses = post_at_once(live_server, [Post(LOGIN, json=WRONG)] * 40)
    statuses = Counter(response.status_code for response in responses)
    assert statuses == {401: 5, 429: 35}, statuses
    refused = next(response for response in responses if response.status_code == 429)
    assert refused.json()["code"] == "THROTTLED" and int(refused.headers["Retry-After"]) > 0


# Runs in another Python process on the same settings (the run's Redis key prefix is inherited
# through the environment): `threads` attempts at once through the throttle itself.
ATTEMPTS = textwrap.dedent(
    """
    import json, sys, threading
    import django
    django.setup()
    from django.conf import settings
    from django.test import RequestFactory
    from paymentflow.api.throttling import AuthRateThrottle

    settings.AUTH_THROTTLE_RATE = "5/hour"
    threads = int(sys.argv[1])
    barrier = threading.Barrier(threads)
    allowed = []

    class Login:
        throttle_scope = "login"

    def attempt():
        request = RequestFactory().post("/api/v1/auth/login", REMOTE_ADDR="203.0.113.9")
        barrier.wait()
        allowed.append(AuthRateThrottle().allow_request(request, Login()))

    workers = [threading.Thread(target=attempt) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    print(json.dumps(sum(allowed)))
    """
)


@pytest.mark.concurrency
def test_two_processes_share_one_count():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "paymentflow.settings.test"}
    processes = [
        subprocess.Popen([sys.executable, "-c", ATTEMPTS, "20"], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    allowed = [json.loads(process.communicate(timeout=120)[0]) for process in processes]
    assert all(process.returncode == 0 for process in processes)
    assert sum(allowed) == 5, allowed


@pytest.mark.django_db
@override_settings(
    AUTH_THROTTLE_RATE="1/hour",
    CACHES={
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",  # nothing listens there
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.25, "SOCKET_TIMEOUT": 0.25, "IGNORE_EXCEPTIONS": True},
        }
    },
)
def test_with_redis_down_logins_are_still_answered(api_client):
    statuses = [api_client.post(LOGIN, WRONG, format="json").status_code for _ in range(3)]
    assert statuses == [401, 401, 401]
