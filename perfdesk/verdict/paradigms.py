"""One verdict across paradigms: an EC2 server, on-demand Lambda, SnapStart Lambda and Lambda Managed Instances on
one chart of monthly cost against traffic, and one table of cold start and p99.

Each target's paradigm comes from its manifest facts (``billing``, written by ``Target.describe()``, and
``snapstart``); its costs from :mod:`perfdesk.verdict.cost` (servers: instances at saturation; functions: the
measured cost per request, warm and cold mixed; Managed Instances: below); its latencies from the session's rows.

Managed Instances are priced by the instance: ``max(min_instances, ceil(rate / per-instance throughput))``
instances at ``EC2 hourly x (1 + management fee)``, plus the request fee for every request. The per-instance
throughput is the measured saturation throughput (the highest of the concurrency levels) times the environments
one instance holds (instance vCPUs / environment vCPUs), as the measured environments were one instance's worth.
Its cold start is the time from PublishVersion to an Active version (the environments' init), which no request
waits for.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from perfdesk.controllers.stats import enough_samples, latency_samples, min_samples, percentile
from perfdesk.verdict.coldstarts import cold_starts
from perfdesk.verdict.cost import (
    FUNCTION,
    MANAGED,
    SERVER,
    PriceBook,
    PriceError,
    TargetCost,
    TargetPricing,
    target_costs,
)
from perfdesk.verdict.session_data import Session

EC2_SERVER, ON_DEMAND, SNAPSTART, MANAGED_INSTANCES = (
    "EC2 server",
    "on-demand Lambda",
    "SnapStart Lambda",
    "Managed Instances",
)
#: Traffic points of the table (requests per month).
TABLE_TRAFFIC = (1e6, 1e7, 1e8, 1e9)


@dataclass
class ManagedPricing(TargetPricing):
    management_fee: float = 0.15
    min_instances: int = 3
    environments_per_instance: int = 1
    ec2_hourly_usd: float | None = None


def managed_pricing(pricing: TargetPricing, facts: dict, over: dict, book: PriceBook) -> ManagedPricing:
    """A Managed Instances target's prices: the instance type's EC2 price plus the management fee, the request fee."""
    mi = dict(facts.get("managed_instances") or {})
    table = dict(book.table.get("managed_instances") or {})
    out = ManagedPricing(**{f: getattr(pricing, f) for f in TargetPricing.__dataclass_fields__})
    out.architecture = str(facts.get("architecture") or "x86_64")
    out.memory_mb = facts.get("memory_mb")
    out.instance_type = str(over.get("instance_type") or mi.get("instance_type") or "")
    fee = over.get("management_fee")
    out.management_fee = float(fee if fee is not None else table.get("management_fee", 0.15))
    out.request_usd = float(table.get("request", 2e-7))
    out.min_instances = int(mi.get("min_instances") or 3)
    out.environments_per_instance = int(mi.get("environments_per_instance") or 1)
    hourly = over.get("hourly_usd")
    try:
        out.ec2_hourly_usd = float(hourly) if hourly is not None else book.ec2_hourly(out.region, out.instance_type)
        out.hourly_usd = out.ec2_hourly_usd * (1.0 + out.management_fee)
    except PriceError as exc:
        out.note = str(exc)
    return out


def managed_instances_needed(rate_rps: float, cost: TargetCost) -> int:
    p = cost.pricing
    assert isinstance(p, ManagedPricing) and cost.per_instance_rps
    per_instance = cost.per_instance_rps * max(1, p.environments_per_instance)
    return max(p.min_instances, math.ceil(rate_rps / per_instance - 1e-9))


def managed_monthly_usd(cost: TargetCost, rate_rps: float, hours_per_month: float) -> float | None:
    p = cost.pricing
    if not isinstance(p, ManagedPricing) or p.hourly_usd is None or not cost.per_instance_rps:
        return None
    instances = managed_instances_needed(rate_rps, cost)
    return instances * p.hourly_usd * hours_per_month + rate_rps * hours_per_month * 3600.0 * (p.request_usd or 0.0)


def paradigm_of(facts: dict) -> str:
    billing = facts.get("billing")
    if billing == MANAGED:
        return MANAGED_INSTANCES
    if billing == FUNCTION or str(facts.get("kind", "")).endswith("lambda"):
        return SNAPSTART if facts.get("snapstart") else ON_DEMAND
    return EC2_SERVER


@dataclass
class ParadigmRow:
    target: str
    paradigm: str
    kind: str
    cold_start_ms: float | None  # median first request after a fresh start (functions: with INIT), or publish
    cold_start_note: str
    warm_p50_ms: float | None
    p99_ms: float | None
    saturation_rps: float | None
    p99_source: str = ""  # where the p99 comes from (capacity under the SLO, the warm trial, ...), in words
    monthly_usd: dict[float, float | None] = field(default_factory=dict)  # requests per month -> USD
    note: str = ""


@dataclass
class Paradigms:
    rows: list[ParadigmRow]
    traffic: list[float]  # requests per month
    curves: dict[str, list[float | None]]  # target -> USD per month at each traffic point
    hours_per_month: float
    prices_as_of: str
    notes: list[str] = field(default_factory=list)

    def table(self) -> pd.DataFrame:
        out = []
        for r in self.rows:
            item: dict[str, Any] = {
                "target": r.target,
                "paradigm": r.paradigm,
                "cold_start_ms": r.cold_start_ms,
                "cold_start": r.cold_start_note,
                "warm_p50_ms": r.warm_p50_ms,
                "p99_ms": r.p99_ms,
                "p99_source": r.p99_source,
                "saturation_rps": r.saturation_rps,
            }
            for t, usd in r.monthly_usd.items():
                item[f"usd_per_month_at_{_traffic(t)}"] = usd
            item["note"] = r.note
            out.append(item)
        return pd.DataFrame(out)

    def lines(self) -> list[str]:
        """One line per target, for the headless summary and the report's verdict."""
        out = []
        for r in self.rows:
            cold = "none" if r.cold_start_ms is None else f"{r.cold_start_ms:.0f} ms"
            money = ", ".join(
                f"{_traffic(t)}/month ${usd:,.2f}" if usd is not None else f"{_traffic(t)}/month n/a"
                for t, usd in r.monthly_usd.items()
            )
            p99 = "n/a" if r.p99_ms is None else f"{r.p99_ms:.0f} ms"
            if r.p99_source:
                p99 += f" ({r.p99_source})"
            out.append(f"{r.target} ({r.paradigm}): cold start {cold} ({r.cold_start_note}), p99 {p99}; {money}")
        return out


