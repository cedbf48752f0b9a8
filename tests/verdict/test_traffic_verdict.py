"""The traffic verdict on synthetic sessions: a month of a trace's traffic per target (fleet from the capacity
columns, function cost with the cold-start share predicted from the idle gaps and the eviction curve, the p99 of
each), the pool simulation, the mixed percentile, and the cold starts side by side."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from perfdesk.verdict import coldstarts
from perfdesk.verdict.cost import PriceBook, load_price_table, target_costs
from perfdesk.verdict.session_data import load_session
from perfdesk.verdict.traffic import (
    EvictionCurve,
    _latencies,
    eviction_curve,
    mixed_percentile,
    project,
    projection_lines,
    simulate_cold_share,
)
from tests.verdict.synth import write_session

HEADER = "HashOwner,HashApp,HashFunction,Trigger," + ",".join(str(m) for m in range(1, 1441))


def _step(at: float) -> EvictionCurve:
    return EvictionCurve([at, at * 1.000001], [0.0, 1.0], [1, 1], "test")


def test_pool_simulation():
    rng = np.random.default_rng(0)
    every_10s = np.arange(0.0, 1000.0, 10.0)
    assert simulate_cold_share(every_10s, 0.1, 1.0, _step(5.0), rng)[0] == 1.0  # evicted after 5 s: all cold
    assert simulate_cold_share(every_10s, 0.1, 1.0, _step(20.0), rng)[0] == pytest.approx(1 / 100)  # only the first
    never = EvictionCurve([1.0], [0.0], [1], "never")
    overlap = np.array([0.0, 0.01, 0.02, 5.0, 5.01, 5.02])
    share, _, peak = simulate_cold_share(overlap, 1.0, 1.0, never, rng)
    assert share == pytest.approx(3 / 6) and peak == 3  # scale-out to three environments, then reuse
    half = EvictionCurve([10.0], [0.5], [2], "half")  # after 10 s idle, half the environments are gone
    share, n, _ = simulate_cold_share(np.arange(0.0, 20000.0, 20.0), 0.1, 0.1, half, rng)
    assert n == 1000 and abs(share - 0.5) < 0.06  # each 20 s idle period ends the environment with P = 0.5


def test_mixed_percentile_and_failures_count():
    warm, cold = np.full(1000, 10.0), np.full(10, 1000.0)
    assert mixed_percentile(warm, cold, 0.005) == 10.0
    assert mixed_percentile(warm, cold, 0.02) == 1000.0
    rows = pd.DataFrame({"status": ["ok", "timeout", "cancelled"], "latency_ms": [5.0, np.nan, np.nan]})
    assert _latencies(rows).tolist() == [5.0, math.inf]  # a timeout is worse than any success; never-sent left out


@pytest.fixture
def session(tmp_path):
    path = write_session(tmp_path / "s", seed=2, prices={"targets": {"srv": {"hourly_usd": 1.0}}})
    counts = [600] * 60 + [1] * 1380  # a busy first hour (10 req/s), then one a minute
    trace = tmp_path / "d01.csv"
    trace.write_text(HEADER + "\n" + ",".join(["o", "a", "f", "http"] + [str(c) for c in counts]) + "\n")
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["profile"]["traffic"] = {"pattern": "trace", "file": str(trace)}
    (path / "manifest.json").write_text(json.dumps(manifest))
    trials = pd.read_csv(path / "trials.csv")
    capacity = {
        "session": path.name,
        "workload": "resnet50",
        "trial": "capacity",
        "trial_kind": "capacity",
        "target": "srv",
        "target_kind": "local-server",
        "level": 50,
        "status": "completed",
        "slo_p99_ms": 50.0,
        "capacity_rps": 4.0,
        "capacity_p99_ms": 42.0,
        "capacity_samples": 800,
    }
    pd.concat([trials, pd.DataFrame([capacity])]).to_csv(path / "trials.csv", index=False)
    reqs = pd.read_csv(path / "requests.csv")
    fn_warm = reqs[(reqs["target"] == "fn") & (reqs["trial_kind"] == "warm")].iloc[:8].copy()
    fn_warm["trial"] = fn_warm["trial_kind"] = "idle"
    fn_warm["level"] = [60] * 4 + [600] * 4
    fn_warm["cold"] = [False] * 4 + [True] * 4
    pd.concat([reqs, fn_warm]).to_csv(path / "requests.csv", index=False)
    return load_session(path)


def test_a_month_of_a_trace_on_both_paradigms(session):
    book = PriceBook(load_price_table(), session.profile.get("prices"))
    v = project(session, book)
    assert v is not None and v.requests_per_period == 36000 + 1380
    assert v.peak_minute_rps == pytest.approx(10.0)
    by = {p.target: p for p in v.projections}
    srv, fn = by["srv"], by["fn"]
    assert srv.servers == 3  # ceil(10 req/s / 4 req/s under the SLO)
    assert srv.monthly_usd == pytest.approx(3 * 1.0 * 730)
    assert srv.autoscaled_monthly_usd == pytest.approx((3 + 23) / 24 * 730)  # 3 servers the first hour, then 1
    assert srv.p99_ms == 42.0 and "p99 <= 50 ms" in srv.p99_source
    curve = eviction_curve(session, "fn")
    assert curve.gaps_s == [60.0, 600.0] and curve.p_cold == [0.0, 1.0] and "measured" in curve.source
    # the quiet hours send one a minute: a 60 s gap is at the curve's 0, so few cold starts; never more than the
    # share of gaps above 60 s plus the busy hour's scale-out
    assert fn.cold_share is not None and 0 < fn.cold_share < 1380 / 37380 + 0.01
    cost = target_costs(session, book)["fn"]
    per_request = (1 - fn.cold_share) * cost.warm_cost_per_request_usd + fn.cold_share * cost.cold_cost_per_request_usd
    assert fn.monthly_usd == pytest.approx(v.requests_per_period * 730 * 3600 / 86400 * per_request)
    assert fn.p99_ms is not None and fn.p99_ms > 0
    text = "\n".join(projection_lines(v))
    assert "3 server(s) always on at 4 req/s each (capacity under p99 <= 50 ms)" in text
    assert "fn: $" in text and "cold starts (predicted from the traffic's idle gaps" in text


def test_no_capacity_falls_back_clearly(session):
    trials = session.trials
    session.trials = trials[trials["trial_kind"] != "capacity"]
    srv = next(p for p in project(session).projections if p.target == "srv")
    assert srv.capacity is not None and "no capacity trial" in srv.capacity.source
    session.trials = session.trials[session.trials["trial_kind"] != "concurrency"]
    srv = next(p for p in project(session).projections if p.target == "srv")
    assert srv.servers == 1 and any("no capacity measured" in n for n in srv.notes)


def test_cold_starts_side_by_side(session):
    reqs = session.requests
    fn_cold = reqs.index[(reqs["target"] == "fn") & reqs["cold"] & (reqs["trial_kind"] == "cold")]
    reqs.loc[fn_cold, ["service_ms", "init_ms", "duration_ms"]] = [1000.0, 800.0, 100.0]
    reqs["cold_phases"] = reqs["cold_phases"].astype(object)
    reqs.loc[fn_cold, "cold_phases"] = (
        "module_import_ms=10;inference_import_ms=200;runtime_import_ms=50;weight_load_ms=350;"
        "first_inference_ms=100;total_ms=700"
    )
    srv_cold = reqs.index[(reqs["target"] == "srv") & reqs["cold"]]
    reqs.loc[srv_cold, ["service_ms", "start_ms"]] = [80.0, 400.0]
    reqs.loc[srv_cold, "cold_phases"] = "process_start_ms=400;model_load_ms=500;import_ms=150"
    session.manifest["targets"]["srv"].update(launch_s=30.0, provision_s=60.0)
    items = {b.target: b for b in coldstarts.cold_starts(session)}
    fn = items["fn"].phases
    assert fn["environment / process start"] == 200.0  # 1000 - the handler's 700 ms init - Duration 100
    assert (fn["imports"], fn["weights"], fn["first inference"], fn["first request"]) == (260.0, 300.0, 100.0, 100.0)
    assert items["fn"].init_report_ms == 800.0
    srv = items["srv"].phases
    assert (srv["instance launch"], srv["provisioning"]) == (30000.0, 60000.0)
    assert (srv["environment / process start"], srv["imports"], srv["weights"], srv["first request"]) == (
        400.0,
        150.0,
        350.0,
        80.0,
    )
    header, rows = coldstarts.table(list(items.values()))
    assert header[1].startswith("fn (function") and rows[-2] == ["total", "960 ms", "90,980 ms"]


def test_a_capacity_trial_that_found_no_rate_is_said(session):
    trials = session.trials.copy()
    trials["capacity_rps"] = trials["capacity_rps"].where(trials["trial_kind"] != "capacity")
    session.trials = trials
    srv = next(p for p in project(session).projections if p.target == "srv")
    assert srv.capacity is not None and srv.capacity.source.startswith(
        "the capacity trial found no rate meeting the SLO p99 <= 50 ms; sized by the concurrency sweep's"
    )
    session.trials = trials[trials["trial_kind"] != "concurrency"]
    srv = next(p for p in project(session).projections if p.target == "srv")
    assert srv.servers == 1 and srv.notes[0] == "the capacity trial found no rate meeting the SLO p99 <= 50 ms"


def test_a_snapstart_restore_is_not_charged_the_init_that_ran_at_publish():
    """A restored SnapStart start carries the init phases of the publish (its answer repeats them), but its cold
    start is the restore and the first request: imports, weights and the warm-up inference ran once, at publish."""
    import pandas as pd

    rows = pd.DataFrame(
        [
            {
                "cold_phases": "module_import_ms=1;inference_import_ms=400;runtime_import_ms=60;weight_load_ms=140;"
                "first_inference_ms=170;total_ms=720",
                "init_ms": float("nan"),
                "restore_ms": 45.0,
                "duration_ms": 40.0,
                "service_ms": 110.0,
            }
        ]
    )
    out = coldstarts.ColdStartBreakdown(target="snap", model="function", cold_requests=1)
    coldstarts._function_phases(rows, out)
    assert out.phases["environment / process start"] == 70.0  # 110 - Duration 40: the restore and the round trip
    assert out.phases["first request"] == 40.0
    assert out.phases["imports"] is None and out.phases["weights"] is None and out.phases["first inference"] is None
    assert out.total_ms == 110.0
    assert any("restored a snapshot" in n and "45 ms" in n for n in out.notes)
