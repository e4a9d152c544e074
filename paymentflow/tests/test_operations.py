"""The operator's side (API.md, "Running it"): manage.py with nothing configured, the `make run`
banner, the README's configuration table, and the production server's request limits."""

import os
import re
import socket
import subprocess
import sys
import time
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def clean_env(**extra) -> dict:
    """This process's environment less everything the tests configured: a fresh clone's shell."""
    prefixes = ("DATABASE_", "REDIS_", "DJANGO_", "STRIPE_", "PYTEST_", "PAYMENTFLOW_")
    return {**{k: v for k, v in os.environ.items() if not k.startswith(prefixes)}, **extra}


def manage(*args, env, timeout=180):
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def readme_commands() -> dict[str, list[str]]:
    """{command: its arguments} for every `manage.py <command> <arguments>` the README shows."""
    commands = {}
    for name, rest in re.findall(r"manage\.py (\w+)([^\n]*)", README):
        commands.setdefault(name, re.split(r"\s#|&&|`|\|", rest)[0].split())
    return commands


class TestManagePy:
    def test_help_lists_the_projects_commands_with_nothing_configured(self):
        result = manage("help", env=clean_env())
        assert result.returncode == 0, result.stderr
        assert "not properly configured" not in result.stdout + result.stderr
        listed = set(re.findall(r"^\s{4}(\w+)$", result.stdout, re.MULTILINE))
        assert set(readme_commands()) <= listed, set(readme_commands()) - listed

    def test_every_command_the_readme_names_runs_from_a_fresh_clone(self, tmp_path):
        # The embedded default is the project's db.sqlite3; this test's copy of it lives in tmp_path.
        env = clean_env(DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}")
        assert manage("migrate", "--noinput", env=env).returncode == 0
        # Not here: collectstatic writes into the checkout, createsuperuser asks questions,
        # run_worker serves until stopped (test_embedded_sqlite runs it on make run's SQLite).
        commands = {"seed_demo": [], **readme_commands()}  # `make run` seeds first
        for skipped in ("migrate", "collectstatic", "createsuperuser", "run_worker"):
            commands.pop(skipped, None)
        assert {"reconcile_ledger", "purge_idempotency_keys", "expire_pending_checkouts", "reconcile_stripe"} <= set(
            commands
        )
        for command, arguments in commands.items():
            result = manage(command, *arguments, env=env)
            assert result.returncode == 0, f"manage.py {command}: {result.stdout}{result.stderr}"

    def test_a_configured_deployment_still_needs_its_key(self):
        env = clean_env(DATABASE_URL="postgres://postgres@127.0.0.1:5432/paymentflow")
        result = manage("check", env=env)
        assert result.returncode != 0 and "DJANGO_SECRET_KEY" in result.stderr


class TestMakeRun:
    def test_the_banner_names_the_address_make_run_serves(self):
        dry_run = subprocess.run(
            ["make", "-n", "run", "HOST=0.0.0.0", "PORT=9123"], cwd=ROOT, capture_output=True, text=True, timeout=60
        )
        assert "seed_demo --base-url http://0.0.0.0:9123" in dry_run.stdout, dry_run.stdout
        assert "runserver 0.0.0.0:9123" in dry_run.stdout

    @pytest.mark.django_db
    def test_seed_demo_prints_the_urls_of_its_base_url(self):
        out = StringIO()
        call_command("seed_demo", base_url="http://127.0.0.1:9123", stdout=out)
        assert "http://127.0.0.1:9123/api/docs/" in out.getvalue()
        assert ":8000" not in out.getvalue()

    @pytest.mark.django_db
    @pytest.mark.parametrize("wildcard", ["0.0.0.0", "[::]"])
    def test_seed_demo_on_every_address_prints_links_a_browser_can_open(self, wildcard):
        out = StringIO()
        call_command("seed_demo", base_url=f"http://{wildcard}:9123", stdout=out)
        assert "http://127.0.0.1:9123/api/docs/" in out.getvalue()
        assert wildcard not in out.getvalue().replace("listening on every address", "")

    @pytest.mark.django_db
    def test_seed_demo_says_the_staff_login_is_for_the_back_office_only(self):
        out = StringIO()
        call_command("seed_demo", stdout=out)
        (staff_line,) = [line for line in out.getvalue().splitlines() if "admin@demo" in line]
        assert "/admin/ only" in staff_line