def _traffic(t: float) -> str:
    for unit, div in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if t >= div:
            return f"{t / div:g}{unit}"
    return f"{t:g}"


def _ok(rows: pd.DataFrame) -> pd.DataFrame:
    return rows[rows["status"] == "ok"]


#: Trial kinds whose non-cold requests stand for a target's service when it has neither a capacity trial nor a
#: warm trial (the overload of a capacity search and the compressed bursts of a replay are left out).
_STEADY_KINDS = ("concurrency", "rate", "stream")


def _p99(rows: pd.DataFrame, cost: TargetCost) -> tuple[float | None, str]:
    """A target's p99 at equal service, and where it comes from: at its capacity under the SLO where a capacity
    trial measured it (the same bound for every target that has one), else over its warm trial's requests, else
    over its closed- and open-loop trials' warm requests. Failed requests count as slower than any success."""
    cap = cost.capacity
    if cap is not None and cap.rps is not None and cap.p99_ms is not None:
        return float(cap.p99_ms), f"at its capacity under p99 <= {cap.slo_p99_ms:g} ms, {cap.rps:g} req/s"
    if not len(rows) or "trial_kind" not in rows:
        return None, "no requests"
    warm = rows[~rows["cold"].astype(bool)]
    for kinds, label in ((("warm",), "warm trial"), (_STEADY_KINDS, "concurrency, rate and stream trials")):
        mine = warm[warm["trial_kind"].isin(kinds)]
        samples = latency_samples(mine.to_dict("records"))
        if len(samples):
            failed = int(np.isinf(samples).sum())
            few = "" if enough_samples(len(samples), 99) else f"; fewer than the {min_samples(99)} samples a p99 needs"
            return percentile(samples, 99), f"{label}, {len(samples)} requests, {failed} failed{few}"
    return None, "no warm requests"


