"""Fault drills: `make faults` (or `python -m bench.faults --help`).

Starts the benchmark's server (gunicorn, production settings, a fresh PostgreSQL database;
see bench/run.py), funds buyers, and runs a purchase storm. Half the buyers send every
purchase with an `Idempotency-Key` and, when they get no definitive answer (connection
dropped, timeout, 5xx, 409 in progress), retry with the same key, as a careful client
would. The other half send no key (such a purchase is one transaction of its own) and
never retry: when they get no definitive answer, the outcome is unknown to them. During the storm it

  1. SIGKILLs one gunicorn worker (the master starts a new one), and
  2. restarts PostgreSQL (`pg_ctlcluster ... restart`), dropping every connection.

Afterwards it checks, straight from the database, that no money was lost or duplicated
and no order is half-written:

  - `manage.py reconcile_ledger` is clean (balances = ledger, journals balanced, stock);
  - every order is COMPLETED (a wallet purchase has no other state);
  - with a key, the orders in the database are exactly the ones the clients were told
    about: no order a client does not know of, none created twice for one key; without a
    key, every order a client was told about is there, and the ones it was not told about
    are no more than its requests that got no definitive answer;
  - each buyer's balance is deposits - their orders, each merchant's the sum of their
    sales, each product's sold units the count of its orders;
  - the server answered again within seconds after each fault (printed), and /readyz is
    200 at the end.

Exit status 0 only when all of that holds. It restarts the machine's PostgreSQL, so it is
not part of `make test`: run it on a machine where nothing else is using the database.
"""

import argparse
import asyncio
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from bench.run import (  # noqa: E402
    API,
    BenchError,
    Server,
    Tally,
    User,
    add_server_arguments,
    create_product,
    deposit,
    register,
)

RETRY_PAUSE = 0.2  # seconds between retries of one key
GIVE_UP_AFTER = 60.0  # seconds a client keeps retrying one key after the storm ends
DEFINITIVE_REFUSALS = {"PRODUCT_OUT_OF_STOCK", "INSUFFICIENT_FUNDS"}


@dataclass
class Outcomes:
    created: dict = field(default_factory=dict)  # idempotency key -> order id
    refused: Counter = field(default_factory=Counter)  # error code -> count
    retries: Counter = field(default_factory=Counter)  # why a key was retried -> count
    unresolved: list = field(default_factory=list)  # keys never answered definitively
    successes_at: list = field(default_factory=list)  # monotonic times of 201s
    keyless_created: set = field(default_factory=set)  # order ids answered 201 without a key
    keyless_unknown: Counter = field(default_factory=Counter)  # buyer id -> requests with no definitive answer


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.faults", description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=16, help="concurrent buyers (default 16)")
    p.add_argument("--duration", type=float, default=12.0, help="storm seconds (default 12)")
    p.add_argument("--kill-at", type=float, default=3.0, help="SIGKILL a worker at this second (default 3)")
    p.add_argument("--restart-at", type=float, default=6.0, help="restart PostgreSQL at this second (default 6)")
    p.add_argument("--no-restart", action="store_true", help="skip the PostgreSQL restart")
    add_server_arguments(p, db_name="paymentflow_faults")
    p.add_argument("--seed", type=int, default=11)
    args = p.parse_args(argv)
    if not 1 <= args.clients <= 128 or not 0 < args.duration <= 120:
        p.error("--clients must be 1..128 and --duration in (0, 120]")
    return args


async def _setup(client: httpx.AsyncClient, args):
    run = uuid.uuid4().hex[:8]
    sem = asyncio.Semaphore(8)
    buyers = [User(f"buyer{i}", f"faults-{run}-b{i}@example.com", "USER") for i in range(args.clients)]
    merchants = [User(f"merchant{i}", f"faults-{run}-m{i}@example.com", "MERCHANT") for i in range(2)]
    await asyncio.gather(*(register(client, u, sem) for u in [*buyers, *merchants]))
    tally = Tally()
    await asyncio.gather(*(deposit(client, b, Decimal("5000.00"), tally, sem) for b in buyers))
    products = await asyncio.gather(
        *(
            create_product(client, m, f"faults {run} {m.label} item{j}", Decimal("3.00") + j, 100_000, sem)
            for m in merchants
            for j in range(4)
        )
    )
    return buyers, merchants, list(products), tally


