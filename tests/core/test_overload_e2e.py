"""Failures under overload, end to end: a real local agent pushed past its capacity (open-loop arrivals far above
what one worker serves, with a short client timeout) times out; those requests count in the percentiles as slower
than any success, the summary and trials.csv say how many failed, and the capacity trial finds a rate under its
bound below the overload. The headless verdict then states the capacity and a break-even with a number."""

from __future__ import annotations

import math
import re
import subprocess

import pandas as pd
import pytest

from tests.conftest import PYTHON, agent_env

pytestmark = pytest.mark.slow

TRIALS = """
[[trials]]
kind = "capacity"
p99_ms = 400
start_rps = 4
window_s = 1
max_window_s = 5
min_samples = 20
max_probes = 5
tolerance_pct = 30

[[trials]]
kind = "rate"
name = "overload"
rates = [400]
arrival = "constant"
requests = 400
max_in_flight = 64
max_error_pct = 100

[prices.targets.server]
instance_type = "c5.xlarge"
"""


def test_a_local_server_past_capacity_fails_requests_and_the_percentiles_show_it(tiny_profile, tmp_path):
    profile = tiny_profile(TRIALS, extra_target="request_timeout_s = 0.5\nworkers = 1")
    proc = subprocess.run(
        [PYTHON, "-m", "perfdesk", "--headless", str(profile)],
        env=agent_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = proc.stdout + proc.stderr
    (session,) = (tmp_path / "sessions").iterdir()
    requests = pd.read_csv(session / "requests.csv")
    trials = pd.read_csv(session / "trials.csv", dtype={"level": str})
    over = trials[trials["trial"] == "overload"].iloc[0]
    rows = requests[requests["trial"] == "overload"]
    timeouts = int((rows["status"] == "timeout").sum())
    assert timeouts > 0, out[-3000:]  # 400 req/s at one worker and a 0.5 s timeout: the queue times out
    assert over["failed"] == timeouts + int((rows["status"] == "error").sum())
    assert over["latency_samples"] == len(rows) - int((rows["status"] == "cancelled").sum())
    # the survivors' p99 is under the timeout; the p99 of all requests is a failure
    ok = rows[rows["status"] == "ok"]["latency_ms"]
    assert over["failed"] / over["latency_samples"] > 0.01
    assert over["p99_ms"] == math.inf
    assert not len(ok) or ok.quantile(0.99) < math.inf
    assert over["p99_ci_high_ms"] == math.inf
    # the summary says it: 'failed' in the percentile cells, the failures counted
    assert "failed" in out and re.search(rf"\b{over['failed']}\b", out)
    # the capacity trial found a rate under its bound below the overload, with its samples
    result = trials[(trials["trial_kind"] == "capacity") & (trials["level"] == "capacity")].iloc[0]
    assert result["slo_p99_ms"] == 400
    if not math.isnan(result["capacity_rps"]):
        assert 0 < result["capacity_rps"] < 400 and result["capacity_p99_ms"] <= 400
        at_rate = requests[(requests["trial_kind"] == "capacity") & (requests["level"] == result["capacity_rps"])]
        assert 2 * 2 <= result["capacity_samples"] <= len(at_rate)  # the accepted windows' requests
        assert "Capacity: server sustains" in out
    assert "EMULATION: server is a local server" in out
