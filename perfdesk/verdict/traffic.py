"""A month of the profile's ``[traffic]``, projected for each target of a session: cost and expected p99.

- **Functions**: requests a month x the expected cost of one request, warm and cold mixed. The cold-start share is
  *predicted*, not taken from the (time-compressed) replay: the traffic's arrivals at their real pace go through a
  pool of execution environments (a request takes the most recently used idle one, as Lambda and the emulator do;
  none idle: a cold start, a new environment), and an environment idle for ``g`` seconds is gone with the
  probability the eviction curve gives (the ``idle`` trial's measurement of that target; else the emulator's
  configured ``idle_s``; else an assumption, said so). The p99 is that of the warm latencies (the replay's, else the
  warm trial's) and the cold ones (the target's cold requests) mixed in the predicted share.
- **Servers**: a fleet sized for the traffic's busiest minute from the capacity under the SLO (trials.csv rows of
  trial_kind ``capacity``: ``capacity_rps``, ``capacity_p99_ms``, ``slo_p99_ms``, ``capacity_samples``), always on,
  at the target's hourly price; also what an hourly autoscaler would pay (a lower bound: it ignores launch time).
  Without a capacity trial the fleet is sized by the highest throughput measured, whatever its latency (said so).
  The p99 is the capacity's p99 (each server at most at its capacity), else the replay's, else the warm trial's.

Failed requests count in every p99 as worse than any success (infinite latency).
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from perfdesk.controllers.traffic import TrafficSection, arrivals, minute_counts
from perfdesk.verdict.cost import FUNCTION, SERVER, PriceBook, target_costs, target_pricing
from perfdesk.verdict.session_data import Session

#: Arrivals of one period simulated at most (a busier traffic is simulated on its first ones, said so).
MAX_SIMULATED = 400_000
#: The eviction curve assumed for a function with neither an idle trial nor a configured idle timeout: Lambda does
#: not publish its retention; measurements report idle environments kept for roughly 5 to 15 minutes.
ASSUMED_EVICTION = ([300.0, 900.0], [0.0, 1.0])
CAPACITY_COLUMNS = ("slo_p99_ms", "capacity_rps", "capacity_p99_ms", "capacity_samples")


@dataclass
class EvictionCurve:
    """P(cold | idle gap): ``p_cold[i]`` of ``samples[i]`` probes after ``gaps_s[i]`` seconds idle."""

    gaps_s: list[float]
    p_cold: list[float]
    samples: list[int]
    source: str

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Idle lifetimes (seconds) of ``n`` environments: inverse CDF of the curve, linear between measured gaps
        (P = 0 at 0 s); beyond the largest gap's probability, never evicted (inf)."""
        gaps = np.concatenate([[0.0], np.asarray(self.gaps_s, dtype=float)])
        probs = np.maximum.accumulate(np.concatenate([[0.0], np.asarray(self.p_cold, dtype=float)]))
        u = rng.uniform(0.0, 1.0, n)
        out = np.full(n, np.inf)
        hit = u <= probs[-1]
        if probs[-1] > 0:
            out[hit] = np.interp(u[hit], probs, gaps)
        return out


def eviction_curve(session: Session, target: str) -> EvictionCurve:
    """The target's measured eviction curve (``idle`` trials), else its configured idle timeout, else assumed."""
    rows = session.requests[(session.requests["target"] == target) & (session.requests["trial_kind"] == "idle")]
    rows = rows[rows["status"] == "ok"]
    if len(rows):
        gaps = pd.to_numeric(rows["level"], errors="coerce")
        grouped = rows.assign(gap=gaps).dropna(subset=["gap"]).groupby("gap")["cold"]
        stats = grouped.agg(["mean", "count"]).sort_index()
        return EvictionCurve(
            [float(g) for g in stats.index],
            [float(p) for p in stats["mean"]],
            [int(c) for c in stats["count"]],
            f"measured (idle trial, {int(stats['count'].sum())} probes)",
        )
    idle_s = session.target_facts(target).get("idle_s")
    if idle_s:
        s = float(idle_s)
        return EvictionCurve([s, s * 1.0001], [0.0, 1.0], [0, 0], f"the emulator's idle_s = {s:g} s (not measured)")
    gaps, probs = ASSUMED_EVICTION
    return EvictionCurve(list(gaps), list(probs), [0, 0], "assumed (no idle trial): evicted between 5 and 15 min idle")