async def _purchase(client, buyer: User, product, outcomes: Outcomes, headers: dict) -> tuple[str, str]:
    """POST one purchase: ("created", order id), ("refused", code) — both counted in
    `outcomes` — or ("undecided", why: a transport error, a 5xx, a 409 in progress)."""
    body = {"productId": product.id, "paymentMethod": "WALLET", "quantity": 1}
    try:
        resp = await client.post(f"{API}/orders", json=body, headers={**buyer.auth, **headers})
    except httpx.HTTPError as exc:
        return "undecided", type(exc).__name__
    if resp.status_code == 201:
        outcomes.successes_at.append(time.monotonic())
        return "created", resp.json()["id"]
    code = resp.json().get("code") if resp.headers.get("content-type", "").startswith("application/json") else ""
    if resp.status_code == 400 and code in DEFINITIVE_REFUSALS:
        outcomes.refused[code] += 1
        return "refused", code
    return "undecided", f"{resp.status_code} {code}"


async def _buy_until_definitive(client, buyer: User, product, outcomes: Outcomes, hard_deadline: float):
    """One purchase under one key, retried with that key until the answer is definitive."""
    key = uuid.uuid4().hex
    while time.monotonic() < hard_deadline:
        result, detail = await _purchase(client, buyer, product, outcomes, {"Idempotency-Key": key})
        if result == "created":
            outcomes.created[key] = detail
        if result != "undecided":
            return
        outcomes.retries[detail] += 1  # same key again
        await asyncio.sleep(RETRY_PAUSE)
    outcomes.unresolved.append(key)


async def _buy_once_without_key(client, buyer: User, product, outcomes: Outcomes):
    """One purchase without a key, never retried (a retry could buy twice)."""
    result, detail = await _purchase(client, buyer, product, outcomes, {})
    if result == "created":
        outcomes.keyless_created.add(detail)
    elif result == "undecided":  # done or not, the client cannot tell
        outcomes.keyless_unknown[buyer.id] += 1
        await asyncio.sleep(RETRY_PAUSE)


def _keyless(buyers) -> set:
    """The buyers who send no Idempotency-Key: every other one."""
    return {buyer.id for buyer in buyers[1::2]}


async def _storm(base_url, buyers, products, args, outcomes: Outcomes):
    rng = random.Random(args.seed)
    stop_at = time.monotonic() + args.duration
    hard_deadline = stop_at + GIVE_UP_AFTER

    keyless = _keyless(buyers)

    async def client_loop(buyer):
        async with httpx.AsyncClient(base_url=base_url, timeout=10.0) as client:
            while time.monotonic() < stop_at:
                if buyer.id in keyless:
                    await _buy_once_without_key(client, buyer, rng.choice(products), outcomes)
                else:
                    await _buy_until_definitive(client, buyer, rng.choice(products), outcomes, hard_deadline)

    await asyncio.gather(*(client_loop(b) for b in buyers))


def _pg_restart() -> None:
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart", "--mode", "fast"],
        check=True,
        capture_output=True,
        timeout=120,
    )


async def _faults(server: Server, args, started: float, log: dict) -> None:
    await asyncio.sleep(args.kill_at)
    workers = server.worker_pids()
    if workers:
        victim = random.Random(args.seed).choice(workers)
        os.kill(victim, signal.SIGKILL)
        log["worker_killed_at"] = time.monotonic()
        print(f"[faults] t={time.monotonic() - started:4.1f}s SIGKILL gunicorn worker {victim}", flush=True)
    if args.no_restart:
        return
    await asyncio.sleep(max(0.0, args.restart_at - args.kill_at))
    print(f"[faults] t={time.monotonic() - started:4.1f}s restarting PostgreSQL", flush=True)
    log["pg_restart_started_at"] = time.monotonic()
    await asyncio.to_thread(_pg_restart)
    log["pg_restarted_at"] = time.monotonic()
    print(f"[faults] t={time.monotonic() - started:4.1f}s PostgreSQL is back", flush=True)


def _recovery(after: float | None, successes: list[float]) -> float | None:
    """Seconds from a fault to the first purchase that succeeded after it."""
    if after is None:
        return None
    later = [t for t in successes if t > after]
    return round(min(later) - after, 2) if later else None