def paradigms(session: Session, book: PriceBook | None = None, traffic: list[float] | None = None) -> Paradigms:
    """The paradigms verdict of a session: every target's paradigm, cold start, p99 and monthly cost."""
    book = book or PriceBook.for_session(session)
    costs = target_costs(session, book)
    hours = book.hours_per_month
    points = list(traffic or TABLE_TRAFFIC)
    curve_x = [float(x) for x in np.unique(np.concatenate([np.geomspace(1e4, 1e10, 121), points]))]
    rows: list[ParadigmRow] = []
    curves: dict[str, list[float | None]] = {}
    reqs = session.requests
    breakdowns = {b.target: b for b in cold_starts(session)}
    for name, cost in costs.items():
        facts = session.target_facts(name)
        paradigm = paradigm_of({**facts, "billing": facts.get("billing") or cost.pricing.model})
        mine = _ok(reqs[reqs["target"] == name]) if len(reqs) else reqs
        cold_rows = mine[mine["cold"]] if len(mine) else mine
        sustained = mine[~mine["cold"]] if len(mine) else mine
        row = ParadigmRow(
            target=name,
            paradigm=paradigm,
            kind=cost.pricing.kind,
            cold_start_ms=None,
            cold_start_note="",
            warm_p50_ms=float(sustained["latency_ms"].median()) if len(sustained) else None,
            p99_ms=None,
            saturation_rps=cost.saturation_rps,
            note=cost.note,
        )
        all_rows = reqs[reqs["target"] == name] if len(reqs) else reqs
        row.p99_ms, row.p99_source = _p99(all_rows, cost)
        if paradigm == MANAGED_INSTANCES:
            publish = (facts.get("managed_instances") or {}).get("publish_to_active_ms")
            row.cold_start_ms = None
            row.cold_start_note = (
                f"no request starts cold; publish to Active {publish / 1000:.1f} s" if publish else "none per request"
            )
        elif name in breakdowns and breakdowns[name].total_ms > 0:
            # the whole start from nothing, phase by phase (a server's launch, provisioning, agent start and model
            # load; a function's environment, imports, weights and first inference), as the cold-start table has it
            b = breakdowns[name]
            row.cold_start_ms = b.total_ms
            row.cold_start_note = f"sum of the median phases of {b.cold_requests} cold starts"
        elif len(cold_rows):
            row.cold_start_ms = float(cold_rows["latency_ms"].median())
            row.cold_start_note = f"median first request of {len(cold_rows)} fresh starts"
        else:
            row.cold_start_note = "no cold trial"
        per_second = [x / (hours * 3600.0) for x in curve_x]
        curves[name] = [cost.monthly_usd(r, hours) for r in per_second]
        row.monthly_usd = {t: cost.monthly_usd(t / (hours * 3600.0), hours) for t in points}
        rows.append(row)
    order = {EC2_SERVER: 0, ON_DEMAND: 1, SNAPSTART: 2, MANAGED_INSTANCES: 3}
    rows.sort(key=lambda r: (order.get(r.paradigm, 9), r.target))
    notes = [
        f"{hours:g} hours a month; servers: ceil(rate / capacity under the SLO) instances (saturation throughput "
        "where no capacity trial ran); functions: measured cost per request; "
        "Managed Instances: max(min instances, ceil(rate / per-instance throughput)) instances at EC2 price + "
        "management fee, plus the request fee.",
        *[f"{r.target}: {r.note}" for r in rows if r.note],
    ]
    return Paradigms(rows, curve_x, curves, hours, book.as_of, notes)


def paradigms_chart(result: Paradigms) -> bytes | None:
    """Monthly cost against traffic (requests per month), one line per target, labelled with its paradigm."""
    from matplotlib.figure import Figure

    drawn = {n: v for n, v in result.curves.items() if any(x is not None for x in v)}
    if not drawn:
        return None
    paradigm = {r.target: r.paradigm for r in result.rows}
    styles = {EC2_SERVER: "-.", ON_DEMAND: "-", SNAPSTART: "--", MANAGED_INSTANCES: ":"}
    fig = Figure(figsize=(8, 4.5))
    ax = fig.subplots()
    x = np.array(result.traffic)
    for name, values in drawn.items():
        y = np.array([np.nan if v is None else v for v in values], dtype=float)
        steps = paradigm.get(name) in (EC2_SERVER, MANAGED_INSTANCES)
        ax.plot(
            x,
            y,
            styles.get(paradigm.get(name, ""), "-"),
            drawstyle="steps-post" if steps else "default",
            lw=1.8,
            label=f"{name} ({paradigm.get(name)})",
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("traffic (requests per month, sustained)")
    ax.set_ylabel("USD per month")
    ax.set_title(f"Paradigms: monthly cost against traffic (prices as of {result.prices_as_of})")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def session_lines(path) -> list[str]:
    """The paradigms verdict of a session folder as lines (the headless summary); none when it has one paradigm."""
    from perfdesk.verdict.session_data import load_session

    result = paradigms(load_session(path))
    if len({r.paradigm for r in result.rows}) < 2:
        return []
    return result.lines()


__all__ = [
    "EC2_SERVER",
    "MANAGED_INSTANCES",
    "ON_DEMAND",
    "SERVER",
    "SNAPSTART",
    "Paradigms",
    "managed_monthly_usd",
    "managed_pricing",
    "paradigms",
    "paradigms_chart",
    "session_lines",
]
