"""The report's charts: each function takes verdict data and returns PNG bytes, or None when the session has
nothing to draw (e.g. no memory trial). Matplotlib's object API with the Agg canvas: no pyplot, no global state,
no display needed."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from perfdesk.controllers.results import OUT_OF_MEMORY_ERROR
from perfdesk.verdict.cost import BreakEven, TrialCost
from perfdesk.verdict.session_data import Session

DPI = 90


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    return buf.getvalue()


def _ok(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["status"] == "ok"]


def latency_cdf(session: Session) -> bytes | None:
    """Empirical CDF of latency per target: the warm trial's requests (all sustained requests if no warm trial)."""
    rows = _ok(session.requests)
    warm = rows[rows["trial_kind"] == "warm"]
    rows = warm if len(warm) else rows[rows["trial_kind"] != "cold"]
    if not len(rows):
        return None
    fig = Figure(figsize=(7.5, 4))
    ax = fig.subplots()
    for target, group in rows.groupby("target"):
        lat = np.sort(group["latency_ms"].dropna().to_numpy())
        if len(lat):
            ax.step(lat, np.arange(1, len(lat) + 1) / len(lat), where="post", label=f"{target} (n={len(lat)})")
    ax.set_xscale("log")
    ax.set_xlabel("latency (ms, log scale)")
    ax.set_ylabel("share of requests")
    ax.set_title("Latency distribution" + (" (warm trial)" if len(warm) else " (all sustained trials)"))
    ax.axhline(0.99, color="grey", lw=0.6, ls=":")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return _png(fig)


