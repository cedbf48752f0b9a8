"""SnapStart and Graviton in the cost model: restores and the snapshot cache priced, Graviton instance types known."""

from __future__ import annotations

import pandas as pd
import pytest

from perfdesk.controllers.results import REQUEST_COLUMNS
from perfdesk.verdict.cost import FUNCTION, PriceBook, TargetCost, TargetPricing, load_price_table, row_costs

GBS, REQ, CACHE, RESTORE = 0.0000166667, 0.0000002, 0.0000015046, 0.0001397998


def _rows(*rows: dict) -> pd.DataFrame:
    base = {c: None for c in REQUEST_COLUMNS}
    frame = pd.DataFrame(
        [{**base, "status": "ok", "cold": False, "trial_kind": "warm", "level": "", **r} for r in rows]
    )
    for col in ("billed_ms", "duration_ms", "init_ms", "memory_size_mb", "restore_ms", "billed_restore_ms"):
        frame[col] = pd.to_numeric(frame[col])
    return frame


def test_snapstart_restores_and_cache_by_hand():
    book = PriceBook(load_price_table())
    assert book.snapstart_rates("us-east-1") == (CACHE, RESTORE)
    pricing = TargetPricing("fn", "local-lambda", FUNCTION, "us-east-1", "x86_64", 2048, GBS, REQ, snapstart=True)
    pricing.cache_gb_second_usd, pricing.restore_gb_usd = book.snapstart_rates("us-east-1")
    rows = _rows(
        {"billed_ms": 100, "duration_ms": 99.5, "memory_size_mb": 2048},  # warm: 0.2 GB-s
        # restored: no init; 150 ms of after-restore hooks billed like duration, and 2 GB restored
        {"billed_ms": 100, "duration_ms": 99.5, "memory_size_mb": 2048, "cold": True, "restore_ms": 400.2,
         "billed_restore_ms": 150},
    )  # fmt: skip
    out = row_costs(rows, pricing, bill_init=True)
    assert out["gb_seconds"].tolist() == pytest.approx([0.2, 0.5])
    assert out["cost_usd"].tolist() == pytest.approx([0.2 * GBS + REQ, 0.5 * GBS + REQ + 2 * RESTORE], rel=1e-9)
    item = TargetCost(pricing=pricing, warm_cost_per_request_usd=0.2 * GBS + REQ)
    cache_month = 2 * 730 * 3600 * CACHE  # the snapshot of 2 GB, cached all month
    assert item.snapshot_cache_usd(730) == pytest.approx(cache_month)
    assert item.monthly_usd(1.0, 730) == pytest.approx(730 * 3600 * (0.2 * GBS + REQ) + cache_month)
    on_demand = TargetCost(pricing=TargetPricing("od", "lambda", FUNCTION, "us-east-1", "x86_64", 2048, GBS, REQ))
    assert on_demand.snapshot_cache_usd(730) == 0.0


def test_graviton_instances_and_arm64_lambda_are_priced_below_x86():
    book = PriceBook(load_price_table())
    for region in ("us-east-1", "eu-west-1"):
        for arm, x86 in (("c7g.xlarge", "c7i.xlarge"), ("m7g.xlarge", "m7i.xlarge"), ("c6g.xlarge", "c6i.xlarge")):
            assert book.ec2_hourly(region, arm) < book.ec2_hourly(region, x86)
        assert book.lambda_rates(region, "arm64")[0] < book.lambda_rates(region, "x86_64")[0]
        assert {"t4g.small", "c7g.large", "c8g.xlarge", "m6g.xlarge"} <= set(load_price_table()["ec2"][region])
