"""The cost model against hand-computed cases, and break-even on synthetic sessions with a known answer."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
from pydantic import ValidationError

from perfdesk.controllers.results import REQUEST_COLUMNS
from perfdesk.verdict.cost import (
    FUNCTION,
    SERVER,
    PriceBook,
    TargetCost,
    TargetPricing,
    break_even,
    crossover,
    instances_needed,
    load_price_table,
    row_costs,
    trial_costs,
)
from perfdesk.verdict.session_data import load_session

from .synth import SynthTarget, write_session

X86_GBS, ARM_GBS, REQ = 0.0000166667, 0.0000133334, 0.0000002


def _rows(*rows: dict) -> pd.DataFrame:
    base = {c: None for c in REQUEST_COLUMNS}
    frame = pd.DataFrame(
        [{**base, "status": "ok", "cold": False, "trial_kind": "warm", "level": "", **r} for r in rows]
    )
    for col in ("billed_ms", "duration_ms", "init_ms", "memory_size_mb"):
        frame[col] = pd.to_numeric(frame[col])
    return frame


def _fn_pricing(gb=X86_GBS, memory=None) -> TargetPricing:
    return TargetPricing("fn", "lambda", FUNCTION, "us-east-1", "x86_64", memory, gb, REQ)


def test_price_table_is_dated_and_has_the_promised_entries():
    table = load_price_table()
    assert table["as_of"] and "editable" in table["note"]
    for region in ("us-east-1", "eu-west-1"):
        assert set(table["lambda"][region]) == {"x86_64", "arm64"}
        assert {"t2.small", "t3.medium", "c5.xlarge", "c6i.xlarge", "g4dn.xlarge", "inf1.xlarge"} <= set(
            table["ec2"][region]
        )


def test_function_row_costs_by_hand():
    rows = _rows(
        {"billed_ms": 100, "duration_ms": 99.2, "memory_size_mb": 1024},  # 0.1 GB-s
        {"billed_ms": 250, "duration_ms": 249.1, "memory_size_mb": 512},  # 0.125 GB-s
        # cold, zip function: INIT not in billed_ms -> ceil(799.2) = 800 ms added: 901 ms at 1 GB
        {"billed_ms": 101, "duration_ms": 100.3, "init_ms": 799.2, "memory_size_mb": 1024, "cold": True},
        # cold, container image: billed_ms already covers duration + init -> nothing added
        {"billed_ms": 901, "duration_ms": 100.3, "init_ms": 800.0, "memory_size_mb": 1024, "cold": True},
        {"billed_ms": 100, "duration_ms": 99.0, "memory_size_mb": 1024, "status": "throttled"},
        {"billed_ms": None, "duration_ms": 41.2, "memory_size_mb": 2048},  # no REPORT billed: ceil(duration) = 42
    )
    out = row_costs(rows, _fn_pricing(), bill_init=True)
    assert out["gb_seconds"].tolist() == pytest.approx([0.1, 0.125, 0.901, 0.901, 0.0, 0.084])
    assert out["billed_init_ms"].tolist() == [0, 0, 800, 0, 0, 0]
    expected = [
        0.1 * X86_GBS + REQ,
        0.125 * X86_GBS + REQ,
        0.901 * X86_GBS + REQ,
        0.901 * X86_GBS + REQ,
        0.0,
        0.084 * X86_GBS + REQ,
    ]
    assert out["cost_usd"].tolist() == pytest.approx(expected, rel=1e-9)
    # INIT billing is a price-table flag
    free_init = row_costs(rows, _fn_pricing(), bill_init=False)
    assert free_init["gb_seconds"].iloc[2] == pytest.approx(0.101)


def test_arm64_and_memory_fallbacks():
    # a memory trial row without memory_size_mb takes its level; another falls back to the configured memory
    rows = _rows({"billed_ms": 1000, "trial_kind": "memory", "level": "2048"}, {"billed_ms": 1000})
    out = row_costs(rows, _fn_pricing(ARM_GBS, memory=512), bill_init=True)
    assert out["cost_usd"].tolist() == pytest.approx([0.5 * ARM_GBS + REQ, 0.5 * ARM_GBS + REQ])
    out = row_costs(rows.assign(memory_size_mb=float("nan")).iloc[[0]], _fn_pricing(ARM_GBS), bill_init=True)
    assert out["cost_usd"].iloc[0] == pytest.approx(2.0 * ARM_GBS + REQ)


def test_server_trial_cost_over_wall_time(tmp_path):
    # srv priced as c5.xlarge (us-east-1: $0.17/h) through the profile's [prices.targets.srv]
    path = write_session(tmp_path / "s", prices={"targets": {"srv": {"instance_type": "c5.xlarge"}}})
    session = load_session(path)
    costs = {(c.target, c.trial, c.level): c for c in trial_costs(session)}
    sweep = costs[("srv", "sweep", "2")]
    assert sweep.duration_s == 4.0
    assert sweep.cost_usd == pytest.approx(0.17 * 4.0 / 3600)
    assert sweep.cost_per_1k_usd == pytest.approx(0.17 * 4.0 / 3600 / sweep.ok * 1000)
    # region override: eu-west-1 c5.xlarge is $0.192/h
    eu = PriceBook(load_price_table(), {"targets": {"srv": {"instance_type": "c5.xlarge", "region": "eu-west-1"}}})
    sweep_eu = {(c.target, c.trial, c.level): c for c in trial_costs(session, eu)}[("srv", "sweep", "2")]
    assert sweep_eu.cost_usd == pytest.approx(0.192 * 4.0 / 3600)
    # the function's trial cost is the sum of its rows' costs
    fn_warm = costs[("fn", "warm", "")]
    rows = session.requests[(session.requests.target == "fn") & (session.requests.trial == "warm")]
    assert fn_warm.cost_usd == pytest.approx(((rows.billed_ms / 1000 * 1.0) * X86_GBS + REQ).sum())


def test_the_targets_own_hourly_price_wins_and_missing_price_is_explained(tmp_path):
    own = {"hourly_usd": 1.0, "price_source": "profile", "instance_type": "c5.xlarge"}
    targets = [
        SynthTarget("srv", "local-server", 20.0, describe=own),
        SynthTarget("box", "ssh", 20.0),
    ]
    session = load_session(write_session(tmp_path / "s", targets=targets))
    costs = {(c.target, c.trial, c.level): c for c in trial_costs(session)}
    assert costs[("srv", "sweep", "1")].cost_usd == pytest.approx(1.0 * 4.0 / 3600)
    box = costs[("box", "sweep", "1")]
    assert box.cost_usd is None and box.cost_per_1k_usd is None
    assert "[prices.targets.box] hourly_usd" in box.note


def test_profile_prices_merge_over_the_table_and_are_validated():
    book = PriceBook(
        load_price_table(),
        {"lambda": {"us-east-1": {"arm64": {"gb_second": 0.00001}}}, "bill_init": False, "hours_per_month": 720},
    )
    assert book.lambda_rates("us-east-1", "aarch64") == (0.00001, REQ)  # request fee kept from the table
    assert book.lambda_rates("us-east-1", "x86_64") == (X86_GBS, REQ)
    assert not book.bill_init and book.hours_per_month == 720
    with pytest.raises(ValidationError, match="hourly"):
        PriceBook(load_price_table(), {"targets": {"srv": {"hourly": 1.0}}})
    with pytest.raises(ValidationError):
        PriceBook(load_price_table(), {"cold_start_fraction": 2})


def test_instances_needed():
    assert [instances_needed(r, 50.0) for r in (0, 1, 50, 50.01, 100, 101)] == [1, 1, 1, 2, 2, 3]


def _server(hourly: float, sat: float) -> TargetCost:
    return TargetCost(TargetPricing("srv", "ec2", SERVER, "us-east-1", hourly_usd=hourly), saturation_rps=sat)


def _function(per_request: float) -> TargetCost:
    return TargetCost(_fn_pricing(), warm_cost_per_request_usd=per_request, cold_fraction_source="assumed")


def test_crossover_by_hand():
    # function: 100 ms at 1 GB = 0.1 * 0.0000166667 + 0.0000002 = $0.00000186667 a request
    fn = _function(0.1 * X86_GBS + REQ)
    # c5.xlarge: $0.17/h; equal at 0.17 / 3600 / 0.00000186667 = 25.298 req/s
    c = crossover(_server(0.17, 50.0), fn, 730)
    assert c.break_even_rps == pytest.approx(25.2976, rel=1e-4)
    assert c.monthly_usd_at_break_even == pytest.approx(0.17 * 730)
    assert fn.monthly_usd(25.2976, 730) == pytest.approx(0.17 * 730, rel=1e-4)
    # saturation 50 < 2b = 50.6: just past one full instance (50, 50.6) the function wins back; from 2b never
    assert c.server_always_cheaper_from_rps == pytest.approx(2 * 25.2976, rel=1e-4)
    srv = _server(0.17, 50.0)
    assert srv.monthly_usd(50.3, 730) == 2 * 0.17 * 730 > fn.monthly_usd(50.3, 730)
    # saturation 60 >= 2b: once cheaper, the server stays cheaper
    c = crossover(_server(0.17, 60.0), fn, 730)
    assert c.server_always_cheaper_from_rps == pytest.approx(25.2976, rel=1e-4)
    # saturation 30: the function wins on (30, 50.6), (60, 75.9), ..., (150, 151.8); from 6b = 151.8 never again
    c = crossover(_server(0.17, 30.0), fn, 730)
    assert c.break_even_rps == pytest.approx(25.2976, rel=1e-4)
    assert c.server_always_cheaper_from_rps == pytest.approx(6 * 25.2976, rel=1e-4)
    # saturation 20 < 25.3: even a full instance costs more per request; the function always wins
    c = crossover(_server(0.17, 20.0), fn, 730)
    assert c.break_even_rps is None and "function is cheaper at every rate" in c.note


def test_break_even_on_a_synthetic_session_with_a_known_answer(tmp_path):
    # sigma 0: every warm function request takes 100 ms, billed 85 ms at 1024 MB; cold fraction assumed 0
    path = write_session(
        tmp_path / "s",
        sigma=0.0,
        prices={"targets": {"srv": {"instance_type": "c5.xlarge"}}, "cold_start_fraction": 0.0},
    )
    result = break_even(load_session(path))
    per_request = 0.085 * X86_GBS + REQ  # $0.0000016167
    assert result.targets["fn"].warm_cost_per_request_usd == pytest.approx(per_request)
    # the server saturates at ~100 req/s (2 cores, 20 ms a request)
    assert 99.0 <= result.targets["srv"].saturation_rps <= 101.0
    (c,) = result.crossovers
    assert (c.server, c.function, c.cold_fraction_source) == ("srv", "fn", "assumed")
    assert c.break_even_rps == pytest.approx(0.17 / 3600 / per_request)  # 29.21 req/s
    assert c.break_even_rps == pytest.approx(29.21, abs=0.01)
    curves = {curve.target: curve for curve in result.curves}
    i = next(i for i, r in enumerate(result.rates_rps) if r > 150)
    assert curves["srv"].monthly_usd[i] == pytest.approx(
        math.ceil(result.rates_rps[i] / result.targets["srv"].saturation_rps) * 0.17 * 730
    )
    assert curves["fn"].monthly_usd[i] == pytest.approx(result.rates_rps[i] * 730 * 3600 * per_request)


def test_break_even_measures_the_cold_fraction_when_not_assumed(tmp_path):
    path = write_session(tmp_path / "s", prices={"targets": {"srv": {"hourly_usd": 0.5}}})
    session = load_session(path)
    fn = break_even(session).targets["fn"]
    rows = pd.read_csv(path / "requests.csv")
    sustained = rows[(rows.target == "fn") & rows.trial_kind.isin(["warm", "concurrency"])]
    assert sustained.cold.sum() == 4  # workers 2..4 of the sweep's levels 2 and 4 start cold
    assert fn.cold_start_fraction == pytest.approx(4 / len(sustained))
    assert fn.cold_fraction_source.startswith("measured (4 cold of")
    warm, cold = fn.warm_cost_per_request_usd, fn.cold_cost_per_request_usd
    assert cold > warm
    assert fn.cost_per_request_usd == pytest.approx((1 - 4 / len(sustained)) * warm + 4 / len(sustained) * cold)


def test_unpriced_server_gives_no_curve_and_says_why(tmp_path):
    session = load_session(write_session(tmp_path / "s"))
    result = break_even(session)
    curves = {c.target: c for c in result.curves}
    assert all(v is None for v in curves["srv"].monthly_usd)
    assert result.crossovers[0].break_even_rps is None
    assert "server price" in result.crossovers[0].note
    assert any("[prices.targets.srv]" in n for n in result.notes)
    json.dumps([c.note for c in result.crossovers])  # plain data


def test_lambda_cost_per_million_by_hand():
    from perfdesk.verdict.cost import PriceBook, lambda_cost_per_million

    table = {"lambda": {"us-east-1": {"x86_64": {"gb_second": 0.0000166667, "request": 0.0000002}}}}
    # 1,536 MB for 100 ms: 0.15 GB-s x 0.0000166667 = 0.0000025, + 0.0000002 per request -> 2.7 USD per million
    assert lambda_cost_per_million(1536, 100, book=PriceBook(table)) == pytest.approx(2.7, rel=1e-5)