def throughput_vs_concurrency(session: Session) -> bytes | None:
    """Throughput and p99 against the concurrency level, one line per target."""
    trials = session.trials[session.trials["trial_kind"] == "concurrency"].copy()
    if not len(trials):
        return None
    trials["lvl"] = pd.to_numeric(trials["level"], errors="coerce")
    trials["p99"] = pd.to_numeric(trials["p99_ms"], errors="coerce")
    fig = Figure(figsize=(10, 4), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    for target, group in trials.sort_values("lvl").groupby("target"):
        ax1.plot(group["lvl"], group["throughput_rps"], marker="o", label=target)
        ax2.plot(group["lvl"], group["p99"], marker="o", label=target)
    ax1.set(xlabel="concurrency", ylabel="throughput (req/s)", title="Throughput against concurrency")
    ax2.set(xlabel="concurrency", ylabel="p99 latency (ms)", title="p99 against concurrency (closed loop)")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _png(fig)


def _startup_ms(cold_rows: pd.DataFrame) -> pd.Series:
    """Per target, median start + init as the target reported them (process start and model load of a server;
    a function's INIT). Rows with neither are left out."""
    parts = cold_rows[["start_ms", "init_ms"]].apply(pd.to_numeric, errors="coerce")
    known = parts.notna().any(axis=1)
    total = parts.fillna(0.0).sum(axis=1)[known]
    return total.groupby(cold_rows.loc[known, "target"]).median()


def cold_vs_warm(session: Session) -> bytes | None:
    """Per target (log scale): median warm request, median first request after a fresh start, and the median
    startup the target reported (start + init). For a function the first request already contains its INIT."""
    rows = _ok(session.requests)
    cold_rows = rows[rows["cold"]]
    cold = cold_rows.groupby("target")["latency_ms"].median()
    warm = rows[(rows["trial_kind"] == "warm") & ~rows["cold"]].groupby("target")["latency_ms"].median()
    startup = _startup_ms(cold_rows)
    targets = sorted(set(cold.index) | set(warm.index))
    if not len(cold) or not targets:
        return None
    x = np.arange(len(targets))
    fig = Figure(figsize=(7.5, 4))
    ax = fig.subplots()
    series = [
        ("warm request", warm, "#4f81bd"),
        ("first request after a fresh start", cold, "#c0504d"),
        ("startup reported (start + init)", startup, "#f79646"),
    ]
    width = 0.27
    for i, (label, values, color) in enumerate(series):
        heights = [values.get(t, np.nan) for t in targets]
        bars = ax.bar(x + (i - 1) * width, heights, width, label=label, color=color)
        ax.bar_label(bars, labels=["" if not np.isfinite(h) else f"{h:.0f}" for h in heights], fontsize=7)
    ax.set_xticks(x, targets)
    ax.set_yscale("log")
    ax.set_ylabel("milliseconds (median, log scale)")
    ax.set_title("Cold against warm")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    return _png(fig)


def memory_sweep(session: Session, costs: list[TrialCost]) -> bytes | None:
    """Function latency (p50, p99) and cost per 1k against the configured memory; sizes at which the function ran
    out of memory are marked (dotted red)."""
    sweep = session.requests[session.requests["trial_kind"] == "memory"]
    rows = _ok(sweep).copy()
    if not len(rows):
        return None
    rows["mem"] = pd.to_numeric(rows["level"], errors="coerce")
    oom = sweep["error"].astype(str).str.startswith(OUT_OF_MEMORY_ERROR) & (sweep["status"] == "error")
    oom_levels = sorted(pd.to_numeric(sweep.loc[oom, "level"], errors="coerce").dropna().unique())
    fig = Figure(figsize=(10, 4), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    for target, group in rows.groupby("target"):
        stats = group.groupby("mem")["latency_ms"].quantile([0.5, 0.99]).unstack()
        ax1.plot(stats.index, stats[0.5], marker="o", label=f"{target} p50")
        ax1.plot(stats.index, stats[0.99], marker="x", ls="--", label=f"{target} p99")
        mine = sorted(
            (float(c.level), c.cost_per_1k_usd)
            for c in costs
            if c.target == target and c.trial_kind == "memory" and c.cost_per_1k_usd is not None
        )
        if mine:
            ax2.plot([m for m, _ in mine], [v for _, v in mine], marker="o", label=target)
    ax1.set(xlabel="memory (MB)", ylabel="latency (ms)", title="Memory sweep: latency")
    ax2.set(xlabel="memory (MB)", ylabel="USD per 1,000 inferences", title="Memory sweep: cost")
    levels = sorted(set(rows["mem"].dropna().unique()) | set(oom_levels))
    for ax in (ax1, ax2):
        for i, mb in enumerate(oom_levels):
            ax.axvline(mb, color="red", ls=":", lw=1.2, label="out of memory" if i == 0 else None)
        ax.set_xscale("log", base=2)
        ax.set_xticks(levels, [f"{m:g}" for m in levels])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _png(fig)


def cost_per_1k(costs: list[TrialCost]) -> bytes | None:
    """Cost per 1,000 inferences of every priced trial x target x level (horizontal bars, log scale)."""
    priced = [c for c in costs if c.cost_per_1k_usd and c.trial_kind != "cold"]
    if not priced:
        return None
    priced.sort(key=lambda c: (c.target, c.trial, float(c.level) if c.level.replace(".", "", 1).isdigit() else 0))
    labels = [f"{c.target}: {c.trial}" + (f" @{c.level}" if c.level else "") for c in priced]
    fig = Figure(figsize=(7.5, 0.8 + 0.28 * len(priced)))
    ax = fig.subplots()
    colors = ["#4f81bd" if c.model == "server" else "#9bbb59" for c in priced]
    ax.barh(np.arange(len(priced)), [c.cost_per_1k_usd or 0.0 for c in priced], color=colors)  # all priced
    ax.set_yticks(np.arange(len(priced)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel(
        "USD per 1,000 successful inferences (log scale); blue: server over the trial's wall time, green: function",
        fontsize=8,
    )
    ax.set_title("Cost per 1,000 inferences")
    ax.grid(alpha=0.3, axis="x", which="both")
    return _png(fig)


def capacity_chart(session: Session) -> bytes | None:
    """p99 (failures as slower than any success) against each arrival rate the capacity trials tried, per target,
    with each bound and the capacity found marked."""
    from perfdesk.verdict.slo import capacities

    trials = session.trials[session.trials["trial_kind"] == "capacity"].copy()
    caps = capacities(session)
    if not len(trials) or not caps:
        return None
    trials["rate"] = pd.to_numeric(trials["level"], errors="coerce")
    trials["p99"] = pd.to_numeric(trials["p99_ms"], errors="coerce")
    probes = trials[trials["rate"].notna()].sort_values("rate")
    fig = Figure(figsize=(8, 4))
    ax = fig.subplots()
    top = float(np.nanmax(probes["p99"].replace(np.inf, np.nan))) if probes["p99"].notna().any() else 1.0
    for target, group in probes.groupby("target"):
        p99 = group["p99"].replace(np.inf, np.nan)
        (line,) = ax.plot(group["rate"], p99, "o-", label=str(target))
        failed = group[np.isinf(group["p99"])]
        if len(failed):  # failures reached the p99: drawn at the top, as crosses
            ax.plot(failed["rate"], [top * 1.1] * len(failed), "x", color=line.get_color())
        cap = caps.get(str(target))
        if cap is not None:
            ax.axhline(cap.slo_p99_ms, color=line.get_color(), ls=":", lw=1)
            if cap.rps is not None:
                ax.axvline(cap.rps, color=line.get_color(), ls="--", lw=1)
                ax.annotate(
                    f"{target}: {cap.rps:g} req/s",
                    (cap.rps, cap.slo_p99_ms),
                    fontsize=7,
                    xytext=(4, 4),
                    textcoords="offset points",
                )
    ax.set_xlabel("arrival rate (req/s, open loop, Poisson)")
    ax.set_ylabel("p99 latency (ms; x: failures reached it)")
    ax.set_title("Capacity under the SLO: p99 at each rate tried (dotted: the bound, dashed: capacity)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def break_even_chart(result: BreakEven) -> bytes | None:
    """Monthly cost against sustained rate per target, with the crossovers marked."""
    curves = [c for c in result.curves if any(v is not None for v in c.monthly_usd)]
    if not curves:
        return None
    rates = np.array(result.rates_rps)
    fig = Figure(figsize=(8, 4.5))
    ax = fig.subplots()
    for curve in curves:
        values = np.array([np.nan if v is None else v for v in curve.monthly_usd], dtype=float)
        style = "-" if curve.model == "function" else "-."
        ax.plot(
            rates,
            values,
            style,
            drawstyle="steps-post" if curve.model == "server" else "default",
            label=f"{curve.target} ({curve.model})",
        )
    for c in result.crossovers:
        if c.break_even_rps:
            ax.axvline(c.break_even_rps, color="grey", ls=":", lw=1)
            ax.annotate(
                f"{c.server} cheaper than {c.function}\nfrom {c.break_even_rps:.3g} req/s",
                (c.break_even_rps, c.monthly_usd_at_break_even or 1),
                fontsize=7,
                xytext=(4, 4),
                textcoords="offset points",
            )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("sustained request rate (req/s)")
    ax.set_ylabel(f"USD per month ({result.hours_per_month:g} h)")
    equal = any(c.equal_service for c in result.crossovers)
    basis = "at equal service (capacity under the SLO)" if equal else "servers at saturation throughput"
    emulated = [name for name, t in result.targets.items() if t.pricing.emulation]
    caveat = f"; EMULATION: {', '.join(emulated)}" if emulated else ""
    ax.set_title(f"Break-even, {basis} (prices as of {result.prices_as_of}){caveat}", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return _png(fig)
