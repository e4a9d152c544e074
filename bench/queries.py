"""Queries and in-process time per request, for each request the benchmark sends.

    python -m bench.queries [--requests 200] [--profile purchase] [--sql purchase] [--db-name NAME]

Runs Django in this process (production settings, a fresh `paymentflow_bench_queries`
database or `--db-name`, Redis database 14) and sends requests through Django's test client: no HTTP,
no gunicorn, no other clients. So the numbers are the application's own cost per request
(framework + our code + the database round trips), the floor under what the benchmark
measures. Three times per request: wall clock (`ms`), the CPU this Python process spent
(`py cpu`) and the CPU the PostgreSQL backend serving it spent (`pg cpu`, read from
/proc), and `x me`, the CPU (both columns) as a multiple of `GET /auth/me`'s. The request
types run interleaved, 10 at a time, so that a change in the machine's load weighs on
all of them alike; the CPU columns still rise a little on a busy machine, `x me` hardly.

`--profile NAME` prints cProfile's top functions (in CPU time) for one request type; `--sql NAME`
prints the SQL statements of one request.
"""

import argparse
import cProfile
import os
import pstats
import secrets
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DBNAME = "paymentflow_bench_queries"
BATCH = 10
ENV = {
    "DJANGO_SETTINGS_MODULE": "paymentflow.settings.production",
    "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
    "DJANGO_SECURE_SSL_REDIRECT": "0",
    "DJANGO_ALLOWED_HOSTS": "testserver,127.0.0.1",
    "REDIS_URL": "redis://127.0.0.1:6379/14",
    "AUTH_THROTTLE_RATE": "100000/minute",
    "LOG_LEVEL": "WARNING",
}


def prepare_database(name: str) -> None:
    import psycopg
    import redis
    from psycopg import sql

    ENV["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{name}"
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    redis.Redis.from_url(ENV["REDIS_URL"], socket_timeout=5).flushdb()
    env = {**os.environ, **ENV}
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=env, check=True, stdout=-3)


def _backend_cpu_seconds(pid: int) -> float:
    """utime + stime of a local process (the PostgreSQL backend), from /proc; 0 if unreadable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.queries", description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=200, help="timed requests per type (default 200)")
    p.add_argument("--profile", help="cProfile one request type (e.g. purchase)")
    p.add_argument("--sort", default="cumulative", help="cProfile order: cumulative (default), tottime, ...")
    p.add_argument("--top", type=int, default=35, help="cProfile lines to print (default 35)")
    p.add_argument("--sql", help="print the SQL of one request type (e.g. purchase)")
    p.add_argument("--db-name", default=DBNAME, help=f"the database, dropped and created (default {DBNAME})")
    args = p.parse_args(argv)

    prepare_database(args.db_name)
    os.environ.update(ENV)
    import django

    django.setup()
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client()

    def post(path, body, token=None, status=200):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        resp = client.post(f"/api/v1{path}", body, content_type="application/json", headers=headers)
        assert resp.status_code == status, (path, resp.status_code, resp.content[:300])
        return resp.json()

    password = "Tq7!vLm2#Rw9zPk"

    def register(email: str, role: str) -> dict:
        return post("/auth/register", {"email": email, "password": password, "role": role}, status=201)

    buyer = register("q-buyer@example.com", "USER")
    merchant = register("q-merchant@example.com", "MERCHANT")
    bt, mt = buyer["accessToken"], merchant["accessToken"]
    for _ in range(3):
        post("/wallet/deposit", {"amount": "10000"}, bt)
    products = [
        post("/products", {"name": f"q{i}", "price": "1.00", "availableUnits": 1_000_000}, mt, 201)["id"]
        for i in range(20)
    ]
    auth = {"Authorization": f"Bearer {bt}"}
    n = {"i": 0}

    def purchase():
        n["i"] += 1
        body = {"productId": products[n["i"] % 20], "paymentMethod": "WALLET", "quantity": 1}
        return client.post("/api/v1/orders", body, content_type="application/json", headers=auth), 201

    requests = {
        "me": lambda: (client.get("/api/v1/auth/me", headers=auth), 200),
        "catalog-read": lambda: (client.get("/api/v1/products?page=1&limit=20"), 200),
        "wallet-deposit": lambda: (
            client.post("/api/v1/wallet/deposit", {"amount": "1.00"}, content_type="application/json", headers=auth),
            200,
        ),
        "wallet-withdraw": lambda: (
            client.post("/api/v1/wallet/withdraw", {"amount": "1.00"}, content_type="application/json", headers=auth),
            200,
        ),
        "wallet-transactions": lambda: (client.get("/api/v1/wallet/transactions?page=1&limit=20", headers=auth), 200),
        "purchase": purchase,
    }

    def backend_pid() -> int:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            return cursor.fetchone()[0]

    statements = {}
    for name, send in requests.items():
        for _ in range(20):  # warm caches, connections, imports
            resp, status = send()
            assert resp.status_code == status, (name, resp.status_code, resp.content[:300])
        with CaptureQueriesContext(connection) as captured:
            send()
        statements[name] = list(captured.captured_queries)  # the next request resets the log

    # Interleaved: every request type runs BATCH requests in turn, round after round, so
    # that a change in the machine's load during the run weighs on all of them alike.
    totals = {name: [0.0, 0.0, 0.0] for name in requests}  # wall, py cpu, pg cpu (seconds)
    pid = backend_pid()  # persistent connection (CONN_MAX_AGE): the same backend throughout
    for _ in range(max(1, args.requests // BATCH)):
        for name, send in requests.items():
            pg_start, cpu_start, start = _backend_cpu_seconds(pid), time.process_time(), time.perf_counter()
            for _ in range(BATCH):
                send()
            total = totals[name]
            total[0] += time.perf_counter() - start
            total[1] += time.process_time() - cpu_start
            total[2] += _backend_cpu_seconds(pid) - pg_start
    count = max(1, args.requests // BATCH) * BATCH
    same = "" if backend_pid() == pid else "  (the connection changed: pg cpu incomplete)"

    print(
        f"{'request':<20} {'queries':>7} {'ms':>7} {'py cpu':>7} {'pg cpu':>7} {'x me':>5}"
        f"   (ms per request; in-process, single client, {count} requests each, interleaved){same}"
    )
    me_cpu = totals["me"][1] + totals["me"][2]
    for name, (wall, py_cpu, pg_cpu) in totals.items():
        ms = [value * 1000 / count for value in (wall, py_cpu, pg_cpu)]
        ratio = (py_cpu + pg_cpu) / me_cpu if me_cpu else 0.0
        print(f"{name:<20} {len(statements[name]):>7} {ms[0]:>7.2f} {ms[1]:>7.2f} {ms[2]:>7.2f} {ratio:>5.2f}")
    if args.sql:
        print(f"\nThe statements of one {args.sql} request:")
        for q in statements[args.sql]:
            print(f"    {q['time']}s  {' '.join(q['sql'].split())[:220]}")
    if args.profile:
        send = requests[args.profile]
        # CPU time, not wall time: a function waiting on PostgreSQL costs this process nothing.
        profiler = cProfile.Profile(time.process_time)
        profiler.enable()
        for _ in range(args.requests):
            send()
        profiler.disable()
        stats = pstats.Stats(profiler).sort_stats(args.sort)
        stats.print_stats(args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
