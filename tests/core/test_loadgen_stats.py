"""The load generator's schedules and loops, and the percentile / confidence-interval math."""

import math
import threading
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perfdesk.controllers.loadgen import constant_schedule, poisson_schedule, run_closed_loop, run_open_loop
from perfdesk.controllers.results import RequestResult, request_row
from perfdesk.controllers.stats import mean_ci, percentile, summarize


@given(rate=st.floats(0.5, 5000), duration=st.floats(0.1, 20))
def test_constant_schedule_spacing_and_count(rate, duration):
    s = constant_schedule(rate, duration_s=duration)
    assert len(s) == math.floor(duration * rate + 1e-9)
    assert np.all(s < duration + 1e-9)
    if len(s) > 1:
        assert np.allclose(np.diff(s), 1.0 / rate)


@given(rate=st.floats(1, 1000), count=st.integers(1, 500), seed=st.integers(0, 2**31))
def test_poisson_schedule_is_seeded_sorted_positive(rate, count, seed):
    a = poisson_schedule(rate, count=count, seed=seed)
    b = poisson_schedule(rate, count=count, seed=seed)
    assert len(a) == count
    assert np.array_equal(a, b)
    assert np.all(np.diff(a) >= 0) and a[0] > 0


def test_poisson_rate_converges():
    s = poisson_schedule(100.0, duration_s=200.0, seed=7)
    # 20,000 expected arrivals: the count is within 4 standard deviations (sqrt(20000) ~ 141)
    assert abs(len(s) - 20000) < 4 * math.sqrt(20000)
    assert s.max() < 200.0
    gaps = np.diff(s)
    assert abs(gaps.mean() - 0.01) < 0.0005
    assert abs(gaps.std() / gaps.mean() - 1.0) < 0.05  # exponential: coefficient of variation 1


@settings(deadline=None)
@given(st.lists(st.floats(0, 1e4, allow_nan=False), min_size=1, max_size=300), st.floats(0, 100))
def test_percentile_matches_numpy_and_bounds(values, q):
    p = percentile(values, q)
    assert min(values) - 1e-9 <= p <= max(values) + 1e-9
    assert p == pytest.approx(np.percentile(values, q))


def test_percentile_of_known_sample():
    values = list(range(1, 101))  # 1..100
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 99) == pytest.approx(99.01)
    assert math.isnan(percentile([], 50))


@settings(deadline=None)
@given(st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=2, max_size=200))
def test_mean_ci_contains_mean(values):
    mean, low, high = mean_ci(values)
    assert low <= mean + 1e-6 and mean <= high + 1e-6


def test_mean_ci_known_case():
    # n = 4, mean 2.5, s = 1.2910, t(0.975, 3) = 3.1824 -> half width 2.0543
    mean, low, high = mean_ci([1, 2, 3, 4])
    assert mean == 2.5
    assert high - mean == pytest.approx(2.0543, abs=1e-3)


def test_ci_coverage_is_about_95_percent():
    rng = np.random.default_rng(1)
    hits = 0
    for _ in range(2000):
        _, low, high = mean_ci(rng.normal(10.0, 3.0, 20))
        hits += low <= 10.0 <= high
    assert 0.93 < hits / 2000 < 0.97


def _row(status="ok", latency=10.0, intended=0.0, late_ms=0.0):
    r = RequestResult(actual_send=intended + late_ms / 1000, receive=intended + latency / 1000, status=status)
    return request_row(r, intended_send=intended)


def test_summarize_counts_and_latency_from_intended_time():
    rows = [_row(latency=10.0 * (i + 1), intended=i * 0.1) for i in range(10)]
    rows.append(_row(status="error", intended=1.0))
    rows.append(_row(status="timeout", intended=1.1))
    rows.append(_row(status="throttled", intended=1.2))
    rows.append(_row(latency=50.0, intended=1.3, late_ms=20.0))
    s = summarize(rows, late_threshold_ms=5.0)
    assert (s["count"], s["ok"], s["errors"], s["timeouts"], s["throttled"]) == (14, 11, 1, 1, 1)
    assert s["late_sends"] == 1
    # the late request's latency counts from its intended send: 50 ms, not 30 ms
    assert s["max_ms"] == pytest.approx(100.0)  # the slowest success
    # the error, the timeout and the throttle count in the percentiles, as worse than any success: 11 ok + 3
    assert (s["latency_samples"], s["failed"]) == (14, 3)
    assert s["p50_ms"] == pytest.approx(65.0)  # between the 7th and 8th of 14, not the median of the 11 successes
    assert s["p90_ms"] == math.inf and s["p99_ms"] == math.inf  # 3 of 14 failed: the tail is failures
    assert s["p99_ci_high_ms"] == math.inf


def test_closed_loop_count_and_concurrency():
    active = 0
    peak = 0
    lock = threading.Lock()
    rows = []

    def send(seq, worker, intended):
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        time.sleep(0.01)
        with lock:
            active -= 1
        return {"seq": seq}

    run_closed_loop(send, rows.append, concurrency=4, cancel=threading.Event(), count=40)
    assert sorted(r["seq"] for r in rows) == list(range(40))
    assert peak == 4


def test_open_loop_measures_from_intended_time_and_counts_late_sends():
    """One worker and a target that takes 50 ms at 50 req/s: sends fall behind; latency grows with the queue."""
    rows = []

    def send(seq, worker, intended):
        actual = time.time()
        time.sleep(0.05)
        result = RequestResult(actual_send=actual, receive=time.time())
        return request_row(result, intended_send=intended)

    offsets = constant_schedule(50.0, count=10)
    run_open_loop(send, rows.append, offsets=offsets, cancel=threading.Event(), max_in_flight=1)
    rows.sort(key=lambda r: r["intended_send"])
    assert len(rows) == 10
    late = [r["late_ms"] for r in rows]
    assert late[-1] > 200  # the 10th send waited for 9 x 50 ms of service minus 9 x 20 ms of schedule
    assert rows[-1]["latency_ms"] > rows[-1]["service_ms"] + 200
    assert summarize(rows)["late_sends"] >= 8


def test_open_loop_cancel_stops_dispatch():
    cancel = threading.Event()
    rows = []

    def send(seq, worker, intended):
        if seq == 3:
            cancel.set()
        return {"seq": seq}

    stats = run_open_loop(send, rows.append, offsets=constant_schedule(100.0, count=1000), cancel=cancel)
    assert stats["dispatched"] < 50
