"""docker-compose.yml and its files in deploy/ hold together (no docker engine on CI to run
`docker compose config`, so the YAML is read and checked against what the app expects)."""

import configparser
import json
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def services() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]


def mounted(service: dict, target: str) -> Path:
    for volume in service.get("volumes", []):
        source, _, rest = volume.partition(":")
        if rest.split(":")[0] == target:
            return ROOT / source
    raise AssertionError(f"nothing mounted at {target}")


def test_every_file_a_service_mounts_is_in_the_repository(services):
    for name, service in services.items():
        for volume in service.get("volumes", []):
            if volume.startswith("./"):
                assert (ROOT / volume.split(":")[0]).is_file(), f"{name}: {volume}"


def test_the_app_scales_behind_the_balancer_and_reaches_postgresql_through_pgbouncer(services):
    web = services["web"]
    assert "ports" not in web, "a fixed host port would stop `--scale web=3`"
    assert "migrate" not in " ".join(web["command"]), "replicas must not race to migrate"
    assert web["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    assert "/readyz" in " ".join(web["healthcheck"]["test"])
    url = urlsplit(web["environment"]["DATABASE_URL"])
    assert url.hostname == "pgbouncer" and web["environment"]["DATABASE_POOLER"] == "transaction"
    assert web["environment"]["NUM_PROXIES"] == "1"
    assert services["balancer"]["ports"] == ["8000:8000"]
    assert services["migrate"]["environment"]["DATABASE_URL"].startswith("postgres://paymentflow:paymentflow@db:")
    assert "worker" in services


def test_the_worker_runs_by_default_and_is_scraped_on_its_own_port(services):
    worker = services["worker"]
    assert worker["command"] == ["python", "manage.py", "run_worker"] and "profiles" not in worker
    assert worker["environment"]["WORKER_METRICS_PORT"] == "9100" and "ports" not in worker
    assert worker["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}


def test_haproxy_checks_readyz_on_every_replica(services):
    config = mounted(services["balancer"], "/usr/local/etc/haproxy/haproxy.cfg").read_text()
    assert re.search(r"http-check send meth GET uri /readyz .*hdr Host localhost", config)
    assert "localhost" in services["web"]["environment"]["DJANGO_ALLOWED_HOSTS"].split(",")
    assert re.search(r"server-template web \d+ web:8000 check resolvers docker", config)
    assert "option forwardfor" in config and "retry-on conn-failure" in config


def test_pgbouncer_pools_transactions_for_the_apps_database_and_user(services):
    ini = configparser.ConfigParser()
    ini.read_string(mounted(services["pgbouncer"], "/etc/pgbouncer/pgbouncer.ini").read_text())
    url = urlsplit(services["web"]["environment"]["DATABASE_URL"])
    assert ini["pgbouncer"]["pool_mode"] == "transaction"
    assert int(ini["pgbouncer"]["listen_port"]) == url.port
    assert url.path.lstrip("/") in ini["databases"]
    assert "host=db " in ini["databases"][url.path.lstrip("/")]
    assert "ignore_startup_parameters" not in ini["pgbouncer"]
    userlist = mounted(services["pgbouncer"], "/etc/pgbouncer/userlist.txt").read_text()
    assert f'"{url.username}" "{url.password}"' in userlist


def haproxy_binary() -> str:
    """HAProxy is a test dependency (`.ci/run` installs Debian's package): never skipped."""
    found = shutil.which("haproxy") or ("/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None)
    assert found, "haproxy is not installed (apt-get install haproxy; .ci/run does it)"
    return found


def test_haproxy_accepts_the_config(services):
    config = mounted(services["balancer"], "/usr/local/etc/haproxy/haproxy.cfg")
    result = subprocess.run([haproxy_binary(), "-c", "-f", str(config)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr


class _Replica(BaseHTTPRequestHandler):
    """A web replica that is up (/healthz 200) and ready or not (/readyz) as the test says."""

    ready = False

    def do_GET(self):  # noqa: N802 - http.server's name
        if self.path == "/healthz":
            status, body = 200, b'{"status":"ok"}'
        elif self.path == "/readyz":
            status, body = (200, b'{"status":"ok"}') if _Replica.ready else (503, b'{"status":"unavailable"}')
        else:
            status, body = 200, b'{"from":"replica"}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):  # noqa: A002 - quiet test output
        pass


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _get(url: str):
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - a local URL
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()
    except OSError:  # HAProxy not listening yet
        return None, {}, b""


def _eventually(check, seconds: float = 15.0):
    deadline = time.monotonic() + seconds
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.1)


def test_with_no_replica_ready_haproxy_answers_503_in_the_error_envelope_and_healthz_still_answers(services, tmp_path):
    """The compose config, run by a real HAProxy against a local replica that is up but not
    ready: the API gets a JSON 503 (code SERVICE_UNAVAILABLE), never HAProxy's HTML page;
    /healthz still reaches the replica; once it is ready, requests reach it."""
    _Replica.ready = False
    replica = ThreadingHTTPServer(("127.0.0.1", 0), _Replica)
    threading.Thread(target=replica.serve_forever, args=(0.05,), daemon=True).start()
    port = _free_port()
    config = mounted(services["balancer"], "/usr/local/etc/haproxy/haproxy.cfg").read_text()
    template = "server-template web 10 web:8000 check resolvers docker init-addr none"
    assert template in config and "bind :8000" in config
    config = (
        config.replace("bind :8000", f"bind 127.0.0.1:{port}")
        .replace(template, f"server web1 127.0.0.1:{replica.server_address[1]} check")
        .replace("inter 2s", "inter 100ms")
    )
    (tmp_path / "haproxy.cfg").write_text(config)
    balancer = subprocess.Popen(  # noqa: S603
        [haproxy_binary(), "-db", "-f", str(tmp_path / "haproxy.cfg")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        answer = _eventually(lambda: (r := _get(f"{base}/api/v1/products?page=2"))[0] == 503 and r)
        assert answer, "no 503 from HAProxy with no replica ready"
        status, headers, body = answer
        assert headers["content-type"] == "application/json" and headers["retry-after"] == "5"
        envelope = json.loads(body)
        assert set(envelope) == {"statusCode", "error", "code", "message", "details", "timestamp", "path", "method"}
        assert (envelope["statusCode"], envelope["error"], envelope["code"]) == (
            503,
            "Service Unavailable",
            "SERVICE_UNAVAILABLE",
        )
        assert (envelope["path"], envelope["method"], envelope["details"]) == ("/api/v1/products", "GET", {})
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", envelope["timestamp"])

        assert _eventually(
            lambda: _get(f"{base}/healthz")[::2] == (200, b'{"status":"ok"}')
        )  # the replica's own answer

        _Replica.ready = True
        assert _eventually(lambda: _get(f"{base}/api/v1/products")[::2] == (200, b'{"from":"replica"}'))
    finally:
        balancer.terminate()
        balancer.wait(timeout=10)
        replica.shutdown()
        replica.server_close()


def test_every_production_process_has_redis(services):
    """Production settings refuse to load without REDIS_URL: the image's build-time
    collectstatic and every service running the app's image must set it."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "DJANGO_SETTINGS_MODULE=paymentflow.settings.production" in dockerfile
    collectstatic = next(line for line in dockerfile.splitlines() if "collectstatic" in line and "RUN" in line)
    assert "REDIS_URL=" in collectstatic and "DJANGO_SECRET_KEY=" in collectstatic
    for name, service in services.items():
        if service.get("build"):
            assert service["environment"].get("REDIS_URL", "").startswith("redis://"), name
