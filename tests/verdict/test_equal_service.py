"""Break-even at equal service: servers priced as ceil(rate / capacity under the SLO) instances, functions at that
rate with the cold-start share measured at their capacity rate; worked by hand on synthetic sessions."""

from __future__ import annotations

import math

import pytest

from perfdesk.verdict.cost import break_even, load_price_table
from perfdesk.verdict.session_data import load_session
from perfdesk.verdict.words import verdict_lines

from .synth import add_capacity_trial, default_targets, write_session

TABLE = load_price_table()
C5 = TABLE["ec2"]["us-east-1"]["c5.xlarge"]
FN = TABLE["lambda"]["us-east-1"]["x86_64"]
WARM = 0.085 * FN["gb_second"] + FN["request"]  # sigma 0: every warm request billed 85 ms at 1 GB


def _session(tmp_path, server_capacity, fn_capacity=20.0, cold_every=0, fn_slo=100.0):
    path = write_session(tmp_path / "s", sigma=0.0, prices={"targets": {"srv": {"instance_type": "c5.xlarge"}}})
    srv, fn = default_targets()
    if server_capacity is not False:
        add_capacity_trial(path, srv, slo_ms=100, capacity_rps=server_capacity, rates=(10, 20, 40, 80))
    add_capacity_trial(path, fn, slo_ms=fn_slo, capacity_rps=fn_capacity, rates=(10, 20, 40), cold_every=cold_every)
    return load_session(path)


def test_servers_are_priced_at_their_capacity_under_the_slo(tmp_path):
    result = break_even(_session(tmp_path, 40.0))
    (c,) = result.crossovers
    srv = result.targets["srv"]
    assert srv.per_instance_rps == 40.0 and "capacity under p99 <= 100 ms" in srv.basis
    assert c.equal_service
    # the function's cold share is measured at its capacity rate (no cold request there): warm cost only
    assert c.function_cold_start_fraction == 0.0 and "capacity rate 20 req/s: 0 cold of 80" in c.cold_fraction_source
    b = C5 / 3600 / WARM
    assert c.break_even_rps == pytest.approx(b)
    # servers as steps: 100 req/s takes ceil(100 / 40) = 3 instances
    assert srv.monthly_usd(100.0, 730) == pytest.approx(3 * C5 * 730)
    text = "\n".join(verdict_lines(result))
    assert f"At equal service (p99 <= 100 ms for both): the server srv becomes cheaper than fn above {b:.1f}" in text
    assert "servers needed = ceil(rate / 40 req/s)" in text
    assert "Capacity: srv sustains 40 req/s with p99 <= 100 ms" in text
    # fn met the SLO only up to 20 req/s with its concurrency limit, below the break-even: said so
    assert "fn sustained only 20 req/s under its SLO" in text


def test_equal_service_changes_the_answer(tmp_path):
    # at saturation (the synthetic server does 100 req/s at any latency) the server wins from 29 req/s ...
    saturation = break_even(_session(tmp_path / "a", False))
    assert saturation.crossovers[0].break_even_rps == pytest.approx(C5 / 3600 / WARM)
    assert not saturation.crossovers[0].equal_service
    assert "Not at equal service" in "\n".join(verdict_lines(saturation))
    # ... but an instance that sustains only 20 req/s under the SLO never costs less per request than the function
    slo = break_even(_session(tmp_path / "b", 20.0))
    (c,) = slo.crossovers
    assert c.break_even_rps is None and "the function is cheaper at every rate" in c.note
    assert c.instance_rps_to_break_even == pytest.approx(C5 / 3600 / WARM)
    assert f"would have to carry {C5 / 3600 / WARM:.1f} req/s (capacity under p99 <= 100 ms) to break even" in c.note


def test_cold_share_at_the_capacity_rate_and_different_bounds(tmp_path):
    result = break_even(_session(tmp_path / "a", 40.0, cold_every=10))
    (c,) = result.crossovers
    assert c.function_cold_start_fraction == pytest.approx(0.1)
    assert "8 cold of 80" in c.cold_fraction_source
    other = break_even(_session(tmp_path / "b", 40.0, fn_slo=250.0))
    (c2,) = other.crossovers
    assert not c2.equal_service
    assert "used p99 <= 250 ms: not equal service" in "\n".join(verdict_lines(other))


def test_no_rate_under_the_slo_is_said(tmp_path):
    result = break_even(_session(tmp_path, None))
    (c,) = result.crossovers
    assert c.break_even_rps is None and "no capacity under the SLO" in c.note
    assert math.isnan(result.targets["srv"].capacity.slo_p99_ms) is False