def simulate_cold_share(
    offsets: np.ndarray, warm_s: float, cold_s: float, curve: EvictionCurve, rng: np.random.Generator
) -> tuple[float, int, int]:
    """Share of ``offsets`` (arrival times, s) that start cold in a pool of environments; (share, arrivals
    simulated, most environments busy at once).

    Each arrival takes the most recently used idle environment still alive, else starts a new one (cold). An
    environment is busy ``warm_s`` (``cold_s`` when it started cold), then idle; it dies ``lifetime`` seconds after
    it became idle, the lifetime drawn from ``curve`` each time it goes idle."""
    n = min(len(offsets), MAX_SIMULATED)
    if n == 0:
        return 0.0, 0, 0
    lifetimes = curve.draw(rng, n)
    busy: list[float] = []  # heap of the times environments become idle
    idle: list[tuple[float, float]] = []  # (idle since, dies at), most recently used last
    cold = 0
    drawn = 0
    peak = 0
    for i in range(n):
        t = float(offsets[i])
        while busy and busy[0] <= t:
            since = heapq.heappop(busy)
            idle.append((since, since + lifetimes[drawn % n]))
            drawn += 1
        warm = False
        while idle:
            _, dies = idle.pop()
            if dies > t:
                warm = True
                break
        if not warm:
            cold += 1
        heapq.heappush(busy, t + (warm_s if warm else cold_s))
        peak = max(peak, len(busy))
    return cold / n, n, peak


def _latencies(rows: pd.DataFrame) -> np.ndarray:
    """Latencies of rows that ran, a failure as +inf (worse than any success); never-sent rows left out."""
    ran = rows[~rows["status"].isin(("cancelled", "dropped"))]
    ok = ran["status"] == "ok"
    lat = ran["latency_ms"].where(ok, np.inf).dropna()
    return lat.to_numpy(dtype=float)


def mixed_percentile(warm: np.ndarray, cold: np.ndarray, cold_share: float, q: float = 0.99) -> float | None:
    """The ``q`` quantile of a mixture: ``warm`` samples with weight 1 - cold_share, ``cold`` with cold_share."""
    if not len(warm) and not len(cold):
        return None
    if not len(cold):
        cold_share = 0.0
    if not len(warm):
        cold_share = 1.0
    values = np.concatenate([warm, cold])
    weights = np.concatenate(
        [np.full(len(warm), (1.0 - cold_share) / max(len(warm), 1)), np.full(len(cold), cold_share / max(len(cold), 1))]
    )
    order = np.argsort(values, kind="stable")
    cum = np.cumsum(weights[order])
    idx = int(np.searchsorted(cum, q * cum[-1] - 1e-12))
    return float(values[order][min(idx, len(values) - 1)])


def _p99(values: np.ndarray) -> float | None:
    return mixed_percentile(values, np.zeros(0), 0.0) if len(values) else None


@dataclass
class Capacity:
    rps: float
    p99_ms: float | None
    slo_p99_ms: float | None
    samples: int | None
    source: str


def capacity(session: Session, target: str) -> Capacity | None:
    """Capacity under the SLO from trials.csv (trial_kind ``capacity``), else the highest throughput measured."""
    trials = session.trials
    missed = ""
    if "capacity_rps" in trials.columns:
        all_rows = trials[(trials["target"] == target) & (trials["trial_kind"] == "capacity")]
        rps = pd.to_numeric(all_rows["capacity_rps"], errors="coerce")
        rows = all_rows[rps > 0]
        if not len(rows) and len(all_rows) and "slo_p99_ms" in all_rows.columns:
            slo = pd.to_numeric(all_rows["slo_p99_ms"], errors="coerce").dropna()
            bound = f" p99 <= {slo.iloc[-1]:g} ms" if len(slo) else ""
            missed = f"the capacity trial found no rate meeting the SLO{bound}"
        if len(rows):
            row = rows.iloc[-1]

            def num(col: str) -> float | None:
                v = pd.to_numeric(pd.Series([row.get(col)]), errors="coerce").iloc[0]
                return None if pd.isna(v) else float(v)

            slo = num("slo_p99_ms")
            samples = num("capacity_samples")
            return Capacity(
                float(num("capacity_rps") or 0.0),
                num("capacity_p99_ms"),
                slo,
                int(samples) if samples is not None else None,
                f"capacity under p99 <= {slo:g} ms" if slo is not None else "capacity trial",
            )
    sweep = trials[(trials["target"] == target) & (trials["trial_kind"] == "concurrency")]
    values = pd.to_numeric(sweep["throughput_rps"], errors="coerce").dropna() if len(sweep) else pd.Series([])
    if len(values) and values.max() > 0:
        return Capacity(
            float(values.max()),
            None,
            None,
            None,
            (missed + "; sized" if missed else "no capacity trial: sized")
            + " by the concurrency sweep's highest throughput, whatever its latency",
        )
    return Capacity(0.0, None, None, None, missed) if missed else None


