"""Compare two sessions, and the regression gate of nightly runs.

For every trial x target x level found in both sessions, :func:`compare_sessions` gives the change of p50, p99,
throughput, error rate and cost per 1,000 inferences, each with a test that says whether the change is real:

- p50: Mann-Whitney U (two-sided) on the ok rows' ``latency_ms``;
- p99: a seeded bootstrap of the ratio p99(current) / p99(baseline); its (1 - alpha) interval and a two-sided
  bootstrap p-value (the change is real when the interval excludes 1);
- throughput: Mann-Whitney U on completions per time window (10 to 60 equal windows over each trial);
- error rate: Fisher's exact test on ok / failed counts (cancelled requests left out); change in points;
- cost per 1k: functions, Mann-Whitney U on per-request cost; servers, the throughput test (their cost per
  request is the inverse of throughput). Both sessions are priced with the current session's price table, so a
  cost change is a change in what was measured, not in the table.

:func:`gate` turns a comparison into regressions: a metric regresses when its change crosses the profile's
threshold **and** is significant at ``alpha``. A level that now runs out of memory (rows ending in
``Runtime.OutOfMemory``) where the baseline's did not is a regression whatever the thresholds: the size no longer
works. A level out of memory in both sessions is none.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from perfdesk.controllers.results import OUT_OF_MEMORY_ERROR
from perfdesk.controllers.sections import Thresholds
from perfdesk.verdict.cost import FUNCTION, PriceBook, TrialCost, row_costs, target_pricing, trial_costs
from perfdesk.verdict.session_data import GROUP_KEYS, Session, load_session

METRICS = ("p50_ms", "p99_ms", "throughput_rps", "error_rate_pct", "cost_per_1k_usd")
#: Fewer ok rows than this on either side and a latency / throughput test is not attempted.
MIN_SAMPLES = 5


@dataclass
class MetricChange:
    """One metric of one group, baseline against current. ``change_pct`` is relative (error rate: in points)."""

    metric: str
    baseline: float | None
    current: float | None
    change_pct: float | None
    p_value: float | None
    significant: bool
    test: str
    ci_low: float | None = None  # p99 only: bootstrap interval of the ratio current / baseline
    ci_high: float | None = None


@dataclass
class GroupComparison:
    workload: str
    trial: str
    trial_kind: str
    target: str
    level: str
    n_baseline: int
    n_current: int
    metrics: dict[str, MetricChange]
    #: (requests, of them out of memory) of the level, baseline and current
    out_of_memory_baseline: tuple[int, int] = (0, 0)
    out_of_memory_current: tuple[int, int] = (0, 0)

    @property
    def newly_out_of_memory(self) -> bool:
        """The level runs out of memory now and did not in the baseline."""
        return self.out_of_memory_current[1] > 0 and self.out_of_memory_baseline[1] == 0

    @property
    def label(self) -> str:
        level = f" level {self.level}" if self.level else ""
        workload = f"{self.workload}/" if self.workload else ""
        return f"{workload}{self.trial}{level} on {self.target}"


@dataclass
class Comparison:
    baseline: str
    current: str
    alpha: float
    groups: list[GroupComparison]
    only_baseline: list[str] = field(default_factory=list)  # group labels with no counterpart
    only_current: list[str] = field(default_factory=list)


# -- tests -------------------------------------------------------------------------------------------------------
def mann_whitney_p(a: np.ndarray, b: np.ndarray) -> float | None:
    """Two-sided Mann-Whitney U p-value, or None when either side has fewer than MIN_SAMPLES values."""
    if len(a) < MIN_SAMPLES or len(b) < MIN_SAMPLES:
        return None
    if np.ptp(np.concatenate([a, b])) == 0:
        return 1.0
    return float(stats.mannwhitneyu(a, b, alternative="two-sided").pvalue)


def bootstrap_p99_ratio(
    a: np.ndarray, b: np.ndarray, *, alpha: float, seed: int, n_boot: int = 2000
) -> tuple[float, float, float, float] | None:
    """(ratio, ci_low, ci_high, p) of p99(b) / p99(a): resample each side with replacement ``n_boot`` times.

    The interval is the percentile interval at 1 - alpha; p is twice the smaller share of ratios on either side
    of 1 (at least 1 / n_boot), so p < alpha exactly when the interval excludes 1.
    """
    if len(a) < MIN_SAMPLES or len(b) < MIN_SAMPLES:
        return None
    rng = np.random.default_rng(seed)
    ratios = np.empty(n_boot)
    chunk = max(1, 4_000_000 // max(len(a), len(b)))  # bound memory: chunk x n resampled values at a time
    for start in range(0, n_boot, chunk):
        n = min(chunk, n_boot - start)
        pa = np.quantile(a[rng.integers(0, len(a), size=(n, len(a)))], 0.99, axis=1)
        pb = np.quantile(b[rng.integers(0, len(b), size=(n, len(b)))], 0.99, axis=1)
        ratios[start : start + n] = pb / np.where(pa > 0, pa, np.nan)
    ratios = ratios[np.isfinite(ratios)]
    if not len(ratios):
        return None
    ratio = float(np.quantile(b, 0.99) / np.quantile(a, 0.99)) if np.quantile(a, 0.99) > 0 else math.inf
    low, high = np.quantile(ratios, [alpha / 2, 1 - alpha / 2])
    p = 2 * min(float(np.mean(ratios <= 1.0)), float(np.mean(ratios >= 1.0)))
    return ratio, float(low), float(high), float(min(1.0, max(p, 1.0 / n_boot)))


def window_counts(rows: pd.DataFrame) -> np.ndarray:
    """Ok completions per equal time window over the trial (10 to 60 windows, about one a second)."""
    ok = rows[rows["status"] == "ok"]
    start = rows["intended_send"].fillna(rows["actual_send"]).min()
    end = ok["receive"].max()
    if len(ok) < 2 * MIN_SAMPLES or pd.isna(start) or pd.isna(end) or end <= start:
        return np.array([])
    bins = int(min(60, max(10, math.floor(end - start))))
    counts, _ = np.histogram(ok["receive"].to_numpy(), bins=bins, range=(start, end))
    return counts.astype(float)


def _pct(base: float | None, cur: float | None) -> float | None:
    if base is None or cur is None or not np.isfinite(base) or not np.isfinite(cur) or base == 0:
        return None
    return (cur - base) / base * 100.0


def _throughput(rows: pd.DataFrame, trial_row: pd.Series | None) -> float | None:
    if trial_row is not None and pd.notna(trial_row.get("throughput_rps")):
        return float(trial_row["throughput_rps"])
    start = rows["intended_send"].fillna(rows["actual_send"]).min()
    end = rows["receive"].max()
    ok = int((rows["status"] == "ok").sum())
    return ok / (end - start) if ok and pd.notna(start) and pd.notna(end) and end > start else None


def _error_rate(rows: pd.DataFrame) -> tuple[int, int]:
    counted = rows[rows["status"] != "cancelled"]
    return int((counted["status"] != "ok").sum()), len(counted)


def _out_of_memory(rows: pd.DataFrame) -> tuple[int, int]:
    """(requests, of them out of memory): error rows whose error starts with Runtime.OutOfMemory."""
    oom = (rows["status"] == "error") & rows["error"].astype(str).str.startswith(OUT_OF_MEMORY_ERROR)
    return len(rows), int(oom.sum())


def _lat(rows: pd.DataFrame) -> np.ndarray:
    return rows.loc[rows["status"] == "ok", "latency_ms"].dropna().to_numpy(dtype=float)


def _trial_row(session: Session, key: tuple) -> pd.Series | None:
    if not len(session.trials):
        return None
    match = session.trials
    for col, value in zip(GROUP_KEYS, key):
        match = match[match[col] == value]
    return match.iloc[-1] if len(match) else None


def _as_session(value: str | Path | Session) -> Session:
    return value if isinstance(value, Session) else load_session(value)


def compare_sessions(
    baseline: str | Path | Session,
    current: str | Path | Session,
    *,
    alpha: float = 0.01,
    seed: int = 0,
    n_boot: int = 2000,
) -> Comparison:
    """Compare ``current`` against ``baseline`` group by group (see the module docstring for the tests)."""
    base, cur = _as_session(baseline), _as_session(current)
    book = PriceBook.for_session(cur)
    costs: dict[str, dict[tuple, TrialCost]] = {}
    for name, session in (("base", base), ("cur", cur)):
        costs[name] = {(c.workload, c.trial, c.target, c.level): c for c in trial_costs(session, book)}
    base_groups = dict(iter(base.requests.groupby(GROUP_KEYS, sort=False)))
    cur_groups = dict(iter(cur.requests.groupby(GROUP_KEYS, sort=False)))
    result = Comparison(baseline=str(base.path), current=str(cur.path), alpha=alpha, groups=[])
    label = lambda k: f"{k[1]} level {k[3]} on {k[2]}" if k[3] else f"{k[1]} on {k[2]}"  # noqa: E731
    result.only_baseline = [label(k) for k in base_groups if k not in cur_groups]
    result.only_current = [label(k) for k in cur_groups if k not in base_groups]
    for index, (key, cur_rows) in enumerate(cur_groups.items()):
        if key not in base_groups:
            continue
        base_rows = base_groups[key]
        a, b = _lat(base_rows), _lat(cur_rows)
        metrics: dict[str, MetricChange] = {}

        p = mann_whitney_p(a, b)
        p50a = float(np.median(a)) if len(a) else None
        p50b = float(np.median(b)) if len(b) else None
        metrics["p50_ms"] = MetricChange(
            "p50_ms", p50a, p50b, _pct(p50a, p50b), p, p is not None and p < alpha, "Mann-Whitney U"
        )

        p99a = float(np.quantile(a, 0.99)) if len(a) else None
        p99b = float(np.quantile(b, 0.99)) if len(b) else None
        boot = bootstrap_p99_ratio(a, b, alpha=alpha, seed=seed + index, n_boot=n_boot)
        change = metrics["p99_ms"] = MetricChange(
            "p99_ms", p99a, p99b, _pct(p99a, p99b), None, False, "bootstrap p99 ratio"
        )
        if boot is not None:
            _, change.ci_low, change.ci_high, change.p_value = boot
            change.significant = change.p_value < alpha

        tput_p = mann_whitney_p(window_counts(base_rows), window_counts(cur_rows))
        ta, tb = _throughput(base_rows, _trial_row(base, key)), _throughput(cur_rows, _trial_row(cur, key))
        metrics["throughput_rps"] = MetricChange(
            "throughput_rps",
            ta,
            tb,
            _pct(ta, tb),
            tput_p,
            tput_p is not None and tput_p < alpha,
            "Mann-Whitney U on completions per window",
        )

        (ea, na), (eb, nb) = _error_rate(base_rows), _error_rate(cur_rows)
        ra = ea / na * 100 if na else None
        rb = eb / nb * 100 if nb else None
        fisher = float(stats.fisher_exact([[ea, na - ea], [eb, nb - eb]]).pvalue) if na and nb else None
        metrics["error_rate_pct"] = MetricChange(
            "error_rate_pct",
            ra,
            rb,
            None if ra is None or rb is None else rb - ra,
            fisher,
            fisher is not None and fisher < alpha,
            "Fisher exact (change in points)",
        )

        ca, cb = costs["base"].get(key), costs["cur"].get(key)
        va = ca.cost_per_1k_usd if ca else None
        vb = cb.cost_per_1k_usd if cb else None
        pricing = target_pricing(cur, key[2], book)
        if pricing.model == FUNCTION and pricing.priced:
            ok_a, ok_b = base_rows[base_rows["status"] == "ok"], cur_rows[cur_rows["status"] == "ok"]
            cost_p = mann_whitney_p(
                row_costs(ok_a, pricing, book.bill_init)["cost_usd"].to_numpy(),
                row_costs(ok_b, pricing, book.bill_init)["cost_usd"].to_numpy(),
            )
            test = "Mann-Whitney U on per-request cost"
        else:
            cost_p, test = tput_p, "throughput test (server cost = price / throughput)"
        metrics["cost_per_1k_usd"] = MetricChange(
            "cost_per_1k_usd",
            va,
            vb,
            _pct(va, vb),
            cost_p,
            cost_p is not None and cost_p < alpha and va is not None,
            test,
        )

        result.groups.append(
            GroupComparison(
                workload=key[0],
                trial=key[1],
                trial_kind=str(cur_rows["trial_kind"].iloc[0]),
                target=key[2],
                level=key[3],
                n_baseline=len(a),
                n_current=len(b),
                metrics=metrics,
                out_of_memory_baseline=_out_of_memory(base_rows),
                out_of_memory_current=_out_of_memory(cur_rows),
            )
        )
    return result


# -- the regression gate -----------------------------------------------------------------------------------------
#: threshold field -> (metric, direction that is worse: +1 up, -1 down)
_CHECKS = {
    "p50_increase_pct": ("p50_ms", 1),
    "p99_increase_pct": ("p99_ms", 1),
    "throughput_drop_pct": ("throughput_rps", -1),
    "error_rate_increase_pct": ("error_rate_pct", 1),
    "cost_increase_pct": ("cost_per_1k_usd", 1),
}


@dataclass
class Regression:
    workload: str
    trial: str
    target: str
    level: str
    metric: str
    baseline: float
    current: float
    change_pct: float  # relative %, or points for the error rate
    threshold_pct: float
    p_value: float
    test: str
    detail: str = ""  # out of memory: the counts behind it, for people


@dataclass
class GateResult:
    regressions: list[Regression]
    checked: int  # group x metric checks that could be evaluated
    alpha: float = 0.01
    baseline: str = ""
    current: str = ""
    not_compared: list[str] = field(default_factory=list)  # baseline groups absent from the current session

    @property
    def passed(self) -> bool:
        return not self.regressions


def gate_comparison(comparison: Comparison, thresholds: Thresholds) -> GateResult:
    """Apply thresholds to a comparison (see :func:`gate`)."""
    result = GateResult(
        regressions=[],
        checked=0,
        alpha=thresholds.alpha,
        baseline=comparison.baseline,
        current=comparison.current,
        not_compared=list(comparison.only_baseline),
    )
    for group in comparison.groups:
        result.checked += 1
        if group.newly_out_of_memory:
            result.regressions.append(_out_of_memory_regression(group))
            continue  # its latency and error figures only restate it
        for name, (metric, sign) in _CHECKS.items():
            limit = getattr(thresholds, name)
            change = group.metrics.get(metric)
            if limit is None or change is None or change.change_pct is None or change.p_value is None:
                continue
            if change.baseline is None or change.current is None:  # a change has both values
                continue
            result.checked += 1
            if sign * change.change_pct > limit and change.p_value < thresholds.alpha:
                result.regressions.append(
                    Regression(
                        workload=group.workload,
                        trial=group.trial,
                        target=group.target,
                        level=group.level,
                        metric=metric,
                        baseline=float(change.baseline),
                        current=float(change.current),
                        change_pct=float(change.change_pct),
                        threshold_pct=float(limit),
                        p_value=float(change.p_value),
                        test=change.test,
                    )
                )
    return result


def _out_of_memory_regression(group: GroupComparison) -> Regression:
    (n_base, oom_base), (n_cur, oom_cur) = group.out_of_memory_baseline, group.out_of_memory_current
    share = lambda oom, n: 100.0 * oom / n if n else 0.0  # noqa: E731
    return Regression(
        workload=group.workload,
        trial=group.trial,
        target=group.target,
        level=group.level,
        metric="out_of_memory",
        baseline=share(oom_base, n_base),
        current=share(oom_cur, n_cur),
        change_pct=share(oom_cur, n_cur) - share(oom_base, n_base),
        threshold_pct=0.0,
        p_value=math.nan,  # not a statistical change: the size stopped working
        test=f"{OUT_OF_MEMORY_ERROR} in the rows",
        detail=f"{oom_base} of {n_base} requests out of memory in the baseline, {oom_cur} of {n_cur} now",
    )


def gate(
    current_dir: str | Path | Session,
    baseline_dir: str | Path | Session,
    thresholds: Thresholds | dict[str, Any] | None = None,
    *,
    seed: int = 0,
) -> GateResult:
    """Did ``current_dir`` regress against ``baseline_dir``?

    ``thresholds``: a :class:`Thresholds`, a dict like the profile's ``[thresholds]`` section, or None to take
    the current session's profile section (or the defaults when it has none). A regression needs both the
    threshold crossed and the change significant at ``alpha``.
    """
    current = _as_session(current_dir)
    if thresholds is None:
        thresholds = current.profile.get("thresholds")
    limits = Thresholds.resolve(thresholds)
    comparison = compare_sessions(baseline_dir, current, alpha=limits.alpha, seed=seed)
    return gate_comparison(comparison, limits)


_UNITS = {
    "p50_ms": ("p50 latency", "{:.1f} ms"),
    "p99_ms": ("p99 latency", "{:.1f} ms"),
    "throughput_rps": ("throughput", "{:.2f} req/s"),
    "error_rate_pct": ("error rate", "{:.2f}%"),
    "cost_per_1k_usd": ("cost per 1k inferences", "${:.5f}"),
}


def format_regressions(result: GateResult) -> list[str]:
    """One plain line per regression, naming trial, level, target, metric, both values, change and p-value."""
    lines = []
    for r in result.regressions:
        what, fmt = _UNITS.get(r.metric, (r.metric, "{:g}"))
        level = f" level {r.level}" if r.level else ""
        workload = f"{r.workload}/" if r.workload else ""
        if r.metric == "out_of_memory":
            lines.append(
                f"REGRESSION out of memory: {r.target!r} in trial {workload}{r.trial}{level} now runs out of memory "
                f"({OUT_OF_MEMORY_ERROR}; {r.detail})"
            )
            continue
        unit = " points" if r.metric == "error_rate_pct" else "%"
        lines.append(
            f"REGRESSION {what} of {r.target!r} in trial {workload}{r.trial}{level}: "
            f"{fmt.format(r.baseline)} -> {fmt.format(r.current)} ({r.change_pct:+.1f}{unit}, "
            f"threshold {r.threshold_pct:g}{unit}, p={r.p_value:.2g} < {result.alpha:g}, {r.test})"
        )
    return lines
