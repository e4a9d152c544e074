"""docker-compose.yml and its files in deploy/ hold together (no docker engine on CI to run
`docker compose config`, so the YAML is read and checked against what the app expects)."""

import configparser
import re
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
