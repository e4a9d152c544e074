"""The benchmark's pure parts (bench/stats.py): percentiles, outcome classification,
summaries, invariant and target reports. The benchmark itself runs with `make bench`."""

import math
from decimal import Decimal

import pytest

from bench.stats import (
    ERROR,
    OK,
    REFUSAL,
    TRANSPORT_STATUS,
    Check,
    Expectation,
    Sample,
    balance_problems,
    checks_passed,
    classify,
    evaluate_targets,
    format_checks,
    format_table,
    format_targets,
    markdown_table,
    median_round,
    percentile,
    stock_problems,
    summarize,
)

PURCHASE = Expectation(frozenset({201}), frozenset({(400, "PRODUCT_OUT_OF_STOCK"), (400, "INSUFFICIENT_FUNDS")}))


class TestPercentile:
    def test_matches_linear_interpolation(self):
        values = [float(v) for v in range(1, 101)]  # 1..100
        assert percentile(values, 0) == 1
        assert percentile(values, 100) == 100
        assert percentile(values, 50) == pytest.approx(50.5)
        assert percentile(values, 95) == pytest.approx(95.05)
        assert percentile(values, 99) == pytest.approx(99.01)

    def test_unsorted_input_and_single_value(self):
        assert percentile([30.0, 10.0, 20.0], 50) == 20
        assert percentile([7.0], 99) == 7

    def test_empty_is_nan_and_range_checked(self):
        assert math.isnan(percentile([], 50))
        with pytest.raises(ValueError):
            percentile([1.0], 101)


def test_classify_separates_refusals_from_errors():
    assert classify(201, None, PURCHASE) == OK
    assert classify(400, "PRODUCT_OUT_OF_STOCK", PURCHASE) == REFUSAL
    assert classify(400, "INSUFFICIENT_FUNDS", PURCHASE) == REFUSAL
    assert classify(400, "VALIDATION_ERROR", PURCHASE) == ERROR  # an unexpected 4xx is a real error
    assert classify(500, "INTERNAL_ERROR", PURCHASE) == ERROR
    assert classify(TRANSPORT_STATUS, "TIMEOUT (ReadTimeout)", PURCHASE) == ERROR


def test_summarize_counts_and_rates():
    samples = [Sample(float(ms), 201) for ms in range(1, 97)]
    samples += [Sample(5.0, 400, "INSUFFICIENT_FUNDS"), Sample(6.0, 400, "PRODUCT_OUT_OF_STOCK")]
    samples += [Sample(7.0, 503, "SERVICE_UNAVAILABLE"), Sample(10000.0, TRANSPORT_STATUS, "TIMEOUT (ReadTimeout)")]
    s = summarize("purchase-spread", samples, seconds=2.0, clients=4, expect=PURCHASE)
    assert (s.requests, s.ok, s.refusals, s.errors) == (100, 96, 2, 2)
    assert s.rps == 50.0
    assert s.refusal_codes == {"INSUFFICIENT_FUNDS": 1, "PRODUCT_OUT_OF_STOCK": 1}
    assert s.error_codes == {"503 SERVICE_UNAVAILABLE": 1, "TIMEOUT (ReadTimeout)": 1}
    assert s.by_status == {"201": 96, "400": 2, "503": 1, "no response": 1}
    assert s.max_ms == 10000.0
    assert s.p50_ms < s.p95_ms <= s.p99_ms
    assert "purchase-spread" in format_table([s]) and "ERRORS" in format_table([s])
    assert markdown_table([s]).count("\n") == 2


def test_summarize_nothing_is_json_safe():
    s = summarize("me", [], seconds=0, clients=1, expect=Expectation(frozenset({200})))
    assert s.requests == 0 and s.rps == 0
    assert s.as_dict()["p99_ms"] is None


def test_stock_problems_find_oversell_and_drift():
    initial = {"a": 10, "b": 10, "c": 5}
    assert stock_problems(initial, {"a": 7, "b": 10, "c": 0}, {"a": 3, "c": 5}) == []
    problems = stock_problems(initial, {"a": -1, "b": 9, "c": 5}, {"a": 11}, label={"a": "A"})
    assert any("A" in p and "< 0" in p for p in problems)
    assert any("product b" in p and "!= 0 sold" in p for p in problems)
    assert stock_problems({"x": 1}, {}, {}) == ["product x: availableUnits unknown"]


def test_balance_problems():
    actual = {"u1": Decimal("10.00"), "u2": Decimal("-0.01")}
    assert balance_problems(None, {"u1": Decimal("10.00")}) == []
    problems = balance_problems({"u1": Decimal("10.00"), "u2": Decimal("0.00")}, actual)
    assert problems == ["u2: negative balance -0.01", "u2: balance -0.01 != expected 0.00"]
    assert balance_problems({"u1": Decimal("9.99")}, {"u1": Decimal("10.00")}) == ["u1: balance 10.00 != expected 9.99"]


def test_checks_report_and_verdict():
    checks = [Check("a", True), Check("b", None, "skipped"), Check("c", False, "bad", [f"p{i}" for i in range(12)])]
    assert not checks_passed(checks)
    assert checks_passed(checks[:2])
    text = format_checks(checks)
    assert "[PASS] a" in text and "[skip] b: skipped" in text and "[FAIL] c: bad" in text
    assert "... and 2 more" in text


def _summary(name, rps, errors=0):
    s = summarize(name, [Sample(1.0, 200)], seconds=1.0, clients=1, expect=Expectation(frozenset({200})))
    s.rps, s.errors = rps, errors
    return s


def test_targets_met_not_met_and_missing():
    rows = evaluate_targets(
        {
            "me": _summary("me", 1000),
            "purchase-spread": _summary("purchase-spread", 600),
            "purchase-hot": _summary("purchase-hot", 400, errors=1),
        }
    )
    by_name = {r["target"]: r for r in rows}
    assert by_name["purchase-spread >= 0.45 x me"] == {
        "target": "purchase-spread >= 0.45 x me",
        "value": 0.6,
        "minimum": 0.45,
        "met": True,
    }
    assert by_name["purchase-hot >= 0.8 x purchase-spread"]["met"] is False
    assert by_name["catalog-read >= 0.9 x me"]["met"] is None  # catalog-read did not run
    assert by_name["zero unexpected errors"]["met"] is False
    text = format_targets(rows)
    assert "NOT MET" in text and "n/a" in text and " met" in text


def test_median_round_is_one_whole_round():
    rounds = [_summary("me", rps) for rps in (900.0, 700.0, 800.0)]
    for s, p50 in zip(rounds, (10.0, 30.0, 20.0), strict=True):
        s.p50_ms = p50
    median = median_round(rounds)
    assert (median.rps, median.p50_ms) == (800.0, 20.0)  # its own latencies, not a mix
    assert median.resources["rps_by_round"] == [900.0, 700.0, 800.0]
    assert median_round([_summary("me", 5.0), _summary("me", 7.0)]).rps == 5.0  # even: the lower middle
    single = _summary("me", 1.0)
    assert median_round([single]) is single and "rps_by_round" not in single.resources
    with pytest.raises(ValueError):
        median_round([])
