"""Compare and the regression gate on synthetic sessions with and without a planted regression."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from perfdesk.verdict.compare import (
    Comparison,
    GroupComparison,
    MetricChange,
    Thresholds,
    bootstrap_p99_ratio,
    compare_sessions,
    format_regressions,
    gate,
    gate_comparison,
    mann_whitney_p,
)

from .synth import write_session

PRICES = {"targets": {"srv": {"instance_type": "c5.xlarge"}}}


@pytest.fixture(scope="module")
def sessions(tmp_path_factory):
    root = tmp_path_factory.mktemp("sessions")
    return {
        "baseline": write_session(root / "baseline", seed=1, prices=PRICES),
        "same": write_session(root / "same", seed=2, prices=PRICES),
        "slow_fn": write_session(root / "slow_fn", seed=3, prices=PRICES, slow={"fn": 1.3}),
        "slow_srv": write_session(
            root / "slow_srv", seed=4, prices=PRICES, slow={"srv": 1.3}, thresholds={"p99_increase_pct": 10}
        ),
    }


def test_gate_passes_without_a_regression(sessions):
    result = gate(sessions["same"], sessions["baseline"])
    assert result.regressions == [] and result.passed
    # 2 targets x (cold, warm, 3 sweep levels) + 3 memory levels, five metrics each where evaluable
    assert result.checked >= 50
    assert format_regressions(result) == []


def test_gate_fires_on_a_planted_slowdown_and_names_it(sessions):
    result = gate(sessions["slow_fn"], sessions["baseline"])
    assert not result.passed
    assert {r.target for r in result.regressions} == {"fn"}
    metrics = {(r.trial, r.level, r.metric) for r in result.regressions}
    assert ("warm", "", "p99_ms") in metrics and ("warm", "", "p50_ms") in metrics
    assert ("warm", "", "throughput_rps") in metrics  # closed loop: slower requests, fewer of them
    warm_p50 = next(r for r in result.regressions if (r.trial, r.metric) == ("warm", "p50_ms"))
    assert 20 < warm_p50.change_pct < 40 and warm_p50.p_value < 0.01
    lines = format_regressions(result)
    assert len(lines) == len(result.regressions)
    assert any("p99 latency of 'fn' in trial resnet50/warm" in line and "threshold 10%" in line for line in lines)


def test_gate_reads_thresholds_from_the_profile(sessions):
    # slow_srv's profile names only p99_increase_pct: only p99 is checked
    result = gate(sessions["slow_srv"], sessions["baseline"])
    assert {r.metric for r in result.regressions} == {"p99_ms"}
    assert {r.target for r in result.regressions} == {"srv"}
    # an explicit, looser threshold wins: a 30% slowdown does not cross 50%
    loose = gate(sessions["slow_srv"], sessions["baseline"], {"p99_increase_pct": 50, "p50_increase_pct": 50})
    assert loose.passed and loose.checked > 0


def test_gate_fires_on_a_planted_error_rate(sessions, tmp_path):
    import shutil

    current = tmp_path / "errors"
    shutil.copytree(sessions["same"], current)
    rows = pd.read_csv(current / "requests.csv", dtype={"error": str})
    warm_srv = rows.index[(rows.target == "srv") & (rows.trial == "warm")]
    rows.loc[warm_srv[::5], ["status", "error"]] = ["error", "HTTP 500"]  # 20% errors
    rows.to_csv(current / "requests.csv", index=False)
    result = gate(current, sessions["baseline"], {"error_rate_increase_pct": 5})
    assert [(r.target, r.trial, r.metric) for r in result.regressions] == [("srv", "warm", "error_rate_pct")]
    assert result.regressions[0].change_pct == pytest.approx(20.0)
    assert "error rate of 'srv'" in format_regressions(result)[0] and "points" in format_regressions(result)[0]


def test_compare_reports_every_group_with_tests(sessions):
    comparison = compare_sessions(sessions["baseline"], sessions["slow_fn"], seed=7)
    groups = {(g.trial, g.target, g.level): g for g in comparison.groups}
    assert len(groups) == 13 and not comparison.only_baseline and not comparison.only_current
    fn_warm, srv_warm = groups[("warm", "fn", "")], groups[("warm", "srv", "")]
    assert fn_warm.metrics["p50_ms"].significant and not srv_warm.metrics["p50_ms"].significant
    p99 = fn_warm.metrics["p99_ms"]
    assert p99.significant and 1.0 < p99.ci_low < p99.ci_high
    assert fn_warm.metrics["cost_per_1k_usd"].change_pct > 20 and fn_warm.metrics["cost_per_1k_usd"].significant
    # seeded: the same seed gives the same interval
    again = compare_sessions(sessions["baseline"], sessions["slow_fn"], seed=7)
    assert again.groups[0].metrics["p99_ms"].ci_low == comparison.groups[0].metrics["p99_ms"].ci_low


def test_bootstrap_and_mann_whitney_on_known_samples():
    rng = np.random.default_rng(0)
    a = rng.lognormal(3.0, 0.3, 2000)
    b = rng.lognormal(3.0, 0.3, 2000) * 1.3
    ratio, low, high, p = bootstrap_p99_ratio(a, b, alpha=0.01, seed=1)
    assert 1.0 < low < 1.3 < high and p < 0.01
    _, low, high, p = bootstrap_p99_ratio(a, rng.lognormal(3.0, 0.3, 2000), alpha=0.01, seed=1)
    assert low < 1.0 < high and p > 0.01
    assert mann_whitney_p(a, b) < 1e-10
    assert mann_whitney_p(a[:3], b[:3]) is None  # too few samples to test
    assert mann_whitney_p(np.ones(10), np.ones(10)) == 1.0


def _one_group(change_pct: float, p: float) -> Comparison:
    metric = MetricChange("p99_ms", 100.0, 100.0 + change_pct, change_pct, p, p < 0.01, "bootstrap p99 ratio")
    group = GroupComparison("w", "warm", "warm", "t", "", 100, 100, {"p99_ms": metric})
    return Comparison("a", "b", 0.01, [group])


def test_a_regression_needs_both_the_threshold_and_significance():
    limits = Thresholds(p99_increase_pct=10)
    assert gate_comparison(_one_group(50, 0.2), limits).regressions == []  # big but not significant
    assert gate_comparison(_one_group(5, 1e-9), limits).regressions == []  # significant but small
    assert len(gate_comparison(_one_group(50, 1e-9), limits).regressions) == 1
    assert gate_comparison(_one_group(-50, 1e-9), limits).regressions == []  # faster is not a regression


def test_thresholds_defaults_and_validation():
    assert Thresholds.resolve(None).p99_increase_pct == 10 and Thresholds.resolve(None).alpha == 0.01
    only = Thresholds.resolve({"p50_increase_pct": 5})
    assert only.p99_increase_pct is None and only.p50_increase_pct == 5
    with pytest.raises(ValidationError, match="p99_increase"):
        Thresholds.resolve({"p99_increase": 10})
    with pytest.raises(ValidationError):
        Thresholds.resolve({"alpha": 0})