@dataclass
class Projection:
    """A month of the traffic on one target."""

    target: str
    model: str  # function | server
    kind: str
    requests_per_month: float
    monthly_usd: float | None = None
    p99_ms: float | None = None
    p99_source: str = ""
    cold_share: float | None = None  # functions: predicted
    cold_source: str = ""
    servers: int | None = None  # servers: fleet for the busiest minute
    autoscaled_monthly_usd: float | None = None
    capacity: Capacity | None = None
    replay: dict[str, float] = field(default_factory=dict)  # what the compressed replay measured
    notes: list[str] = field(default_factory=list)

    price_label: str = ""  # what the target is priced as

    @property
    def emulated(self) -> bool:
        return self.kind.startswith("local")

    @property
    def label(self) -> str:
        """How the figure was got, for a local target: measured here, priced as the real thing."""
        if not self.emulated:
            return ""
        where = "the local Lambda emulator" if self.model == FUNCTION else "a server on this machine"
        return f" (an emulation: measured on {where}, priced as {self.price_label or 'the real thing'})"


@dataclass
class TrafficVerdict:
    traffic: str
    period_s: float
    requests_per_period: int
    mean_rps: float
    peak_minute_rps: float
    hours_per_month: float
    projections: list[Projection] = field(default_factory=list)
    eviction: dict[str, EvictionCurve] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def session_traffic(session: Session) -> TrafficSection | None:
    """The session's ``[traffic]``, validated again from the manifest (a trace file is read from where the profile
    named it); None without one. Raises ValueError when it no longer validates (e.g. the trace file moved)."""
    raw = session.profile.get("traffic")
    if not isinstance(raw, dict):
        return None
    base = Path(str(session.manifest.get("profile_path") or session.path / "profile.toml")).parent
    return TrafficSection.model_validate(raw, context={"base_dir": base})


def _replay_rows(session: Session, target: str) -> pd.DataFrame:
    reqs = session.requests
    return reqs[(reqs["target"] == target) & (reqs["trial_kind"] == "replay")]


def project(session: Session, book: PriceBook | None = None) -> TrafficVerdict | None:
    """A month of the session's ``[traffic]`` on each target; None when the profile has no ``[traffic]``."""
    traffic = session_traffic(session)
    if traffic is None:
        return None
    book = book or PriceBook.for_session(session)
    offsets = arrivals(traffic)
    period = traffic.period_s
    per_minute = minute_counts(offsets, period)
    hours = book.hours_per_month
    periods_per_month = hours * 3600.0 / period
    out = TrafficVerdict(
        traffic=traffic.describe(),
        period_s=period,
        requests_per_period=len(offsets),
        mean_rps=len(offsets) / period,
        peak_minute_rps=float(per_minute.max()) / 60.0 if len(per_minute) else 0.0,
        hours_per_month=hours,
    )
    n_month = len(offsets) * periods_per_month
    costs = target_costs(session, book)
    reqs = session.requests
    for name, kind in session.target_kinds().items():
        pricing = target_pricing(session, name, book)
        item = Projection(target=name, model=pricing.model, kind=kind, requests_per_month=n_month)
        if pricing.model == FUNCTION:
            item.price_label = f"Lambda {pricing.memory_mb or 0:g} MB {pricing.architecture} in {pricing.region}"
        elif pricing.hourly_usd is not None:
            what = pricing.instance_type or "a server"
            item.price_label = f"{what} at ${pricing.hourly_usd:g}/h"
        rows = reqs[reqs["target"] == name]
        replay = _replay_rows(session, name)
        if len(replay):
            lat = _latencies(replay)
            item.replay = {
                "requests": float(len(replay)),
                "cold": float(replay["cold"].sum()),
                "failed": float(np.isinf(lat).sum()),
                "p99_ms": _p99(lat) or math.nan,
                "compress": float(pd.to_numeric(replay["level"], errors="coerce").iloc[0]),
            }
        warm_rows = replay[~replay["cold"]] if len(replay) else rows[(rows["trial_kind"] == "warm") & ~rows["cold"]]
        throttled = int((warm_rows["status"] == "throttled").sum())
        if throttled:  # the compression multiplies concurrency; at the traffic's own pace the limit is not reached
            warm_rows = warm_rows[warm_rows["status"] != "throttled"]
            item.notes.append(
                f"{throttled} replay requests were throttled (the concurrency limit, at the replay's compression); "
                "left out of the month's p99, which is at the traffic's own pace"
            )
        warm_source = (
            f"the replay's warm requests, at x{item.replay['compress']:g} the traffic's pace"
            if len(replay)
            else "the warm trial"
        )
        warm = _latencies(warm_rows)
        if pricing.model == FUNCTION:
            _project_function(session, item, rows, warm, warm_source, offsets, traffic, costs.get(name), out)
        else:
            _project_server(session, item, warm, warm_source, per_minute, periods_per_month, pricing.hourly_usd)
        if pricing.note:
            item.notes.append(pricing.note)
        out.projections.append(item)
    if len(offsets) > MAX_SIMULATED:
        out.notes.append(
            f"cold starts simulated on the first {MAX_SIMULATED:,} of {len(offsets):,} arrivals of the period"
        )
    return out


