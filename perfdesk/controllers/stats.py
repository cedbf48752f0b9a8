"""Statistics over request rows: percentiles from all samples, the mean with a t-based 95% confidence interval.

Every summary is derived from request rows (dicts in REQUEST_COLUMNS or a pandas DataFrame of requests.csv); nothing
is averaged from averages.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from perfdesk.controllers.results import CANCELLED, DROPPED, ERROR, OK, THROTTLED, TIMEOUT

PERCENTILES = {"p50_ms": 50, "p90_ms": 90, "p95_ms": 95, "p99_ms": 99, "p999_ms": 99.9}


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between order statistics; NaN when empty."""
    if len(values) == 0:
        return math.nan
    return float(np.percentile(np.asarray(values, dtype=float), q))


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean and its two-sided confidence interval from Student's t (NaN bounds with fewer than two samples)."""
    arr = np.asarray(values, dtype=float)
    n = arr.size
    if n == 0:
        return math.nan, math.nan, math.nan
    mean = float(arr.mean())
    if n < 2:
        return mean, math.nan, math.nan
    from scipy.stats import t

    half = float(t.ppf(0.5 + confidence / 2, n - 1) * arr.std(ddof=1) / math.sqrt(n))
    return mean, mean - half, mean + half


def num(v: Any) -> float | None:
    """A float from a CSV/row cell, or None for blanks and NaN."""
    if v is None or v == "":
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def summarize(rows: Iterable[dict], *, late_threshold_ms: float = 5.0) -> dict[str, Any]:
    """Summary figures of one trial x target x level from its request rows (trials.csv columns).

    Latency percentiles and the mean use successful requests only; throughput is successful requests per second
    over the span from the first intended send to the last receive.
    """
    rows = list(rows)
    ok = [r for r in rows if r.get("status") == OK]
    lat = [float(r["latency_ms"]) for r in ok]
    status_count = {
        s: sum(1 for r in rows if r.get("status") == s) for s in (ERROR, THROTTLED, TIMEOUT, CANCELLED, DROPPED)
    }
    out: dict[str, Any] = {
        "count": len(rows),
        "ok": len(ok),
        "errors": status_count[ERROR],
        "throttled": status_count[THROTTLED],
        "timeouts": status_count[TIMEOUT],
        "cancelled": status_count[CANCELLED],
        "dropped": status_count[DROPPED],
        "late_sends": sum(1 for r in rows if (num(r.get("late_ms")) or 0.0) > late_threshold_ms),
        "cold_starts": sum(1 for r in rows if str(r.get("cold")) in ("True", "true", "1")),
    }
    sent = [num(r.get("intended_send")) for r in rows]
    recv = [num(r.get("receive")) for r in rows]
    sent = [s for s in sent if s is not None]
    recv = [s for s in recv if s is not None]
    if sent and recv:
        out["started"], out["finished"] = min(sent), max(recv)
        duration = max(recv) - min(sent)
    else:
        out["started"] = out["finished"] = None
        duration = 0.0
    out["duration_s"] = duration
    out["throughput_rps"] = len(ok) / duration if duration > 0 else math.nan
    batch = [num(r.get("batch_size")) or 1.0 for r in ok]
    out["images_per_s"] = sum(batch) / duration if duration > 0 else math.nan
    for col, q in PERCENTILES.items():
        out[col] = percentile(lat, q)
    out["max_ms"] = max(lat) if lat else math.nan
    out["mean_ms"], out["mean_ci_low_ms"], out["mean_ci_high_ms"] = mean_ci(lat)
    inf = [v for v in (num(r.get("server_inference_ms")) for r in ok) if v is not None]
    out["server_inference_p50_ms"] = percentile(inf, 50)
    init = [v for v in (num(r.get("init_ms")) for r in rows) if v is not None]
    out["init_p50_ms"] = percentile(init, 50)
    restore = [v for v in (num(r.get("restore_ms")) for r in rows) if v is not None]
    out["restore_p50_ms"] = percentile(restore, 50)  # SnapStart: cold starts are restores, with no init
    billed = [v for v in (num(r.get("billed_ms")) for r in ok) if v is not None]
    out["billed_ms_mean"] = float(np.mean(billed)) if billed else math.nan
    mem = [v for v in (num(r.get("max_memory_used_mb")) for r in rows) if v is not None]
    out["max_memory_used_mb"] = max(mem) if mem else math.nan
    return out


def summarize_frame(requests, *, late_threshold_ms: float = 5.0):
    """Recompute trials.csv from a requests.csv DataFrame (one row per workload x trial x target x level)."""
    import pandas as pd

    keys = ["session", "workload", "trial", "trial_kind", "target", "target_kind", "level"]
    out = []
    for key, group in requests.groupby(keys, sort=False, dropna=False):
        row = dict(zip(keys, key))
        row.update(summarize(group.to_dict("records"), late_threshold_ms=late_threshold_ms))
        out.append(row)
    return pd.DataFrame(out)