def test_the_readme_configuration_table_names_every_variable_the_code_reads():
    sources = [*(ROOT / "paymentflow" / "settings").glob("*.py"), ROOT / "manage.py"]
    read = set()
    for source in sources:
        read |= set(re.findall(r'env(?:_\w+)?\(\s*"([A-Z][A-Z0-9_]+)"', source.read_text()))
        read |= set(re.findall(r'env="([A-Z][A-Z0-9_]+)"', source.read_text()))
    read |= set(re.findall(r"^([A-Z]+) \?=", (ROOT / "Makefile").read_text(), re.MULTILINE)) - {"PYTHON"}
    table = set(re.findall(r"^\| `([A-Z0-9_]+)`", README, re.MULTILINE))
    table |= {
        name
        for row in re.findall(r"^\| (`[A-Z0-9_]+`(?:, `[A-Z0-9_]+`)+)", README, re.MULTILINE)
        for name in re.findall(r"`([A-Z0-9_]+)`", row)
    }
    assert read <= table, sorted(read - table)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _raw_get(port: int, target: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        chunks = []
        while chunk := connection.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_gunicorn_refuses_a_request_line_over_4_kb_as_the_readme_says(tmp_path):
    port = _free_port()
    env = clean_env(
        DJANGO_SECRET_KEY="x7#kq!2@p" * 8,
        DJANGO_SECURE_SSL_REDIRECT="0",
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        REDIS_URL="redis://127.0.0.1:6379/0",  # production requires it; /healthz does not use it
    )
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "paymentflow.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "1"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(300):  # until it listens (bounded; not a timing assertion)
            try:
                healthy = _raw_get(port, "/healthz")
                break
            except OSError:
                time.sleep(0.1)
        assert healthy.startswith(b"HTTP/1.1 200"), healthy[:200]
        refused = _raw_get(port, "/api/v1/products?search=" + "x" * 5000)
        assert refused.startswith(b"HTTP/1.1 414"), refused[:200]
        # gunicorn's own little HTML page, outside the JSON contract, as the README says.
        assert b"Content-Type: text/html" in refused and b"statusCode" not in refused, refused[:400]
    finally:
        server.terminate()
        server.wait(timeout=30)
    limits = README.split("- **Request limits**", 1)[1].split("\n- **", 1)[0]
    assert "414" in limits and "4094" in limits and "HTML" in limits and "outside" in limits


def production_recipe() -> list[str]:
    """The lines of the README's production recipe (its first bash block), comments dropped."""
    section = README.split("\n## Production\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.DOTALL).group(1)
    lines = [re.split(r"\s+#", line)[0].strip() for line in block.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def test_the_readme_production_recipe_runs_every_command_on_the_production_settings():
    """Copied as it is, every command of the recipe loads the production settings: manage.py
    alone would load the base settings (collectstatic without the manifest that production's
    storage needs, so the admin and the docs answer 500)."""
    lines = production_recipe()
    exports = [line for line in lines if line.startswith("export ")]
    commands = [line for line in lines if not line.startswith("export ")]
    assert lines[: len(exports)] == exports, "every variable is exported before the first command"
    exported = {name for line in exports for name in re.findall(r"\b([A-Z][A-Z0-9_]*)=", line)}
    assert {
        "DJANGO_SETTINGS_MODULE",
        "DJANGO_SECRET_KEY",
        "DATABASE_URL",
        "REDIS_URL",
        "DJANGO_ALLOWED_HOSTS",
    } <= exported
    ran = {match for command in commands for match in re.findall(r"manage\.py (\w+)|^(gunicorn)", command)}
    assert {name for pair in ran for name in pair if name} >= {"migrate", "collectstatic", "gunicorn", "run_worker"}
    show = (
        "from django.conf import settings as s; print(s.SETTINGS_MODULE, s.DEBUG, s.STORAGES['staticfiles']['BACKEND'])"
    )
    for command in commands:
        if "manage.py" in command:
            probe = f'{sys.executable} manage.py shell -c "{show}"'
        else:  # gunicorn loads paymentflow.wsgi
            probe = f'{sys.executable} -c "import paymentflow.wsgi; {show}"'
        script = "\n".join([*exports, probe])
        result = subprocess.run(["sh", "-c", script], cwd=ROOT, env=clean_env(), capture_output=True, text=True)
        assert result.returncode == 0, f"{command}: {result.stderr}"
        assert result.stdout.splitlines()[-1].split() == [
            "paymentflow.settings.production",
            "False",
            "whitenoise.storage.CompressedManifestStaticFilesStorage",
        ], f"{command}: {result.stdout}"
