"""The report's charts of the traffic verdict: the traffic and a month of it per target, and the cold starts side
by side. Each returns PNG bytes, or None when there is nothing to draw (Matplotlib's object API, Agg, no pyplot)."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from perfdesk.controllers.traffic import arrivals, minute_counts
from perfdesk.verdict.coldstarts import PHASES, ColdStartBreakdown
from perfdesk.verdict.report.charts import _png
from perfdesk.verdict.traffic import TrafficVerdict, session_traffic

_COLORS = ["#8064a2", "#4bacc6", "#f79646", "#9bbb59", "#4f81bd", "#c0504d", "#7f7f7f"]


def cold_start_phases(items: list[ColdStartBreakdown]) -> bytes | None:
    """One stacked bar per target: its cold start's phases (median ms), functions and servers on one axis."""
    if not items:
        return None
    fig = Figure(figsize=(8, 1.2 + 0.5 * len(items)))
    ax = fig.subplots()
    y = np.arange(len(items))
    left = np.zeros(len(items))
    for phase, color in zip(PHASES, _COLORS):
        widths = np.array([(b.phases.get(phase) or 0.0) / 1000.0 for b in items])
        if widths.any():
            ax.barh(y, widths, left=left, color=color, label=phase)
            left += widths
    ax.set_yticks(y, [f"{b.target} ({b.model})" for b in items], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("seconds (median of each phase over the target's cold requests)")
    ax.set_title("Cold start, phase by phase")
    ax.grid(alpha=0.3, axis="x")
    ax.legend(fontsize=7, loc="lower right")
    return _png(fig)


def traffic_month(session, verdict: TrafficVerdict | None) -> bytes | None:
    """Left: the traffic's requests per minute over its period. Right: a month of it per target (USD), p99 noted."""
    if verdict is None:
        return None
    traffic = session_traffic(session)
    fig = Figure(figsize=(10, 3.8), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    if traffic is not None:
        counts = minute_counts(arrivals(traffic), traffic.period_s)
        ax1.plot(np.arange(len(counts)) / 60.0, counts / 60.0, lw=0.8)
    ax1.set_xlabel("hour of the period")
    ax1.set_ylabel("req/s (per-minute mean)")
    ax1.set_title(f"Your traffic: {verdict.traffic}", fontsize=9)
    ax1.grid(alpha=0.3)
    priced = [p for p in verdict.projections if p.monthly_usd is not None]
    if priced:
        x = np.arange(len(priced))
        ax2.bar(
            x,
            [p.monthly_usd or 0.0 for p in priced],
            color=["#9bbb59" if p.model == "function" else "#4f81bd" for p in priced],
        )
        for i, p in enumerate(priced):
            p99 = "n/a" if p.p99_ms is None else ("inf" if not np.isfinite(p.p99_ms) else f"{p.p99_ms:,.0f} ms")
            ax2.annotate(
                f"p99 {p99}",
                (i, p.monthly_usd or 0.0),
                ha="center",
                fontsize=7,
                xytext=(0, 3),
                textcoords="offset points",
            )
        ax2.set_xticks(x, [p.target for p in priced], fontsize=8)
    ax2.set_ylabel(f"USD per month ({verdict.hours_per_month:g} h)")
    ax2.set_title("A month of it (green: function, blue: server fleet)", fontsize=9)
    ax2.grid(alpha=0.3, axis="y")
    return _png(fig)