def _project_function(session, item, rows, warm, warm_source, offsets, traffic, cost, out) -> None:
    ok = rows[rows["status"] == "ok"]
    cold_rows = rows[rows["cold"]]
    cold = _latencies(cold_rows)
    warm_ok = warm[np.isfinite(warm)]
    warm_s = float(np.median(warm_ok)) / 1000.0 if len(warm_ok) else 0.1
    cold_ok = cold[np.isfinite(cold)]
    cold_s = float(np.median(cold_ok)) / 1000.0 if len(cold_ok) else warm_s
    curve = eviction_curve(session, item.target)
    out.eviction[item.target] = curve
    share, _, peak = simulate_cold_share(offsets, warm_s, cold_s, curve, np.random.default_rng(traffic.seed))
    item.cold_share = share
    limit = session.target_facts(item.target).get("reserved_concurrency") or session.target_facts(item.target).get(
        "concurrency"
    )
    if limit and peak > int(limit):
        item.notes.append(
            f"the traffic needs {peak} environments at once, above the concurrency limit of {int(limit)}: "
            "some requests would be throttled"
        )
    item.cold_source = f"predicted from the traffic's idle gaps and the eviction curve, {curve.source}"
    p99 = mixed_percentile(warm, cold, share)
    item.p99_ms = p99
    item.p99_source = f"{warm_source} and {len(cold)} cold requests mixed at the predicted cold share"
    if not len(ok):
        item.notes.append("no successful request measured")
    if cost is None or cost.warm_cost_per_request_usd is None:
        item.notes.append("no priced warm request: no cost")
        return
    cold_cost = cost.cold_cost_per_request_usd
    if cold_cost is None:
        cold_cost = cost.warm_cost_per_request_usd
        item.notes.append("no cold request measured: a cold one is priced as a warm one")
    per_request = (1.0 - share) * cost.warm_cost_per_request_usd + share * cold_cost
    item.monthly_usd = item.requests_per_month * per_request


def _project_server(session, item, warm, warm_source, per_minute, periods_per_month, hourly) -> None:
    cap = capacity(session, item.target)
    item.capacity = cap
    if cap is not None and cap.p99_ms is not None:
        item.p99_ms, item.p99_source = cap.p99_ms, f"p99 at capacity ({cap.source})"
    elif len(warm):
        item.p99_ms, item.p99_source = _p99(warm), warm_source + ", one server"
    peak = float(per_minute.max()) / 60.0 if len(per_minute) else 0.0
    if cap is not None and cap.rps <= 0:  # a capacity trial that found no rate under its SLO, and no sweep
        item.notes.append(cap.source)
        item.capacity = cap = None
    if cap is None:
        item.servers = 1
        item.notes.append(
            "no capacity measured (run a capacity or concurrency trial): priced as one server, which may not carry "
            f"the busiest minute's {peak:.3g} req/s"
        )
    else:
        item.servers = max(1, math.ceil(peak / cap.rps - 1e-9))
    if hourly is None:
        return
    period_hours = len(per_minute) / 60.0
    item.monthly_usd = item.servers * hourly * periods_per_month * period_hours
    if cap is None:
        return
    fleet_hours = 0.0
    for h in range(0, len(per_minute), 60):
        chunk = per_minute[h : h + 60]
        fleet_hours += max(1, math.ceil(float(chunk.max()) / 60.0 / cap.rps - 1e-9)) * len(chunk) / 60.0
    item.autoscaled_monthly_usd = fleet_hours * hourly * periods_per_month


