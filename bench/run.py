"""Payment Flow load benchmark: `make bench` (or `python -m bench.run --help`).

By default it starts its own server: a fresh PostgreSQL database (`paymentflow_bench`,
dropped and recreated), `manage.py migrate` and `gunicorn paymentflow.wsgi` with the
production settings on a free port of 127.0.0.1, its Redis keys under its own prefix
cleared. `--instances N` starts N gunicorn instances behind an nginx balancer, and
`--pgbouncer` puts a PgBouncer in transaction mode between them and PostgreSQL. With
`--target URL` it drives a server that is already running (on this machine only) and
checks the invariants through the API alone.

Everything it needs it creates through the API (buyers, merchants, deposits, products),
then runs each named scenario with N concurrent clients for T seconds after a short
warm-up, prints throughput, latency percentiles and outcome counts, checks the invariants
(no oversell, no negative balance, balances equal to what the bench itself moved,
`manage.py reconcile_ledger` clean, zero real errors) and exits 1 if any fails. The ratio
targets (issues 7 and 13) are reported, not enforced. See docs/PERFORMANCE.md.
"""

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import random
import secrets
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python bench/run.py` as well as `python -m bench.run`
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from bench.stats import (  # noqa: E402
    TRANSPORT_STATUS,
    Check,
    Expectation,
    Sample,
    ScenarioSummary,
    balance_problems,
    checks_passed,
    evaluate_targets,
    format_checks,
    format_table,
    format_targets,
    median_round,
    stock_problems,
    summarize,
)
from paymentflow.testing.cluster import (  # noqa: E402
    Gunicorn,
    Nginx,
    PgBouncer,
    ProcessUnavailable,
    process_cpu_ticks,
)

API = "/api/v1"
RESULTS_DIR = ROOT / "bench" / "results"
DOCS_CHART = ROOT / "docs" / "bench-latency.png"
PASSWORD = "Tq7!vLm2#Rw9zPk"
CENT = Decimal("0.01")
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}
MAX_REQUESTS_PER_CLIENT = 1_000_000  # a hard bound on top of the time bound
REQUEST_TIMEOUT = 10.0
MAX_UNITS = 1_000_000  # catalog.models.MAX_UNITS: stock large enough that refusals are rare

PURCHASE_REFUSALS = frozenset({(400, "PRODUCT_OUT_OF_STOCK"), (400, "INSUFFICIENT_FUNDS")})
SCENARIOS: dict[str, Expectation] = {
    "purchase-spread": Expectation(frozenset({201}), PURCHASE_REFUSALS),
    "purchase-hot": Expectation(frozenset({201}), PURCHASE_REFUSALS),
    "wallet-mixed": Expectation(frozenset({200}), frozenset({(400, "INSUFFICIENT_FUNDS")})),
    "catalog-read": Expectation(frozenset({200})),
    "me": Expectation(frozenset({200})),
}
PURCHASES = ("purchase-spread", "purchase-hot")


class BenchError(Exception):
    """A setup failure that stops the bench with a clear message (exit 2)."""


# --- The server the bench starts -------------------------------------------------------------


def _postgres_backends(dbname: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                cmdline = (entry / "cmdline").read_bytes()
                if cmdline.startswith(b"postgres:") and f" {dbname} ".encode() in cmdline:
                    found.append(int(entry.name))
    return found


def _machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


class Server:
    """A fresh database, then `--instances` gunicorn instances (paymentflow/testing/cluster.py),
    optionally through a PgBouncer (`--pgbouncer`) and behind an nginx balancer (`--balancer`,
    always with more than one instance); `stop()` is safe to call more than once."""

    def __init__(self, args):
        self.args = args
        self.dbname = args.db_name
        # Direct, for migrate, reconcile and the SQL checks; the instances may go through PgBouncer.
        self.database_url = f"postgres://postgres@127.0.0.1:5432/{self.dbname}"
        self.redis_prefix = f"bench:{self.dbname}"  # this bench's keys only: the Redis may be shared
        self.metrics_token = secrets.token_urlsafe(24)
        self.balanced = args.balancer or args.instances > 1
        self.bouncer: PgBouncer | None = None
        self.instances: list[Gunicorn] = []
        self.balancer: Nginx | None = None
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "paymentflow.settings.production",
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
            "DJANGO_SECURE_SSL_REDIRECT": "0",
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DATABASE_URL": self.database_url,
            "REDIS_URL": args.redis_url,
            "REDIS_KEY_PREFIX": self.redis_prefix,
            "METRICS_TOKEN": self.metrics_token,
            "NUM_PROXIES": "1" if self.balanced else "0",
            # Setup registers dozens of users from one address; production keeps 10/minute.
            "AUTH_THROTTLE_RATE": "100000/minute",
            # A long run must not outlive its access tokens.
            "JWT_ACCESS_MINUTES": "120",
            "LOG_LEVEL": os.environ.get("LOG_LEVEL", "WARNING"),
        }
        for name in ("STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET", "STRIPE_API_BASE", "PROMETHEUS_MULTIPROC_DIR"):
            self.env.pop(name, None)

    @property
    def url(self) -> str:
        return self.balancer.url if self.balancer else self.instances[0].url

    def describe(self) -> dict:
        a = self.args
        return {
            "command": " ".join(self.instances[0].command()[2:]) if self.instances else "",
            "instances": a.instances,
            "workers": a.workers,
            "worker_class": a.worker_class,
            "threads": a.threads,
            "pgbouncer": f"transaction pooling, {a.pool_size} server connections" if a.pgbouncer else None,
            "balancer": "nginx round-robin" if self.balanced else None,
            "database": self.dbname,
            "redis": f"{a.redis_url} (keys {self.redis_prefix}:*)",
        }

    def _run(self, command: list[str], what: str, timeout: float = 300) -> None:
        result = subprocess.run(command, cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise BenchError(
                f"{what} failed (exit {result.returncode}):\n{result.stdout[-2000:]}{result.stderr[-2000:]}"
            )

    def start(self) -> None:
        a = self.args
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        print(f"[server] starting PostgreSQL/Redis if stopped; fresh database {self.dbname}", flush=True)
        self._run(["bash", str(ROOT / "scripts" / "start-services.sh")], "scripts/start-services.sh", timeout=60)
        self._recreate_database()
        self._clear_redis()
        print("[server] migrating (production settings)", flush=True)
        self._run([sys.executable, "manage.py", "migrate", "--noinput"], "manage.py migrate")
        app_env = dict(self.env)
        try:
            if a.pgbouncer:
                self.bouncer = PgBouncer(databases=[self.dbname], pool_size=a.pool_size).start()
                app_env.update(DATABASE_URL=self.bouncer.url(self.dbname), DATABASE_POOLER="transaction")
                pooling = f"transaction pooling, {a.pool_size} server connections"
                print(f"[server] pgbouncer on {self.bouncer.address}: {pooling}", flush=True)
            for _ in range(a.instances):
                instance = Gunicorn(env=app_env, workers=a.workers, threads=a.threads, worker_class=a.worker_class)
                self.instances.append(instance)
                instance.start()
                print(f"[server] {' '.join(instance.command()[2:])}", flush=True)
            if self.balanced:
                self.balancer = Nginx(upstreams=[i.address for i in self.instances]).start()
                print(f"[server] nginx on {self.balancer.address} in front of {a.instances} instance(s)", flush=True)
        except ProcessUnavailable as exc:
            raise BenchError(str(exc)) from exc
        print(f"[server] ready on {self.url}", flush=True)

    def _recreate_database(self) -> None:
        import psycopg
        from psycopg import sql

        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.dbname)))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.dbname)))

    def _clear_redis(self) -> None:
        import redis

        client = redis.Redis.from_url(self.args.redis_url, socket_timeout=5)
        for key in client.scan_iter(match=f"{self.redis_prefix}:*", count=1000):
            client.delete(key)

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(p.log_tail(lines) for p in [*self.instances, self.bouncer, self.balancer] if p)

    def worker_pids(self) -> list[int]:
        return [pid for instance in self.instances for pid in instance.worker_pids()]

    def process_groups(self) -> dict[str, list[int]]:
        """The processes whose CPU the bench reports, by group."""
        groups = {"workers": self.worker_pids(), "postgres": _postgres_backends(self.dbname)}
        if self.bouncer:
            groups["pgbouncer"] = self.bouncer.pids()
        if self.balancer:
            groups["balancer"] = self.balancer.pids()
        return groups

    def metrics(self) -> dict[str, float]:
        """Our business counters (paymentflow/metrics.py) from each instance's /metrics, added up."""
        from prometheus_client.parser import text_string_to_metric_families

        totals: Counter = Counter()
        for instance in self.instances:
            response = httpx.get(
                f"{instance.url}/metrics", headers={"Authorization": f"Bearer {self.metrics_token}"}, timeout=10
            )
            response.raise_for_status()
            for family in text_string_to_metric_families(response.text):
                for sample in family.samples:
                    if sample.name.startswith("paymentflow_") and sample.name.endswith("_total"):
                        labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                        totals[f"{sample.name}{{{labels}}}"] += sample.value
        return dict(sorted(totals.items()))

    def stop(self) -> None:
        running = [p for p in [self.balancer, *self.instances, self.bouncer] if p and p.pids()]
        for number, instance in enumerate(self.instances, start=1):  # their logs kept in bench/results/
            with contextlib.suppress(OSError):
                shutil.copy(instance.log_path, RESULTS_DIR / f"server-{number}.log")
        for process in running:
            process.stop()
        if running:
            print("[server] stopped", flush=True)

    def reconcile(self) -> Check:
        result = subprocess.run(
            [sys.executable, "manage.py", "reconcile_ledger", "--no-progress"],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        lines = (result.stdout + result.stderr).strip().splitlines()
        if result.returncode == 0:
            return Check("manage.py reconcile_ledger", True, lines[-1] if lines else "")
        return Check("manage.py reconcile_ledger", False, f"exit {result.returncode}", lines[-20:])

    def sql_checks(self) -> list[Check]:
        import psycopg

        checks = []
        with psycopg.connect(self.database_url.replace("postgres://", "postgresql://", 1)) as conn:
            negative = conn.execute(
                "SELECT count(*) FROM wallets_wallet WHERE kind = 'USER' AND balance < 0"
            ).fetchone()
            checks.append(
                Check("no negative balance (database, all user wallets)", negative[0] == 0, f"{negative[0]} negative")
            )
            oversold = conn.execute("SELECT count(*) FROM catalog_product WHERE available_units < 0").fetchone()
            checks.append(
                Check("no negative stock (database, all products)", oversold[0] == 0, f"{oversold[0]} negative")
            )
        return checks


class ResourceMeter:
    """CPU used during a scenario by each group of the server's processes (gunicorn workers,
    the bench database's PostgreSQL backends, PgBouncer, the balancer), by the bench process
    itself, and how busy the whole machine was."""

    def __init__(self, server: Server | None):
        self.server = server
        self.hz = os.sysconf("SC_CLK_TCK")

    def _snapshot(self) -> dict:
        snap = {"wall": time.perf_counter(), "client": time.process_time(), "machine": _machine_ticks(), "groups": {}}
        if self.server:
            for group, pids in self.server.process_groups().items():
                snap["groups"][group] = {p: process_cpu_ticks(p) for p in pids}
        return snap

    def start(self) -> None:
        self.before = self._snapshot()

    def stop(self, requests: int) -> dict:
        after = self._snapshot()
        wall = after["wall"] - self.before["wall"]
        busy = after["machine"][0] - self.before["machine"][0]
        total = after["machine"][1] - self.before["machine"][1]
        per = max(requests, 1)
        out = {
            "machine_busy_pct": round(100 * busy / total, 1) if total else None,
            "client_cpu_ms_per_req": round(1000 * (after["client"] - self.before["client"]) / per, 3),
            "client_cpu_cores": round((after["client"] - self.before["client"]) / wall, 2),
        }
        for group, ticks_now in after["groups"].items():
            earlier = self.before["groups"].get(group, {})
            ticks = sum((t or 0) - (earlier.get(p) or 0) for p, t in ticks_now.items() if t is not None)
            out[f"{group}_cpu_ms_per_req"] = round(1000 * ticks / self.hz / per, 3)
            out[f"{group}_cpu_cores"] = round(ticks / self.hz / wall, 2)
        if "postgres" in after["groups"]:
            # Persistent connections at work: the backends at the end, and how many of them
            # were opened during the scenario (0 when every connection was reused).
            backends = after["groups"]["postgres"]
            out["postgres_backends"] = len(backends)
            out["postgres_new_backends"] = len(set(backends) - set(self.before["groups"].get("postgres", {})))
        return out


# --- The API, as the bench sees it ---------------------------------------------------------------


@dataclass
class User:
    label: str
    email: str
    role: str
    id: str = ""
    token: str = ""

    @property
    def auth(self) -> dict:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class Product:
    id: str
    name: str
    merchant: User
    price: Decimal
    initial: int


@dataclass
class Tally:
    """What the bench itself did to the money and the stock, from the responses it got."""

    expected_balance: Counter = field(default_factory=Counter)
    sold: Counter = field(default_factory=Counter)
    orders_by_merchant: Counter = field(default_factory=Counter)
    unknown_outcomes: int = 0  # money-moving requests whose outcome the bench cannot know
    amount_mismatches: list = field(default_factory=list)


@dataclass
class World:
    run_id: str
    buyers: list[User]
    merchants: list[User]
    hot_merchant: User
    spread: list[Product]
    hot: Product
    tally: Tally
    orders_available: bool = True

    @property
    def users(self) -> list[User]:
        return [*self.buyers, *self.merchants, self.hot_merchant]

    @property
    def products(self) -> list[Product]:
        return [*self.spread, self.hot]


async def call(client: httpx.AsyncClient, method: str, path: str, *, user: User | None = None, body=None, parse=True):
    """One request: (status, error code or None, parsed body or None). A transport failure is
    status 0 with the exception's name as its code, never an exception. With parse=False a
    success's body is not decoded (the client's CPU is the server's CPU on one machine)."""
    try:
        resp = await client.request(method, f"{API}{path}", json=body, headers=user.auth if user else None)
    except httpx.TimeoutException as exc:
        return TRANSPORT_STATUS, f"TIMEOUT ({type(exc).__name__})", None
    except httpx.HTTPError as exc:
        return TRANSPORT_STATUS, f"CONNECTION_ERROR ({type(exc).__name__})", None
    data = None
    if parse or resp.status_code >= 400:
        with contextlib.suppress(ValueError):
            data = resp.json()
    code = data.get("code") if resp.status_code >= 400 and isinstance(data, dict) else None
    return resp.status_code, code, data


async def _expect(client, method, path, status, *, user=None, body=None, what=""):
    got, code, data = await call(client, method, path, user=user, body=body)
    if got != status:
        hint = ""
        if got == 429:
            hint = " (throttled: the target server's AUTH_THROTTLE_RATE is too low for the bench's setup)"
        raise BenchError(f"setup: {what or method + ' ' + path} answered {got} {code or ''}{hint}: {str(data)[:300]}")
    return data


async def register(client, user: User, sem: asyncio.Semaphore) -> None:
    async with sem:
        data = await _expect(
            client,
            "POST",
            "/auth/register",
            201,
            body={"email": user.email, "password": PASSWORD, "role": user.role, "firstName": user.label},
            what=f"register {user.email}",
        )
    user.id, user.token = data["user"]["id"], data["accessToken"]


async def deposit(client, user: User, amount: Decimal, tally: Tally, sem: asyncio.Semaphore) -> None:
    async with sem:
        await _expect(client, "POST", "/wallet/deposit", 200, user=user, body={"amount": str(amount)}, what="deposit")
    tally.expected_balance[user.id] += amount


async def create_product(client, merchant: User, name: str, price: Decimal, units: int, sem) -> Product:
    async with sem:
        data = await _expect(
            client,
            "POST",
            "/products",
            201,
            user=merchant,
            body={"name": name, "description": "bench", "price": str(price), "availableUnits": units},
            what=f"create product {name}",
        )
    return Product(data["id"], name, merchant, Decimal(data["price"]), int(data["availableUnits"]))


async def orders_endpoint_present(client, buyer: User) -> bool:
    """POST /orders with an empty body: a validation error means the route exists; the API's
    catch-all 404 (or a 405) means it does not."""
    status, code, _ = await call(client, "POST", "/orders", user=buyer, body={})
    return not (status == 405 or (status == 404 and code == "NOT_FOUND"))


def _funding_per_buyer(args) -> Decimal:
    """Enough money that INSUFFICIENT_FUNDS stays rare: sized for a (generous) 2,000
    purchases/s spread over the buyers, in both purchase scenarios of every round, at the
    top price."""
    seconds = (args.duration + args.warmup) * len(PURCHASES) * args.rounds
    need = Decimal(2000 * seconds) * args.max_price / args.clients
    return max(Decimal("1000.00"), need.quantize(CENT))


async def setup(client: httpx.AsyncClient, args) -> World:
    run_id = uuid.uuid4().hex[:8]
    rng = random.Random(args.seed)
    sem = asyncio.Semaphore(args.setup_concurrency)
    domain = "bench.example.com"
    buyers = [User(f"buyer{i}", f"pf-{run_id}-buyer{i}@{domain}", "USER") for i in range(args.clients)]
    merchants = [User(f"merchant{i}", f"pf-{run_id}-merchant{i}@{domain}", "MERCHANT") for i in range(args.merchants)]
    hot_merchant = User("hot-merchant", f"pf-{run_id}-hot@{domain}", "MERCHANT")
    t0 = time.perf_counter()
    await asyncio.gather(*(register(client, u, sem) for u in [*buyers, *merchants, hot_merchant]))
    t1 = time.perf_counter()
    users = len(buyers) + len(merchants) + 1
    print(f"[setup] registered {users} users in {t1 - t0:.1f} s (Argon2)", flush=True)

    tally = Tally()
    per_buyer = _funding_per_buyer(args)
    chunks = []
    left = per_buyer
    while left > 0:
        chunks.append(min(left, args.max_deposit))
        left -= chunks[-1]
    await asyncio.gather(*(deposit(client, b, amount, tally, sem) for b in buyers for amount in chunks))

    def price() -> Decimal:
        return (Decimal(rng.randint(100, int(args.max_price * 100))) / 100).quantize(CENT)

    jobs = [
        create_product(client, m, f"bench {run_id} {m.label} item{j}", price(), MAX_UNITS, sem)
        for m in merchants
        for j in range(args.products_per_merchant)
    ]
    spread = await asyncio.gather(*jobs)
    hot = await create_product(client, hot_merchant, f"bench {run_id} hot item", price(), MAX_UNITS, sem)
    print(
        f"[setup] {per_buyer} deposited per buyer in {len(chunks)} deposit(s); {len(spread)} products from "
        f"{len(merchants)} merchants + 1 hot product; {time.perf_counter() - t1:.1f} s",
        flush=True,
    )
    world = World(run_id, buyers, merchants, hot_merchant, list(spread), hot, tally)
    world.orders_available = await orders_endpoint_present(client, buyers[0])
    if not world.orders_available:
        print("[setup] orders endpoint missing: POST /api/v1/orders is not routed", flush=True)
    return world


# --- Scenarios -------------------------------------------------------------------------------------


def _purchase_op(world: World, pick):
    tally = world.tally

    async def op(client, i, rng):
        buyer = world.buyers[i]
        product = pick(rng)
        status, code, data = await call(
            client,
            "POST",
            "/orders",
            user=buyer,
            body={"productId": product.id, "paymentMethod": "WALLET", "quantity": 1},
        )
        if status == 201 and isinstance(data, dict):
            amount = Decimal(str(data.get("amount")))
            quantity = int(data.get("quantity", 1))
            tally.expected_balance[buyer.id] -= amount
            tally.expected_balance[product.merchant.id] += amount
            tally.sold[product.id] += quantity
            tally.orders_by_merchant[product.merchant.id] += 1
            if amount != product.price * quantity:
                tally.amount_mismatches.append(
                    f"order {data.get('id')}: amount {amount} != {product.price} x {quantity}"
                )
        elif status == TRANSPORT_STATUS or status >= 500:
            tally.unknown_outcomes += 1
        return status, code

    return op


def _wallet_mixed_op(world: World):
    tally = world.tally

    async def op(client, i, rng):
        user = world.buyers[i]
        roll = rng.random()
        if roll < 0.6:
            kind = "deposit" if roll < 0.3 else "withdraw"
            amount = (Decimal(rng.randint(100, 5000)) / 100).quantize(CENT)
            status, code, _ = await call(
                client, "POST", f"/wallet/{kind}", user=user, body={"amount": str(amount)}, parse=False
            )
            if status == 200:
                tally.expected_balance[user.id] += amount if kind == "deposit" else -amount
            elif status == TRANSPORT_STATUS or status >= 500:
                tally.unknown_outcomes += 1
            return status, code
        status, code, _ = await call(client, "GET", "/wallet/transactions?page=1&limit=20", user=user, parse=False)
        return status, code

    return op


def _catalog_op(world: World):
    pages = max(1, min(3, math.ceil(len(world.products) / 20)))

    async def op(client, i, rng):
        status, code, _ = await call(client, "GET", f"/products?page={rng.randint(1, pages)}&limit=20", parse=False)
        return status, code

    return op


def _me_op(world: World):
    async def op(client, i, rng):
        status, code, _ = await call(client, "GET", "/auth/me", user=world.buyers[i], parse=False)
        return status, code

    return op


def scenario_op(name: str, world: World):
    if name == "purchase-spread":
        return _purchase_op(world, lambda rng: rng.choice(world.spread))
    if name == "purchase-hot":
        return _purchase_op(world, lambda rng: world.hot)
    if name == "wallet-mixed":
        return _wallet_mixed_op(world)
    if name == "catalog-read":
        return _catalog_op(world)
    if name == "me":
        return _me_op(world)
    raise ValueError(name)


async def run_scenario(name, pool: list[httpx.AsyncClient], world, args, meter: ResourceMeter) -> ScenarioSummary:
    expect = SCENARIOS[name]
    if name in PURCHASES and not world.orders_available:
        summary = summarize(name, [], seconds=0, clients=args.clients, expect=expect)
        summary.note = "NOT RUN: orders endpoint missing (POST /api/v1/orders is not routed)"
        return summary
    op = scenario_op(name, world)
    samples: list[Sample] = []
    start = time.perf_counter()
    measure_from = start + args.warmup
    end = measure_from + args.duration
    measured = {"started": False}

    async def client_loop(i: int) -> None:
        rng = random.Random(f"{args.seed}-{name}-{i}")
        for _ in range(MAX_REQUESTS_PER_CLIENT):
            t0 = time.perf_counter()
            if t0 >= end:
                return
            if t0 >= measure_from and not measured["started"]:
                measured["started"] = True
                meter.start()
            status, code = await op(pool[i % len(pool)], i, rng)
            if t0 >= measure_from:
                samples.append(Sample((time.perf_counter() - t0) * 1000, status, code))

    await asyncio.gather(*(client_loop(i) for i in range(args.clients)))
    finished = time.perf_counter()
    summary = summarize(name, samples, seconds=finished - measure_from, clients=args.clients, expect=expect)
    summary.resources = meter.stop(len(samples)) if measured["started"] else {}
    return summary


# --- Invariants ----------------------------------------------------------------------------------


async def api_checks(client: httpx.AsyncClient, world: World, summaries: list[ScenarioSummary]) -> list[Check]:
    tally = world.tally
    sem = asyncio.Semaphore(8)
    checks: list[Check] = []

    async def units(p: Product):
        async with sem:
            status, _, data = await call(client, "GET", f"/products/{p.id}", user=p.merchant)
        return p.id, (int(data["availableUnits"]) if status == 200 else None)

    async def balance(u: User):
        async with sem:
            status, _, data = await call(client, "GET", "/wallet", user=u)
        return u.id, (Decimal(data["balance"]) if status == 200 else None)

    available = dict(await asyncio.gather(*(units(p) for p in world.products)))
    balances = dict(await asyncio.gather(*(balance(u) for u in world.users)))
    unreadable = [k for k, v in {**available, **balances}.items() if v is None]
    if unreadable:
        checks.append(Check("invariants readable through the API", False, f"{len(unreadable)} unreadable", unreadable))
    available = {k: v for k, v in available.items() if v is not None}
    balances = {k: v for k, v in balances.items() if v is not None}
    names = {p.id: p.name for p in world.products} | {u.id: u.label for u in world.users}

    exact = tally.unknown_outcomes == 0
    skipped = f"{tally.unknown_outcomes} money-moving request(s) with unknown outcome: only signs checked"
    initial = {p.id: p.initial for p in world.products}
    problems = stock_problems(initial, available, tally.sold if exact else {}, label=names)
    if not exact:  # without an exact tally only the sign can be checked
        problems = [p for p in problems if "< 0" in p or "unknown" in p]
    sold = sum(tally.sold.values())
    checks.append(
        Check(
            "no oversell: initial - available == units sold, available >= 0 (per product)",
            not problems,
            f"{len(initial)} products, {sold} units sold" if exact else skipped,
            problems,
        )
    )
    problems = balance_problems(tally.expected_balance if exact else None, balances, label=names)
    checks.append(
        Check(
            "balances: none negative, each == what the bench deposited - withdrew - paid + earned",
            not problems,
            f"{len(balances)} wallets" if exact else skipped,
            problems,
        )
    )
    if tally.amount_mismatches:
        checks.append(Check("order amount == price x quantity", False, "", tally.amount_mismatches))

    if world.orders_available and exact:
        merchants = [world.hot_merchant, *world.merchants]

        async def sales(u: User):
            async with sem:
                status, _, data = await call(client, "GET", "/orders/merchant/sales?page=1&limit=1", user=u)
            return u.id, (int(data["meta"]["total"]) if status == 200 and isinstance(data, dict) else None)

        totals = dict(await asyncio.gather(*(sales(m) for m in merchants)))
        problems = [
            f"{names[m]}: {totals[m]} sales listed != {tally.orders_by_merchant[m]} orders created"
            for m in totals
            if totals[m] != tally.orders_by_merchant[m]
        ]
        checks.append(Check("merchant sales lists == orders created (per merchant)", not problems, "", problems))

    errors = sum(s.errors for s in summaries)
    missing = [s.name for s in summaries if s.note.startswith("NOT RUN")]
    checks.append(
        Check("zero real errors (5xx, timeouts, connection errors, unexpected 4xx)", errors == 0, f"{errors}")
    )
    if missing:
        checks.append(Check("orders endpoint present", False, f"orders endpoint missing: {', '.join(missing)} not run"))
    return checks


# --- Output --------------------------------------------------------------------------------------


def draw_chart(summaries: list[ScenarioSummary], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ran = [s for s in summaries if s.requests]
    if not ran:
        return
    names = [s.name for s in ran]
    fig, (lat, thr) = plt.subplots(1, 2, figsize=(12, 4.6), gridspec_kw={"width_ratios": [3, 2]})
    width = 0.26
    xs = range(len(ran))
    for k, (label, attr, color) in enumerate(
        [("p50", "p50_ms", "#4C72B0"), ("p95", "p95_ms", "#DD8452"), ("p99", "p99_ms", "#C44E52")]
    ):
        values = [getattr(s, attr) for s in ran]
        bars = lat.bar([x + (k - 1) * width for x in xs], values, width, label=label, color=color)
        lat.bar_label(bars, fmt="%.0f", fontsize=7, padding=1)
    lat.set_xticks(list(xs), names, rotation=15)
    lat.set_ylabel("latency (ms)")
    lat.set_title("Latency per request")
    lat.legend()
    lat.grid(axis="y", alpha=0.3)
    bars = thr.bar(names, [s.rps for s in ran], color="#55A868")
    thr.bar_label(bars, fmt="%.0f", fontsize=8, padding=1)
    thr.set_ylabel("requests / s")
    thr.set_title("Throughput")
    thr.tick_params(axis="x", rotation=15)
    thr.grid(axis="y", alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _git_commit() -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        return out.stdout.strip()
    return ""


def _loadavg() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


# --- Main -------------------------------------------------------------------------------------------


def add_server_arguments(p: argparse.ArgumentParser, *, db_name: str) -> None:
    """The shape of the server the bench (or the faults drill) starts."""
    # 3 x gthread x 2 did best of the shapes tried on 2 cores (docs/PERFORMANCE.md).
    p.add_argument("--workers", type=int, default=3, help="gunicorn workers per instance (default 3)")
    p.add_argument("--worker-class", default="gthread", choices=["gthread", "sync"], help="default gthread")
    p.add_argument("--threads", type=int, default=2, help="threads per gthread worker (default 2)")
    p.add_argument(
        "--instances", type=int, default=1, help="gunicorn instances, behind an nginx balancer when more than 1"
    )
    p.add_argument("--balancer", action="store_true", help="nginx in front even of a single instance")
    p.add_argument(
        "--pgbouncer", action="store_true", help="instances reach PostgreSQL through PgBouncer (transaction pooling)"
    )
    p.add_argument("--pool-size", type=int, default=8, help="PgBouncer's server connections (default 8)")
    p.add_argument("--db-name", default=db_name, help=f"database the bench recreates (default {db_name})")
    p.add_argument(
        "--redis-url",
        default="redis://127.0.0.1:6379/15",
        help="the Redis the server uses; only keys under the prefix bench:<db-name> are cleared",
    )


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated, in run order (default: all)")
    p.add_argument("--clients", type=int, default=32, help="concurrent clients (default 32)")
    p.add_argument("--duration", type=float, default=6.0, help="measured seconds per scenario and round (default 6)")
    p.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds per scenario, not measured (default 2)")
    p.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="run the scenario list this many times in a row and report each scenario's median round (default 3)",
    )
    p.add_argument("--quick", action="store_true", help="a small run: 8 clients, 3 s (+1 s warm-up) per scenario")
    p.add_argument(
        "--pool",
        default="per-client",
        choices=["per-client", "shared"],
        help="an httpx client (one connection) per simulated client, or one shared pool of --clients connections",
    )
    p.add_argument("--target", help="drive an already running server at this URL (127.0.0.1 only)")
    add_server_arguments(p, db_name="paymentflow_bench")
    p.add_argument("--merchants", type=int, default=8, help="merchants of purchase-spread (default 8)")
    p.add_argument("--products-per-merchant", type=int, default=10, help="default 10")
    p.add_argument("--max-price", type=Decimal, default=Decimal("5.00"), help="product prices are 1.00..this")
    p.add_argument("--max-deposit", type=Decimal, default=Decimal("10000.00"), help="the server's MAXIMUM_DEPOSIT")
    p.add_argument("--setup-concurrency", type=int, default=8, help="parallel setup requests (default 8)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--write-docs", action="store_true", help=f"save the chart to {DOCS_CHART.relative_to(ROOT)}")
    p.add_argument("--results", type=Path, default=RESULTS_DIR / "latest.json", help="the JSON results file")
    args = p.parse_args(argv)
    if args.quick:
        args.clients, args.duration, args.warmup, args.rounds = 8, 3.0, 1.0, 1
        args.merchants, args.products_per_merchant = 4, 5
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [s for s in args.scenarios if s not in SCENARIOS]
    if unknown:
        p.error(f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    if not 1 <= args.clients <= 512:
        p.error("--clients must be 1..512")
    if not 1 <= args.instances <= 8:
        p.error("--instances must be 1..8")
    if not 1 <= args.rounds <= 10:
        p.error("--rounds must be 1..10")
    if not 0 < args.duration <= 600 or not 0 <= args.warmup <= 60:
        p.error("--duration must be in (0, 600] and --warmup in [0, 60]")
    if args.target:
        host = urlsplit(args.target).hostname or ""
        if host not in LOCAL_HOSTS:
            p.error("--target must be a server on this machine (127.0.0.1 or localhost)")
        args.target = args.target.rstrip("/")
    return args


async def drive(base_url: str, args, server: Server | None) -> tuple[list[ScenarioSummary], list[Check], World]:
    limits = httpx.Limits(max_connections=args.clients, max_keepalive_connections=args.clients)
    async with contextlib.AsyncExitStack() as stack:
        client = await stack.enter_async_context(
            httpx.AsyncClient(base_url=base_url, limits=limits, timeout=REQUEST_TIMEOUT)
        )
        if args.pool == "shared":
            pool = [client]
        else:  # one keep-alive connection per simulated client, as a real client would hold
            one = httpx.Limits(max_connections=1, max_keepalive_connections=1)
            pool = [
                await stack.enter_async_context(
                    httpx.AsyncClient(base_url=base_url, limits=one, timeout=REQUEST_TIMEOUT)
                )
                for _ in range(args.clients)
            ]
        world = await setup(client, args)
        summaries = []
        meter = ResourceMeter(server)
        for round_number in range(1, args.rounds + 1):
            for name in args.scenarios:
                of_rounds = f", round {round_number}/{args.rounds}" if args.rounds > 1 else ""
                print(
                    f"[run] {name}: {args.clients} clients, {args.warmup:g} s warm-up + {args.duration:g} s{of_rounds}",
                    flush=True,
                )
                summary = await run_scenario(name, pool, world, args, meter)
                summaries.append(summary)
                r = summary.resources
                if summary.requests:
                    extra = ", ".join(f"{k}={v}" for k, v in r.items())
                    latency = f"p50 {summary.p50_ms:.1f} ms, p99 {summary.p99_ms:.1f} ms"
                    print(f"      {summary.rps:.0f} req/s, {latency}; {extra}")
                elif summary.note:
                    print(f"      {summary.note}")
        checks = await api_checks(client, world, summaries)  # every round's errors count
    # One summary per scenario: with --rounds, the round with the median req/s.
    by_name = {name: [s for s in summaries if s.name == name] for name in args.scenarios}
    return [median_round(rounds) for rounds in by_name.values()], checks, world


def main(argv=None) -> int:
    args = parse_args(argv)

    def on_sigterm(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    load_before = _loadavg()
    started = datetime.now(UTC)
    server = None if args.target else Server(args)
    try:
        if server:
            server.start()
        base_url = args.target or server.url
        summaries, checks, world = asyncio.run(drive(base_url, args, server))
        counters = server.metrics() if server else {}
        if server:
            checks.insert(0, server.reconcile())
            checks[1:1] = server.sql_checks()
        else:
            checks.append(Check("manage.py reconcile_ledger", None, "skipped with --target (no database access)"))
    except BenchError as exc:
        print(f"\nbench: {exc}", file=sys.stderr)
        if server:
            print(f"(server logs:)\n{server.log_tail()}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nbench: interrupted", file=sys.stderr)
        return 130
    finally:
        if server:
            server.stop()
    load_after = _loadavg()

    targets = evaluate_targets({s.name: s for s in summaries if s.requests})
    passed = checks_passed(checks)
    print("\n" + format_table(summaries))
    print("\nResources per scenario (CPU ms per request; cores busy on average):")
    for s in summaries:
        if s.resources:
            print(f"  {s.name:<16} " + ", ".join(f"{k}={v}" for k, v in s.resources.items()))
    if counters:
        print("\nBusiness counters from /metrics (every instance added up):")
        for name, value in counters.items():
            print(f"  {name} {value:g}")
    print("\nInvariants:\n" + format_checks(checks))
    print("\nTargets (issues 7 and 13, reported, not enforced):\n" + format_targets(targets))
    print(f"\nload average before {load_before}, after {load_after} ({os.cpu_count()} CPUs)")

    title = (
        f"Payment Flow bench, {args.clients} clients, {args.duration:g} s/scenario"
        + (f" (median of {args.rounds} rounds)" if args.rounds > 1 else "")
        + ", "
        + (
            (f"{args.instances} instances of " if args.instances > 1 else "")
            + f"gunicorn {args.workers}x{args.worker_class}"
            + (f"x{args.threads}" if args.worker_class == "gthread" else "")
        )
        + (", PgBouncer" if args.pgbouncer else "")
        + f", {started:%Y-%m-%d}"
    )
    results = {
        "started": started.isoformat(timespec="seconds"),
        "commit": _git_commit(),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_before": load_before,
            "load_after": load_after,
        },
        "config": {
            "clients": args.clients,
            "duration": args.duration,
            "warmup": args.warmup,
            "rounds": args.rounds,
            "scenarios": args.scenarios,
            "target": args.target,
            "server": server.describe() if server else None,
            "users": len(world.users),
            "products": len(world.products),
        },
        "scenarios": [s.as_dict() for s in summaries],
        "metrics": counters,
        "invariants": [{"name": c.name, "ok": c.ok, "detail": c.detail, "problems": c.problems} for c in checks],
        "targets": targets,
        "passed": passed,
    }
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(results, indent=2, default=str) + "\n")
    chart = DOCS_CHART if args.write_docs else RESULTS_DIR / "latency.png"
    draw_chart(summaries, chart, title)
    print(f"results: {args.results.relative_to(ROOT) if args.results.is_relative_to(ROOT) else args.results}")
    print(f"chart:   {chart.relative_to(ROOT)}")
    print("PASS" if passed else "FAIL: an invariant failed or a real error occurred")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
