"""The benchmark's pure parts: percentiles, per-scenario summaries, invariant and target reports.

Standard library only, so that the test suite (`paymentflow/tests/test_bench_stats.py`) can
import it without the bench's own requirements (httpx, matplotlib) installed.
"""

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal

# Outcome of one request, as the bench counts it.
OK = "ok"
REFUSAL = "refusal"  # an expected business refusal (the API said no, correctly)
ERROR = "error"  # a real error: 5xx, timeout, connection error, or any unexpected status/code

TRANSPORT_STATUS = 0  # the status recorded when no HTTP response arrived


@dataclass(frozen=True)
class Expectation:
    """What a scenario's requests may answer: success statuses and the business refusals
    (status, code) that the contract allows under load."""

    ok_statuses: frozenset[int]
    refusals: frozenset[tuple[int, str]] = frozenset()


def classify(status: int, code: str | None, expect: Expectation) -> str:
    if status in expect.ok_statuses:
        return OK
    if (status, code or "") in expect.refusals:
        return REFUSAL
    return ERROR


def percentile(values: list[float], p: float) -> float:
    """The p-th percentile (0..100) of `values` with linear interpolation between closest
    ranks (numpy's default method). NaN for no values. `values` need not be sorted."""
    if not values:
        return math.nan
    if not 0 <= p <= 100:
        raise ValueError(f"percentile out of range: {p}")
    data = sorted(values)
    rank = (len(data) - 1) * p / 100
    low = math.floor(rank)
    high = math.ceil(rank)
    if low == high:
        return data[low]
    return data[low] + (data[high] - data[low]) * (rank - low)


@dataclass
class Sample:
    latency_ms: float
    status: int
    code: str | None = None


@dataclass
class ScenarioSummary:
    name: str
    clients: int
    seconds: float
    requests: int
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    ok: int
    refusals: int
    errors: int
    by_status: dict[str, int] = field(default_factory=dict)
    refusal_codes: dict[str, int] = field(default_factory=dict)
    error_codes: dict[str, int] = field(default_factory=dict)
    note: str = ""
    resources: dict = field(default_factory=dict)  # CPU per request etc., filled in by the runner

    def as_dict(self) -> dict:
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in self.__dict__.items()}


def _label(status: int, code: str | None) -> str:
    if status == TRANSPORT_STATUS:
        return code or "TRANSPORT_ERROR"
    return f"{status} {code}" if code else str(status)


def summarize(
    name: str, samples: Iterable[Sample], *, seconds: float, clients: int, expect: Expectation
) -> ScenarioSummary:
    """Throughput, latency percentiles and outcome counts of one scenario's measured window."""
    samples = list(samples)
    latencies = [s.latency_ms for s in samples]
    by_status: Counter[str] = Counter()
    refusal_codes: Counter[str] = Counter()
    error_codes: Counter[str] = Counter()
    outcome: Counter[str] = Counter()
    for s in samples:
        by_status[str(s.status) if s.status != TRANSPORT_STATUS else "no response"] += 1
        kind = classify(s.status, s.code, expect)
        outcome[kind] += 1
        if kind == REFUSAL:
            refusal_codes[s.code or ""] += 1
        elif kind == ERROR:
            error_codes[_label(s.status, s.code)] += 1
    return ScenarioSummary(
        name=name,
        clients=clients,
        seconds=round(seconds, 3),
        requests=len(samples),
        rps=len(samples) / seconds if seconds > 0 else 0.0,
        p50_ms=percentile(latencies, 50),
        p95_ms=percentile(latencies, 95),
        p99_ms=percentile(latencies, 99),
        mean_ms=sum(latencies) / len(latencies) if latencies else math.nan,
        max_ms=max(latencies) if latencies else math.nan,
        ok=outcome[OK],
        refusals=outcome[REFUSAL],
        errors=outcome[ERROR],
        by_status=dict(sorted(by_status.items())),
        refusal_codes=dict(refusal_codes.most_common()),
        error_codes=dict(error_codes.most_common()),
    )


