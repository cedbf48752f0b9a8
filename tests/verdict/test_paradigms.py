"""The verdict across paradigms on a synthetic session: EC2 server, on-demand Lambda, SnapStart Lambda and Managed
Instances, each priced by its own model; one chart, one table."""

from __future__ import annotations

import math

import pytest

from perfdesk.verdict.cost import MANAGED, PriceBook, load_price_table, target_costs
from perfdesk.verdict.paradigms import (
    EC2_SERVER,
    MANAGED_INSTANCES,
    ON_DEMAND,
    SNAPSTART,
    managed_instances_needed,
    paradigms,
    paradigms_chart,
)
from perfdesk.verdict.session_data import load_session

from .synth import SynthTarget, write_session

FN = {"memory_mb": 2048, "architecture": "x86_64", "region": "us-east-1"}
MI = {
    **FN,
    "billing": MANAGED,
    "managed_instances": {
        "instance_type": "m7i.large",
        "instance_vcpus": 2,
        "environment_vcpus": 1.0,
        "environments_per_instance": 2,
        "min_instances": 3,
        "publish_to_active_ms": 4200.0,
    },
}


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    targets = [
        SynthTarget("srv", "local-server", median_ms=20.0, cores=2),
        SynthTarget("fn", "lambda", median_ms=60.0, memory_mb=2048, describe={**FN, "billing": "function"}),
        SynthTarget(
            "snap", "lambda", median_ms=60.0, memory_mb=2048, describe={**FN, "billing": "function", "snapstart": True}
        ),
        SynthTarget("mi", "local-lambda", median_ms=60.0, memory_mb=2048, describe=MI),
    ]
    prices = {"targets": {"srv": {"instance_type": "c6i.xlarge"}}}
    path = write_session(tmp_path_factory.mktemp("p") / "s", seed=3, targets=targets, prices=prices, memory_levels=())
    return load_session(path)


def test_each_target_gets_its_paradigm_and_price(session):
    result = paradigms(session)
    rows = {r.target: r for r in result.rows}
    assert [r.paradigm for r in result.rows] == [EC2_SERVER, ON_DEMAND, SNAPSTART, MANAGED_INSTANCES]
    assert rows["mi"].cold_start_ms is None and "publish to Active 4.2 s" in rows["mi"].cold_start_note
    assert rows["fn"].cold_start_ms > rows["fn"].warm_p50_ms  # a cold request carries its INIT
    for r in result.rows:
        assert r.p99_ms >= r.warm_p50_ms > 0

    cost = target_costs(session)["mi"]
    hours = result.hours_per_month
    # the three minimum instances at m7i.large's price + 15 %, plus the request fee, at low traffic
    ec2 = load_price_table()["ec2"]["us-east-1"]["m7i.large"]
    assert rows["mi"].monthly_usd[1e6] == pytest.approx(3 * ec2 * 1.15 * hours + 1e6 * 2e-7)
    # at high traffic the instances follow throughput: saturation x environments per instance each
    rate = 1e9 / (hours * 3600.0)
    instances = managed_instances_needed(rate, cost)
    assert instances == max(3, math.ceil(rate / (cost.saturation_rps * 2)))
    assert rows["mi"].monthly_usd[1e9] == pytest.approx(instances * ec2 * 1.15 * hours + 1e9 * 2e-7)
    # on-demand functions scale with traffic: ten times the requests, ten times the bill
    assert rows["fn"].monthly_usd[1e8] == pytest.approx(10 * rows["fn"].monthly_usd[1e7])


def test_table_and_chart(session):
    result = paradigms(session)
    table = result.table()
    assert list(table["target"]) == ["srv", "fn", "snap", "mi"]
    assert {"cold_start_ms", "p99_ms", "usd_per_month_at_1M", "usd_per_month_at_1B"} <= set(table.columns)
    assert paradigms_chart(result).startswith(b"\x89PNG")
    assert any(line.startswith("mi (Managed Instances): cold start none") for line in result.lines())


def test_a_management_fee_override(session):
    book = PriceBook(load_price_table(), {"targets": {"mi": {"hourly_usd": 1.0}}})
    row = {r.target: r for r in paradigms(session, book).rows}["mi"]
    assert row.monthly_usd[1e6] == pytest.approx(3 * 1.0 * 1.15 * book.hours_per_month + 0.2)


def test_p99_is_at_equal_service_with_failures_counted(tmp_path):
    """Without a capacity trial the p99 is the warm trial's (not the concurrency sweep's overload), and a failed
    request counts as slower than any success: with more than 1% failed the p99 is inf, never the survivors'."""
    import csv

    import numpy as np

    targets = [SynthTarget("fn", "lambda", median_ms=60.0, memory_mb=2048, describe={**FN, "billing": "function"})]
    path = write_session(tmp_path / "s", seed=5, targets=targets, memory_levels=())
    row = paradigms(load_session(path)).rows[0]
    with open(path / "requests.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    warm = [float(r["latency_ms"]) for r in rows if r["trial_kind"] == "warm" and r["cold"] != "True"]
    assert row.p99_ms == pytest.approx(float(np.percentile(warm, 99)))
    assert row.p99_source.startswith(f"warm trial, {len(warm)} requests, 0 failed")

    # fail 2% of the warm requests: the p99 is reached by failures
    n_fail = 0
    for r in rows:
        if r["trial_kind"] == "warm" and r["cold"] != "True" and n_fail < max(2, len(warm) // 50):
            r["status"], r["error"] = "error", "boom"
            n_fail += 1
    with open(path / "requests.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    row = paradigms(load_session(path)).rows[0]
    assert math.isinf(row.p99_ms) and f"{n_fail} failed" in row.p99_source