def _database_checks(server: Server, buyers, merchants, products, tally: Tally, outcomes: Outcomes) -> list[str]:
    import psycopg

    problems = []
    url = server.database_url.replace("postgres://", "postgresql://", 1)
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT id::text, status, user_id::text, merchant_id::text, product_id::text, amount FROM orders_order"
        ).fetchall()
        statuses = Counter(status for _, status, *_ in rows)
        if set(statuses) - {"COMPLETED"}:
            problems.append(f"orders not COMPLETED: {dict(statuses)}")
        keyless = _keyless(buyers)
        in_db = {row[0] for row in rows if row[2] not in keyless}
        told = set(outcomes.created.values())
        if len(told) != len(outcomes.created):
            problems.append("one order id was returned for two different keys")
        if in_db - told:
            problems.append(f"{len(in_db - told)} order(s) in the database that no client was told about")
        if told - in_db:
            problems.append(f"{len(told - in_db)} order(s) a client was told about are missing")
        keyless_in_db = Counter(row[2] for row in rows if row[2] in keyless)
        keyless_told = Counter(row[2] for row in rows if row[0] in outcomes.keyless_created)
        if sum(keyless_told.values()) != len(outcomes.keyless_created):
            problems.append("an order a keyless client was told about is missing")
        for buyer_id, count in keyless_in_db.items():
            untold = count - keyless_told[buyer_id]
            if untold > outcomes.keyless_unknown[buyer_id]:
                problems.append(
                    f"keyless buyer {buyer_id}: {untold} order(s) never answered, "
                    f"but only {outcomes.keyless_unknown[buyer_id]} request(s) without a definitive answer"
                )

        spent, earned, sold = Counter(), Counter(), Counter()
        for _, _, user_id, merchant_id, product_id, amount in rows:
            spent[user_id] += amount
            earned[merchant_id] += amount
            sold[product_id] += 1
        balances = dict(
            conn.execute("SELECT user_id::text, balance FROM wallets_wallet WHERE kind = 'USER'").fetchall()
        )
        for buyer in buyers:
            expected = tally.expected_balance[buyer.id] - spent[buyer.id]
            if balances.get(buyer.id) != expected:
                problems.append(f"buyer {buyer.email}: balance {balances.get(buyer.id)} != expected {expected}")
        for merchant in merchants:
            if balances.get(merchant.id) != earned[merchant.id]:
                problems.append(
                    f"merchant {merchant.email}: {balances.get(merchant.id)} != sales {earned[merchant.id]}"
                )
        stock = dict(conn.execute("SELECT id::text, available_units FROM catalog_product").fetchall())
        for product in products:
            if product.initial - stock[product.id] != sold[product.id]:
                problems.append(
                    f"product {product.name}: {product.initial - stock[product.id]} units gone, {sold[product.id]} sold"
                )
    return problems


async def _main(args) -> int:
    server = Server(args)
    try:
        server.start()
        async with httpx.AsyncClient(base_url=server.url, timeout=30.0) as client:
            buyers, merchants, products, tally = await _setup(client, args)
        print(f"[faults] storm: {args.clients} buyers for {args.duration:g} s", flush=True)
        outcomes, log = Outcomes(), {}
        started = time.monotonic()
        await asyncio.gather(_storm(server.url, buyers, products, args, outcomes), _faults(server, args, started, log))
        async with httpx.AsyncClient(base_url=server.url, timeout=5.0) as client:
            ready = (await client.get("/readyz")).status_code
        reconcile = server.reconcile()
        problems = _database_checks(server, buyers, merchants, products, tally, outcomes)
    finally:
        server.stop()

    print(
        f"\norders created {len(outcomes.created)} with a key, {len(outcomes.keyless_created)} without; "
        f"refused {dict(outcomes.refused)}"
    )
    print(f"keyless requests with no definitive answer (not retried): {sum(outcomes.keyless_unknown.values())}")
    print(f"retries (same key) by cause: {dict(outcomes.retries)}")
    print(f"recovery after worker SIGKILL: {_recovery(log.get('worker_killed_at'), outcomes.successes_at)} s")
    print(f"recovery after PostgreSQL restart: {_recovery(log.get('pg_restarted_at'), outcomes.successes_at)} s")
    if "pg_restart_started_at" in log:
        print(f"  (the restart itself took {log['pg_restarted_at'] - log['pg_restart_started_at']:.2f} s)")
    if outcomes.unresolved:
        problems.append(f"{len(outcomes.unresolved)} key(s) never got a definitive answer")
    if ready != 200:
        problems.append(f"/readyz answered {ready} after the storm")
    if not reconcile.ok:
        problems.append(f"reconcile_ledger: {reconcile.detail} {reconcile.problems}")
    print(f"reconcile_ledger: {'clean' if reconcile.ok else 'DRIFT'} ({reconcile.detail})")
    for problem in problems:
        print(f"FAIL: {problem}")
    print("PASS: no partial order, no lost or duplicated money" if not problems else "FAIL")
    return 0 if not problems else 1


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        return asyncio.run(_main(args))
    except BenchError as exc:
        print(f"faults: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
