"""Statistics over request rows: percentiles from all samples, failures included; the mean with a t-based 95%
confidence interval; percentiles with seeded bootstrap intervals; how many samples a percentile needs.

Every summary is derived from request rows (dicts in REQUEST_COLUMNS or a pandas DataFrame of requests.csv); nothing
is averaged from averages. A request that was not served (an error, a timeout, a throttle, a dropped frame) counts
in the latency percentiles as worse than any success (+inf): a p99 over a level where more than 1% failed is inf,
never the p99 of the survivors. The mean is of successes only (it has no value for a failure) and says so.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from perfdesk.controllers.results import CANCELLED, DROPPED, ERROR, OK, THROTTLED, TIMEOUT

PERCENTILES = {"p50_ms": 50, "p90_ms": 90, "p95_ms": 95, "p99_ms": 99, "p999_ms": 99.9}
#: Request statuses that count in latency percentiles as a failure (worse than any success). Cancelled requests
#: (the user stopped the run) never completed and count nowhere.
FAILED = (ERROR, TIMEOUT, THROTTLED, DROPPED)
#: Confidence of :func:`min_samples` (MLPerf's early-stopping rule uses 99%).
SAMPLE_CONFIDENCE = 0.99


def _interpolate(ordered: np.ndarray, q: float) -> np.ndarray:
    """Linear interpolation at the q-th percentile along the last axis of sorted samples; an infinite neighbour
    that the position reaches gives inf (never inf * 0 = NaN)."""
    n = ordered.shape[-1]
    h = (n - 1) * q / 100.0
    lo, hi = int(math.floor(h)), int(math.ceil(h))
    a, b = ordered[..., lo], ordered[..., hi]
    frac = h - lo
    if frac == 0.0:
        return a
    with np.errstate(invalid="ignore"):
        out = a + (b - a) * frac
    return np.where(np.isinf(b), np.inf, out)


def percentile(values: Sequence[float] | np.ndarray, q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between order statistics (numpy's default); +inf
    samples (failures) sort above every success; NaN when empty."""
    if len(values) == 0:
        return math.nan
    return float(_interpolate(np.sort(np.asarray(values, dtype=float)), q))


def min_samples(q: float, confidence: float = SAMPLE_CONFIDENCE) -> int:
    """The fewest samples for which the q-th percentile (0..100) means something: MLPerf's early-stopping minimum,
    the smallest n with (q/100)^n <= 1 - confidence (with none of n samples above a latency, the q-th percentile is
    below it at that confidence). At 99%: p50 7, p90 44, p95 90, p99 459, p99.9 4,603 samples. (MLPerf's full
    query counts, 99% confidence and a margin of (1 - q) / 20, are larger still: 270,336 for p99.)"""
    p = q / 100.0
    if p <= 0.0:
        return 1
    return max(1, math.ceil(math.log(1.0 - confidence) / math.log(p) - 1e-9))


def enough_samples(n: int, q: float) -> bool:
    """Does a percentile from ``n`` samples stand (see :func:`min_samples`)? Front ends mark it when not."""
    return n >= min_samples(q)