def median_round(rounds: list[ScenarioSummary]) -> ScenarioSummary:
    """Of one scenario's rounds, the round with the median requests/s (the lower of the two
    middle ones for an even count), whole: its latencies and resources stay together. The
    rounds' requests/s are kept in its `resources` as `rps_by_round`."""
    if not rounds:
        raise ValueError("no rounds")
    ranked = sorted(rounds, key=lambda s: s.rps)
    median = ranked[(len(ranked) - 1) // 2]
    if len(rounds) > 1:
        median.resources = {**median.resources, "rps_by_round": [round(s.rps, 1) for s in rounds]}
    return median


# --- Invariants ------------------------------------------------------------------------------


@dataclass
class Check:
    """One invariant's verdict. `ok=None` means it could not be checked (and says why)."""

    name: str
    ok: bool | None
    detail: str = ""
    problems: list[str] = field(default_factory=list)


def stock_problems(
    initial: Mapping[str, int], available: Mapping[str, int], sold: Mapping[str, int], *, label: Mapping | None = None
) -> list[str]:
    """No oversell: per product, available >= 0 and initial - available == units sold."""
    problems = []
    for pid, start in initial.items():
        name = (label or {}).get(pid, pid)
        if pid not in available:
            problems.append(f"product {name}: availableUnits unknown")
            continue
        left = available[pid]
        if left < 0:
            problems.append(f"product {name}: availableUnits {left} < 0")
        units = sold.get(pid, 0)
        if start - left != units:
            problems.append(f"product {name}: initial {start} - available {left} = {start - left} != {units} sold")
    return problems


def balance_problems(
    expected: Mapping[str, Decimal] | None, actual: Mapping[str, Decimal], *, label: Mapping | None = None
) -> list[str]:
    """No negative balance; and, when the expected balances are known, each matches."""
    problems = []
    for uid, balance in actual.items():
        name = (label or {}).get(uid, uid)
        if balance < 0:
            problems.append(f"{name}: negative balance {balance}")
        if expected is not None and balance != expected.get(uid, Decimal("0.00")):
            problems.append(f"{name}: balance {balance} != expected {expected.get(uid, Decimal('0.00'))}")
    return problems


def checks_passed(checks: Iterable[Check]) -> bool:
    """Every check that ran passed (a skipped check, ok=None, neither passes nor fails)."""
    return all(c.ok is not False for c in checks)


def format_checks(checks: Iterable[Check], *, max_problems: int = 10) -> str:
    lines = []
    for c in checks:
        verdict = {True: "PASS", False: "FAIL", None: "skip"}[c.ok]
        lines.append(f"  [{verdict}] {c.name}" + (f": {c.detail}" if c.detail else ""))
        for problem in c.problems[:max_problems]:
            lines.append(f"         - {problem}")
        if len(c.problems) > max_problems:
            lines.append(f"         - ... and {len(c.problems) - max_problems} more")
    return "\n".join(lines)


# --- Targets (issue 7; the purchase's, issue 13: in the specified shape) ----------------------


@dataclass(frozen=True)
class Target:
    name: str
    numerator: str
    denominator: str
    minimum: float


TARGETS = (
    Target("purchase-spread >= 0.45 x me", "purchase-spread", "me", 0.45),
    Target("purchase-hot >= 0.8 x purchase-spread", "purchase-hot", "purchase-spread", 0.8),
    Target("catalog-read >= 0.9 x me", "catalog-read", "me", 0.9),
)


def evaluate_targets(summaries: Mapping[str, ScenarioSummary]) -> list[dict]:
    """The ratio targets and 'zero unexpected errors', each met / not met / n/a (a scenario
    it needs did not run). Reported, not enforced: the exit code is the invariants'."""
    rows = []
    for t in TARGETS:
        num, den = summaries.get(t.numerator), summaries.get(t.denominator)
        if num is None or den is None or den.rps <= 0 or num.requests == 0:
            rows.append({"target": t.name, "value": None, "minimum": t.minimum, "met": None})
            continue
        ratio = num.rps / den.rps
        rows.append({"target": t.name, "value": round(ratio, 3), "minimum": t.minimum, "met": ratio >= t.minimum})
    errors = sum(s.errors for s in summaries.values())
    rows.append(
        {"target": "zero unexpected errors", "value": errors, "minimum": 0, "met": errors == 0 if summaries else None}
    )
    return rows


def format_targets(rows: Iterable[dict]) -> str:
    lines = [f"  {'target':<40} {'measured':>9}  verdict"]
    for r in rows:
        value = (
            "-" if r["value"] is None else (f"{r['value']:.2f}" if isinstance(r["value"], float) else str(r["value"]))
        )
        verdict = {True: "met", False: "NOT MET", None: "n/a"}[r["met"]]
        lines.append(f"  {r['target']:<40} {value:>9}  {verdict}")
    return "\n".join(lines)


def _ms(value: float) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.1f}"


def format_table(summaries: Iterable[ScenarioSummary]) -> str:
    header = (
        f"{'scenario':<16} {'clients':>7} {'secs':>5} {'requests':>8} {'req/s':>8} "
        f"{'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'ok':>7} {'refused':>7} {'errors':>6}"
    )
    lines = [header, "-" * len(header)]
    for s in summaries:
        lines.append(
            f"{s.name:<16} {s.clients:>7} {s.seconds:>5.1f} {s.requests:>8} {s.rps:>8.1f} "
            f"{_ms(s.p50_ms):>7} {_ms(s.p95_ms):>7} {_ms(s.p99_ms):>7} {s.ok:>7} {s.refusals:>7} {s.errors:>6}"
        )
        details = []
        if s.refusal_codes:
            details.append("refused " + ", ".join(f"{k}={v}" for k, v in s.refusal_codes.items()))
        if s.error_codes:
            details.append("ERRORS " + ", ".join(f"{k}={v}" for k, v in s.error_codes.items()))
        if s.note:
            details.append(s.note)
        for d in details:
            lines.append(f"{'':<16} {d}")
    return "\n".join(lines)


def markdown_table(summaries: Iterable[ScenarioSummary]) -> str:
    lines = [
        "| scenario | clients | requests | req/s | p50 ms | p95 ms | p99 ms | ok | refused | errors |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for s in summaries:
        lines.append(
            f"| {s.name} | {s.clients} | {s.requests} | {s.rps:.1f} | {_ms(s.p50_ms)} | {_ms(s.p95_ms)} "
            f"| {_ms(s.p99_ms)} | {s.ok} | {s.refusals} | {s.errors} |"
        )
    return "\n".join(lines)
