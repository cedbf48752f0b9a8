"""What the charts show, kept bounded and computed from rows and summaries (no Textual here).

A :class:`ChartData` is fed either live (request rows and trial summaries drained from the bus) or from a saved
session's CSVs (:meth:`ChartData.from_session`). The charts pane only reads its series methods, so live and saved
sessions are drawn by the same code. ``version`` changes whenever the data changes; the pane redraws only then.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from pathlib import Path

import numpy as np

MAX_TIME_POINTS = 3_000  # latency-over-time points kept per target
MAX_CDF_SAMPLES = 20_000  # latencies kept per target for the distribution
PLOT_POINTS = 300  # points actually drawn per series (plotext is pure Python: keep redraws cheap)


from perfdesk.controllers.stats import num  # noqa: E402  (one parser of CSV cells for the core and the desk)


def _finite(v) -> float | None:
    """A number to draw: None for blanks and for inf (a percentile that failures reached: no point to plot)."""
    f = num(v)
    return None if f is None or np.isinf(f) else f


def _thin(xs: list, ys: list, n: int = PLOT_POINTS) -> tuple[list, list]:
    if len(xs) <= n:
        return list(xs), list(ys)
    idx = np.linspace(0, len(xs) - 1, n).astype(int)
    return [xs[i] for i in idx], [ys[i] for i in idx]


class ChartData:
    """Bounded series for the charts: latency over time and its distribution per target, plus trial summaries."""

    def __init__(self) -> None:
        self.t0: float | None = None
        self.latency: dict[str, deque[tuple[float, float]]] = {}
        self.samples: dict[str, deque[float]] = {}
        self.sample_trial: dict[str, str] = {}  # the trial whose latencies the distribution shows, per target
        self.summaries: list[dict] = []
        self.version = 0

    # -- feeding ----------------------------------------------------------------------------------------------
    def add_rows(self, rows: Iterable[dict]) -> None:
        changed = False
        for row in rows:
            if row.get("status") != "ok":
                continue
            lat, when = num(row.get("latency_ms")), num(row.get("receive"))
            if lat is None or when is None:
                continue
            target = str(row.get("target", ""))
            if self.t0 is None:
                self.t0 = when
            self.latency.setdefault(target, deque(maxlen=MAX_TIME_POINTS)).append((when - self.t0, lat))
            trial = f"{row.get('trial', '')}"
            samples = self.samples.setdefault(target, deque(maxlen=MAX_CDF_SAMPLES))
            if self.sample_trial.get(target) != trial:
                samples.clear()  # the distribution is of the latest trial on that target
                self.sample_trial[target] = trial
            samples.append(lat)
            changed = True
        if changed:
            self.version += 1

    def add_summaries(self, summaries: Iterable[dict]) -> None:
        new = list(summaries)
        if new:
            self.summaries.extend(new)
            self.version += 1

    @classmethod
    def from_frames(cls, requests, trials) -> ChartData:
        """From pandas frames of requests.csv and trials.csv (either may be None)."""
        data = cls()
        if requests is not None and len(requests):
            frame = requests.sort_values("receive") if "receive" in requests else requests
            data.add_rows(frame.to_dict("records"))
        if trials is not None and len(trials):
            data.add_summaries(trials.to_dict("records"))
        return data

    @classmethod
    def from_session(cls, path: Path) -> ChartData:
        requests, trials = read_session(path)
        return cls.from_frames(requests, trials)

    # -- series -----------------------------------------------------------------------------------------------
    def latency_series(self) -> dict[str, tuple[list[float], list[float]]]:
        out = {}
        for target, points in self.latency.items():
            xs = [p[0] for p in points]
            ys = [p[1] for p in points]
            out[target] = _thin(xs, ys)
        return out

    def cdf_series(self) -> dict[str, tuple[list[float], list[float]]]:
        """Latency (x) against the fraction of requests at or below it (y, percent), per target."""
        out = {}
        for target, samples in self.samples.items():
            if not samples:
                continue
            qs = np.linspace(0, 100, 101)
            out[target] = (
                [float(v) for v in np.percentile(np.asarray(samples, dtype=float), qs)],
                [float(q) for q in qs],
            )
        return out

    def _by_kind(self, kind: str) -> list[dict]:
        return [s for s in self.summaries if s.get("trial_kind") == kind and (num(s.get("ok")) or 0) > 0]

    def throughput_series(self) -> dict[str, tuple[list[float], list[float]]]:
        """Throughput (requests/s) against concurrency level, per target (concurrency trials)."""
        series: dict[str, dict[float, float]] = {}
        for s in self._by_kind("concurrency"):
            level, rps = num(s.get("level")), num(s.get("throughput_rps"))
            if level is not None and rps is not None:
                series.setdefault(str(s["target"]), {})[level] = rps  # a rerun replaces the earlier figure
        return {t: (sorted(v), [v[k] for k in sorted(v)]) for t, v in series.items()}

    def cold_warm(self) -> dict[str, tuple[float | None, float | None]]:
        """Median latency of cold starts and of warm requests, per target (ms)."""
        out: dict[str, list[float | None]] = {}
        for kind, i in (("cold", 0), ("warm", 1)):
            for s in self._by_kind(kind):
                out.setdefault(str(s["target"]), [None, None])[i] = _finite(s.get("p50_ms"))
        return {t: (v[0], v[1]) for t, v in out.items()}

    def memory_series(self) -> dict[str, tuple[list[float], list[float], list[float | None]]]:
        """Function memory sweep: memory (MB) against p50 latency and, when known, cost per million requests."""
        cost_fn = _cost_function()
        series: dict[str, dict[float, tuple[float, float | None]]] = {}
        for s in self._by_kind("memory"):
            mb, p50 = num(s.get("level")), _finite(s.get("p50_ms"))
            if mb is None or p50 is None:
                continue
            cost = None
            billed = num(s.get("billed_ms_mean"))
            if cost_fn is not None and billed is not None:
                try:
                    cost = cost_fn(mb, billed)
                except Exception:  # noqa: BLE001 - a cost model that cannot price this size: show latency only
                    cost = None
            series.setdefault(str(s["target"]), {})[mb] = (p50, cost)
        out = {}
        for t, v in series.items():
            keys = sorted(v)
            out[t] = (keys, [v[k][0] for k in keys], [v[k][1] for k in keys])
        return out


def _cost_function():
    """The cost model's price of one request, ``(memory_mb, billed_ms) -> dollars per million``, if it exists."""
    try:
        from perfdesk.verdict import cost
    except ImportError:
        return None
    fn = getattr(cost, "lambda_cost_per_million", None)
    return fn if callable(fn) else None


def read_session(path: Path):
    """(requests, trials) frames of a session folder; trials is None when the file is absent or empty."""
    import pandas as pd

    path = Path(path)
    requests_path = path / "requests.csv"
    if not requests_path.exists():
        raise FileNotFoundError(f"{path}: not a session folder (no requests.csv)")
    requests = pd.read_csv(requests_path)
    trials = None
    if (path / "trials.csv").exists():
        try:
            trials = pd.read_csv(path / "trials.csv")
        except pd.errors.EmptyDataError:
            trials = None
    return requests, trials