def bootstrap_percentile_ci(
    values: Sequence[float] | np.ndarray, q: float, *, confidence: float = 0.95, n_boot: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """Seeded percentile-bootstrap interval of the q-th percentile (failures as +inf stay in every resample, so an
    interval can be open upwards: inf). NaN bounds with fewer than two samples."""
    arr = np.asarray(values, dtype=float)
    n = arr.size
    if n < 2:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    chunk = max(1, min(n_boot, 4_000_000 // n))  # bound the memory of one resample block
    estimates = []
    done = 0
    while done < n_boot:
        k = min(chunk, n_boot - done)
        h = (n - 1) * q / 100.0
        kth = sorted({int(math.floor(h)), int(math.ceil(h))})
        # only the two order statistics around the position matter: partition, not sort
        block = np.partition(arr[rng.integers(0, n, size=(k, n))], kth, axis=1)
        estimates.append(_interpolate(block, q))
        done += k
    est = np.sort(np.concatenate(estimates))
    tail = (1.0 - confidence) / 2.0 * 100.0
    return float(_interpolate(est, tail)), float(_interpolate(est, 100.0 - tail))


def latency_samples(rows: Sequence[dict]) -> np.ndarray:
    """Latency of every request that counts in percentiles: successes as measured, failures as +inf."""
    out = []
    for r in rows:
        status = r.get("status")
        if status == OK:
            v = num(r.get("latency_ms"))
            if v is not None:
                out.append(v)
        elif status in FAILED:
            out.append(math.inf)
    return np.asarray(out, dtype=float)


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


def _is_true(value: Any) -> bool:
    return str(value) in ("True", "true", "1", "1.0")


def summarize(rows: Iterable[dict], *, late_threshold_ms: float = 5.0) -> dict[str, Any]:
    """Summary figures of one trial x target x level from its request rows (trials.csv columns).

    Latency percentiles count every request that was served or failed (failures as +inf, see the module), with
    seeded bootstrap intervals for p50 and p99; ``latency_samples`` says how many samples they rest on and
    ``failed`` how many of those failed. The mean, its interval and ``max_ms`` are of successes only. Where a level
    mixes cold and warm requests, ``warm_p50_ms``/``warm_p99_ms`` and ``cold_p50_ms`` report them apart (warm: the
    successful warm requests and every failure, as above). Throughput is successful requests per second over the
    span from the first intended send to the last receive.
    """
    rows = list(rows)
    ok = [r for r in rows if r.get("status") == OK]
    lat = [float(r["latency_ms"]) for r in ok]
    samples = latency_samples(rows)
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
        "cold_starts": sum(1 for r in rows if _is_true(r.get("cold"))),
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
    out["latency_samples"] = int(samples.size)
    out["failed"] = int(np.isinf(samples).sum())
    for col, q in PERCENTILES.items():
        out[col] = percentile(samples, q)
    for q in (50, 99):
        out[f"p{q}_ci_low_ms"], out[f"p{q}_ci_high_ms"] = bootstrap_percentile_ci(samples, q)
    cold = [_is_true(r.get("cold")) for r in rows]
    out["warm_p50_ms"] = out["warm_p99_ms"] = out["cold_p50_ms"] = math.nan
    if any(cold) and not all(cold):
        warm_samples = latency_samples([r for r, c in zip(rows, cold) if not c])
        out["warm_p50_ms"], out["warm_p99_ms"] = percentile(warm_samples, 50), percentile(warm_samples, 99)
        out["cold_p50_ms"] = percentile(latency_samples([r for r, c in zip(rows, cold) if c]), 50)
    out["max_ms"] = max(lat) if lat else math.nan
    out["mean_ms"], out["mean_ci_low_ms"], out["mean_ci_high_ms"] = mean_ci(lat)
    inf = [v for v in (num(r.get("server_inference_ms")) for r in ok) if v is not None]
    out["server_inference_p50_ms"] = percentile(inf, 50)
    init = [v for v in (num(r.get("init_ms")) for r in rows) if v is not None]
    out["init_p50_ms"] = percentile(init, 50)
    # a function's invoke overhead: the client's time less the function's Duration (REPORT, or the handler's own)
    overhead = [
        float(r["service_ms"]) - d
        for r in ok
        if (d := num(r.get("duration_ms"))) is not None and num(r.get("service_ms")) is not None
    ]
    out["invoke_overhead_p50_ms"] = percentile(overhead, 50)
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


#: The mark after a percentile that rests on fewer samples than :func:`min_samples` (front ends explain it).
FEW_SAMPLES_MARK = "*"


def percentile_text(value: Any, samples: Any, q: float, digits: int = 1) -> str:
    """A percentile for people: '12.3'; '12.3*' when ``samples`` is under :func:`min_samples` (or unknown, for
    sessions written before the count was recorded); 'failed' when failures reach it (inf); '-' when empty."""
    v = num(value)
    if v is None:
        return "-"
    if math.isinf(v):
        return "failed"
    n = num(samples)
    mark = "" if n is not None and (math.isinf(n) or enough_samples(int(n), q)) else FEW_SAMPLES_MARK
    return f"{v:.{digits}f}{mark}"


def few_samples_caption() -> str:
    """What :data:`FEW_SAMPLES_MARK` means, in one line."""
    need = ", ".join(f"p{q:g} {min_samples(q):,}" for q in (50, 90, 99, 99.9))
    return (
        f"{FEW_SAMPLES_MARK} fewer samples than MLPerf's early-stopping minimum for that percentile ({need}); "
        "'failed': failed requests reach that percentile (they count as slower than any success)"
    )
