"""Several app instances on one machine, as in production: gunicorn instances, a real
PgBouncer in transaction pooling mode in front of PostgreSQL, and an nginx balancer.

Used by the scale-out test (tests/test_scale_out.py) and the bench's multi-instance mode
(bench/run.py --instances / --pgbouncer). Each process runs from its own temporary
directory on a free 127.0.0.1 port, in its own process group; `stop()` ends the group and
removes the directory. Nothing here imports Django: the bench runs outside it.

    bouncer = PgBouncer(databases=["mydb"]).start()   # PgBouncerUnavailable if it cannot
    web = [Gunicorn(env={..., "DATABASE_URL": bouncer.url("mydb"), "DATABASE_POOLER": "transaction"}).start()
           for _ in range(2)]
    balancer = Nginx(upstreams=[w.address for w in web]).start()
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
START_TIMEOUT = 60  # seconds: a process that is not answering by then failed to start
#: Where Debian puts the binaries (/usr/sbin is not on every PATH).
SYSTEM_BINARIES = ("/usr/sbin", "/usr/local/sbin", "/usr/bin")


class ProcessUnavailable(RuntimeError):
    """A helper process could not be found or did not start; the message says why."""


class PgBouncerUnavailable(ProcessUnavailable):
    pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_binary(name: str) -> str | None:
    return shutil.which(name) or next((str(Path(d) / name) for d in SYSTEM_BINARIES if (Path(d) / name).exists()), None)


def process_cpu_ticks(pid: int) -> int | None:
    """CPU the process has used (user + system, in clock ticks); None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[11]) + int(fields[12])


