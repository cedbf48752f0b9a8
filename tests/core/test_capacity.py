"""The capacity trial: steps, then bisection, to the highest rate whose p99 stays under the bound; the stability
rule; a function's concurrency limit; the result in trials.csv under the names the verdict and the traffic
projection read. Run on a one-at-a-time in-process queue (tests/core/queue_target.py) whose capacity is known."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from perfdesk.controllers.capacity import CapacitySpec, Window, stable_verdict, window_verdict
from perfdesk.controllers.experiment import Experiment
from perfdesk.controllers.profile import load_profile
from perfdesk.controllers.trials import TRIAL_KINDS
from tests.core.queue_target import use_queue_kinds

PROFILE = """
[session]
name = "cap"
output = "{out}"

[[targets]]
name = "q"
kind = "{kind}"
service_ms = 10.0
{extra}

[[workloads]]
name = "tiny"
model = "mobilenet_v2"
images = "synthetic"
synthetic_size = [32, 32]
image_count = 2

[[trials]]
kind = "capacity"
p99_ms = 60
window_s = 0.4
min_samples = 40
windows = 2
max_windows = 3
tolerance_pct = 20
max_probes = 8
"""


def _ok(ms: float) -> dict:
    return {"status": "ok", "latency_ms": ms}


def test_window_verdict_counts_failures_as_slower_than_any_success():
    spec = CapacitySpec(kind="capacity", name="c", p99_ms=100, error_limit_pct=5)
    fast = [_ok(10.0)] * 99
    assert window_verdict(fast + [_ok(20.0)], spec).meets
    # one timeout in 100: within the 5% error limit, but it is the p99's neighbour: p99 is no longer a success
    w = window_verdict(fast + [{"status": "timeout", "latency_ms": 5.0}], spec)
    assert w.p99_ms == math.inf and not w.meets and w.failed_pct == pytest.approx(1.0)
    assert not window_verdict([_ok(10.0)] * 90 + [{"status": "error"}] * 10, spec).meets  # 10% failed
    assert not window_verdict([], spec).meets


def test_stability_rule_needs_consecutive_agreeing_windows():
    spec = CapacitySpec(kind="capacity", name="c", p99_ms=100, windows=2, max_windows=4, stability_pct=30)

    def w(p99: float, p50: float | None = None) -> Window:
        return Window(p50_ms=p50 or p99 / 2, p99_ms=p99, failed_pct=0.0, samples=100, meets=p99 <= 100)

    assert stable_verdict([w(50)], spec) is None  # one window is not enough
    assert stable_verdict([w(50), w(55)], spec) is True
    assert stable_verdict([w(50, 20), w(90, 21)], spec) is True  # a p99 of few samples is noisy; the medians agree
    assert stable_verdict([w(150), w(50), w(55)], spec) is True  # a first window of scale-out, then stable
    assert stable_verdict([w(60, 20), w(90, 45)], spec) is None  # both meet but the median grew: a queue building
    assert stable_verdict([w(150), w(200)], spec) is False
    assert stable_verdict([w(50), w(150), w(50), w(150)], spec) is False  # never agreed: max_windows


def test_capacity_is_registered_and_validated():
    assert "capacity" in TRIAL_KINDS
    assert CapacitySpec(kind="capacity", name="c", p99_ms=100).samples_per_window == 459  # MLPerf's p99 minimum
    with pytest.raises(ValueError):
        CapacitySpec(kind="capacity", name="c", p99_ms=100, windows=3, max_windows=2)


def _run(tmp_path, monkeypatch, kind: str = "queue", extra: str = ""):
    use_queue_kinds(monkeypatch)
    path = tmp_path / "p.toml"
    path.write_text(PROFILE.format(out=tmp_path / "sessions", kind=kind, extra=extra))
    experiment = Experiment(load_profile(path))
    outcome = experiment.run()
    trials = pd.read_csv(outcome.session_path / "trials.csv", dtype={"level": str})
    return experiment, outcome, trials


def test_capacity_search_finds_the_rate_under_the_bound(tmp_path, monkeypatch):
    _, outcome, trials = _run(tmp_path, monkeypatch)
    assert outcome.status == "completed", outcome.failures
    result = trials[trials["level"] == "capacity"]
    assert len(result) == 1
    r = result.iloc[0]
    assert r["trial_kind"] == "capacity" and r["slo_p99_ms"] == 60
    probes = trials[trials["level"] != "capacity"].assign(rate=lambda f: f["level"].astype(float))
    met = probes[probes["note"].str.startswith("meets")]
    broke = probes[probes["note"].str.startswith("breaks")]
    # one server at 10 ms a request cannot sustain 100 req/s: the search found a break and stayed below it
    assert len(broke) >= 1 and len(met) >= 1
    assert r["capacity_rps"] == met["rate"].max() < broke["rate"].min()
    assert r["capacity_rps"] < 100.0 * 1.2
    assert r["capacity_p99_ms"] <= 60
    assert r["capacity_samples"] >= 2 * 40
    # bisection narrowed the bracket to the tolerance (or ran out of probes)
    assert (broke["rate"].min() - r["capacity_rps"]) / r["capacity_rps"] <= 0.2 or len(probes) == 8
    assert (probes["slo_p99_ms"] == 60).all() and (trials["loop"] == "open").all()
    assert "capacity under p99 <= 60 ms" in r["note"]


def test_a_function_never_has_more_in_flight_than_its_concurrency_limit(tmp_path, monkeypatch):
    experiment, outcome, trials = _run(tmp_path, monkeypatch, kind="queue-function", extra="concurrency = 2")
    target = experiment.targets["q"]
    assert 1 <= target.most_in_flight <= 2
    note = trials[trials["level"] == "capacity"].iloc[0]["note"]
    assert "at most 2 in flight (the function's concurrency limit 2)" in note