def _ms(value: float | None) -> str:
    if value is None:
        return "n/a"
    if math.isinf(value):
        return "inf (failures)"
    return f"{value:,.0f} ms" if value >= 100 else f"{value:.1f} ms"


def projection_lines(v: TrafficVerdict) -> list[str]:
    """The projection in words, one line per target, then the notes."""
    days = v.period_s / 86400.0
    lines = [
        f"Your traffic ({v.traffic}): {v.requests_per_period:,} requests per {days:g}-day period, mean "
        f"{v.mean_rps:.3g} req/s, busiest minute {v.peak_minute_rps:.3g} req/s; a month ({v.hours_per_month:g} h) "
        f"is {v.projections[0].requests_per_month:,.0f} requests."
        if v.projections
        else f"Your traffic ({v.traffic}): no target measured."
    ]
    for p in v.projections:
        money = f"${p.monthly_usd:,.2f}/month" if p.monthly_usd is not None else "no cost (see notes)"
        label = p.label
        if p.model == FUNCTION:
            cold = f"{p.cold_share:.1%}" if p.cold_share is not None else "n/a"
            text = (
                f"{p.target}{label}: {money}, p99 {_ms(p.p99_ms)} ({p.p99_source}), {cold} cold starts "
                f"({p.cold_source})"
            )
        else:
            fleet = f"{p.servers} server(s) always on" if p.servers else "no fleet size"
            cap = f" at {p.capacity.rps:.3g} req/s each ({p.capacity.source})" if p.capacity else ""
            auto = (
                f"; hourly autoscaling: ${p.autoscaled_monthly_usd:,.2f}/month (ignores launch time)"
                if p.autoscaled_monthly_usd is not None
                else ""
            )
            text = f"{p.target}{label}: {money}, {fleet}{cap}, p99 {_ms(p.p99_ms)} ({p.p99_source}){auto}"
        if p.replay:
            r = p.replay
            text += (
                f"; the replay (x{r['compress']:g} compressed) measured p99 {_ms(r['p99_ms'])}, "
                f"{int(r['cold'])} cold and {int(r['failed'])} failed of {int(r['requests'])}"
            )
        lines.append(text + ".")
        lines += [f"  note: {n}" for n in p.notes]
    lines += [f"Note: {n}" for n in v.notes]
    return lines


def safe_projection_lines(session: Session, book: PriceBook | None = None) -> list[str]:
    """:func:`projection_lines` for front ends: never raises (what went wrong is the one line)."""
    try:
        v = project(session, book)
    except Exception as exc:  # noqa: BLE001 - a moved trace file or a malformed CSV: said in the verdict, not raised
        return [f"Traffic projection: cannot compute ({type(exc).__name__}: {exc})"]
    return projection_lines(v) if v is not None else []


def cold_start_lines(session: Session) -> list[str]:
    """The cold starts side by side in words (:mod:`perfdesk.verdict.coldstarts`); never raises."""
    from perfdesk.verdict import coldstarts

    try:
        return coldstarts.lines(coldstarts.cold_starts(session))
    except Exception as exc:  # noqa: BLE001 - a malformed CSV: said, not raised
        return [f"Cold starts: cannot compute ({type(exc).__name__}: {exc})"]


def session_lines(session_path: str | Path) -> list[str]:
    """A session folder's traffic projection and its cold starts side by side, in words (the headless summary's);
    empty for a folder with no rows to read."""
    from perfdesk.verdict.session_data import load_session

    try:
        session = load_session(session_path)
    except Exception:  # noqa: BLE001 - no rows at all (every deploy failed): nothing to project
        return []
    return safe_projection_lines(session) + cold_start_lines(session)


__all__ = ["SERVER", "FUNCTION", "project", "projection_lines", "safe_projection_lines", "eviction_curve"]