def children(ppid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == ppid:
                    found.append(int(entry.name))
    return found


class _Process:
    """One child process in its own group and temporary directory."""

    name = "process"

    def __init__(self):
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix=f"paymentflow-{self.name}-"))
        self.log_path = self.directory / f"{self.name}.log"
        self.proc: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def _spawn(self, command: list[str], *, env: dict | None = None, cwd: Path | None = None) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(  # noqa: S603 - a command line we built
                command,
                cwd=cwd or self.directory,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own group: stop() ends it and its children only
            )

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def _wait(self, ready, what: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise self._unavailable(f"{what} exited with {self.proc.returncode}:\n{self.log_tail()}")
            if ready():
                return
            time.sleep(0.2)
        raise self._unavailable(f"{what} did not answer within {START_TIMEOUT} s:\n{self.log_tail()}")

    def _unavailable(self, message: str) -> ProcessUnavailable:
        return ProcessUnavailable(message)

    def pids(self) -> list[int]:
        """The process and its children (gunicorn's or nginx's workers)."""
        if self.proc is None or self.proc.poll() is not None:
            return []
        return [self.proc.pid, *children(self.proc.pid)]

    def stop(self, *, keep_directory: bool = False) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        if not keep_directory:
            shutil.rmtree(self.directory, ignore_errors=True)


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - our own 127.0.0.1 server
            return response.status == 200
    except (OSError, urllib.error.URLError):
        return False


class PgBouncer(_Process):
    """Debian's pgbouncer in transaction pooling mode in front of the local PostgreSQL.

    Strict on purpose: no `ignore_startup_parameters`, so a client that sends a startup
    option (`-c ...`) is refused, as a production PgBouncer would refuse it. `trust` auth
    (the local PostgreSQL trusts 127.0.0.1 too). The admin console (database `pgbouncer`)
    answers `SHOW STATS` / `SHOW POOLS` for `admin_query`.
    """

    name = "pgbouncer"

    def __init__(
        self,
        *,
        databases: list[str],
        pool_size: int = 10,
        max_client_conn: int = 500,
        upstream_host: str = "127.0.0.1",
        upstream_port: int = 5432,
        user: str = "postgres",
    ):
        super().__init__()
        self.databases, self.pool_size, self.user = databases, pool_size, user
        self.max_client_conn = max_client_conn
        self.upstream = (upstream_host, upstream_port)

    def _unavailable(self, message: str) -> ProcessUnavailable:
        return PgBouncerUnavailable(message)

    def config(self) -> str:
        host, port = self.upstream
        lines = ["[databases]"]
        lines += [f"{db} = host={host} port={port} dbname={db} user={self.user}" for db in self.databases]
        lines += [
            "[pgbouncer]",
            "listen_addr = 127.0.0.1",
            f"listen_port = {self.port}",
            "unix_socket_dir =",
            "auth_type = trust",
            f"auth_file = {self.directory / 'userlist.txt'}",
            f"admin_users = {self.user}",
            "pool_mode = transaction",
            f"default_pool_size = {self.pool_size}",
            f"max_client_conn = {self.max_client_conn}",
            f"logfile = {self.log_path}",
            f"pidfile = {self.directory / 'pgbouncer.pid'}",
        ]
        if os.geteuid() == 0:  # PgBouncer refuses to run as root: it switches to this user
            lines.append(f"user = {self._unprivileged_user()}")
        return "\n".join(lines) + "\n"

    @staticmethod
    def _unprivileged_user() -> str:
        for name in ("postgres", "nobody"):
            with contextlib.suppress(KeyError):
                pwd.getpwnam(name)
                return name
        raise PgBouncerUnavailable("running as root, and neither a `postgres` nor a `nobody` user exists")

    def start(self) -> PgBouncer:
        binary = find_binary("pgbouncer")
        if binary is None:
            raise PgBouncerUnavailable(
                "pgbouncer is not installed (Debian: `apt-get install -y pgbouncer`; .ci/run installs it)"
            )
        (self.directory / "userlist.txt").write_text(f'"{self.user}" ""\n')
        (self.directory / "pgbouncer.ini").write_text(self.config())
        self.log_path.touch()  # its logfile, written by the user it switches to
        if os.geteuid() == 0:
            account = pwd.getpwnam(self._unprivileged_user())
            for path in [self.directory, *self.directory.iterdir()]:
                os.chown(path, account.pw_uid, account.pw_gid)
        self._spawn([binary, str(self.directory / "pgbouncer.ini")])
        self._wait(self._answers, "pgbouncer")
        return self

    def _answers(self) -> bool:
        try:
            self.admin_query("SHOW VERSION")
        except Exception:
            return False
        return True

    def url(self, database: str) -> str:
        return f"postgres://{self.user}@127.0.0.1:{self.port}/{database}"

    def admin_query(self, command: str) -> list[dict]:
        """A command of PgBouncer's admin console (`SHOW STATS`, `SHOW POOLS`, ...) as dicts."""
        import psycopg
        from psycopg.rows import dict_row

        # The console speaks the simple query protocol only, and in autocommit.
        with psycopg.connect(
            host="127.0.0.1", port=self.port, user=self.user, dbname="pgbouncer", autocommit=True, connect_timeout=2
        ) as conn:
            cursor = psycopg.ClientCursor(conn, row_factory=dict_row)
            cursor.execute(command)
            return cursor.fetchall()


class Gunicorn(_Process):
    """`gunicorn paymentflow.wsgi` from the project root (so gunicorn.conf.py applies), with
    its own PROMETHEUS_MULTIPROC_DIR (`metrics_directory`), ready once /readyz says 200."""

    name = "gunicorn"

    def __init__(self, *, env: dict, workers: int = 2, threads: int = 2, worker_class: str = "gthread"):
        super().__init__()
        self.workers, self.threads, self.worker_class = workers, threads, worker_class
        self.metrics_directory = self.directory / "metrics"
        self.env = {**env, "PROMETHEUS_MULTIPROC_DIR": str(self.metrics_directory)}

    def command(self) -> list[str]:
        command = [sys.executable, "-m", "gunicorn", "paymentflow.wsgi", "--bind", self.address]
        command += ["--workers", str(self.workers), "--worker-class", self.worker_class]
        command += ["--graceful-timeout", "5"]  # the worker timeout is gunicorn.conf.py's
        if self.worker_class == "gthread":
            command += ["--threads", str(self.threads), "--keep-alive", "5"]
        return command

    def start(self) -> Gunicorn:
        self.metrics_directory.mkdir()
        self._spawn(self.command(), env=self.env, cwd=ROOT)
        self._wait(lambda: _http_ok(f"{self.url}/readyz"), f"gunicorn on {self.address}")
        return self

    def worker_pids(self) -> list[int]:
        return children(self.proc.pid) if self.proc and self.proc.poll() is None else []


class Nginx(_Process):
    """nginx (Debian's nginx-light) balancing round-robin over `upstreams` (host:port), with
    keep-alive connections to them, adding X-Forwarded-For (the app runs with NUM_PROXIES=1)."""

    name = "nginx"

    def __init__(self, *, upstreams: list[str]):
        super().__init__()
        self.upstreams = upstreams

    def config(self) -> str:
        d = self.directory
        servers = "\n".join(f"        server {u};" for u in self.upstreams)
        temp = "\n".join(
            f"    {kind}_temp_path {d / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        return f"""worker_processes 1;
pid {d / "nginx.pid"};
error_log {d / "error.log"} warn;
events {{ worker_connections 2048; }}
http {{
    access_log off;
{temp}
    upstream app {{
{servers}
        keepalive 64;
    }}
    server {{
        listen {self.address} backlog=1024;
        location / {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            # Never send a request that reached one instance to another: a POST moves money.
            proxy_next_upstream off;
            proxy_buffering off;
            # Above gunicorn's worker timeout (the timeout chain: docs/ARCHITECTURE.md).
            proxy_read_timeout 60s;
        }}
    }}
}}
"""

    def start(self) -> Nginx:
        binary = find_binary("nginx")
        if binary is None:
            raise ProcessUnavailable("nginx is not installed (Debian: `apt-get install -y nginx-light`)")
        (self.directory / "nginx.conf").write_text(self.config())
        command = [binary, "-p", str(self.directory), "-c", str(self.directory / "nginx.conf")]
        command += ["-e", str(self.directory / "error.log"), "-g", "daemon off;"]
        self._spawn(command)
        self._wait(lambda: _http_ok(f"{self.url}/healthz"), f"nginx on {self.address}")
        return self
