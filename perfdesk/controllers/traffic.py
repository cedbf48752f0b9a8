"""The profile's ``[traffic]`` section: the traffic a user expects, as arrival times over one period.

Patterns: ``constant`` (a steady rate, Poisson or evenly spaced), ``diurnal`` (a daily cycle whose peak hour and
peak-to-trough ratio are given), ``bursty`` (a base rate with bursts at random times), and ``trace``: a file of
per-minute counts in the format of Azure's public Functions trace 2019 (``invocations_per_function_md.anon.d01.csv``:
``HashOwner,HashApp,HashFunction,Trigger,1,...,1440``, one row per function, one column per minute of the day) or a
file of arrival timestamps (seconds, one a line, or a CSV column ``timestamp``/``time``/``end_timestamp``).

The period is a day for the synthetic patterns and for a per-minute trace (its minutes), the span of the timestamps
for a timestamp file. :func:`arrivals` turns the section into send offsets (seconds from the period's start), seeded:
the same profile gives the same arrivals. A ``replay`` trial sends a window of them, time-compressed; the verdict
tiles the period over a month to project its cost (:mod:`perfdesk.verdict.traffic`).

``profiles/traces/sample_invocations_per_function.csv`` is a small synthetic trace in the Azure format (made up by
``scripts/make_sample_trace.py``, not taken from Azure's data).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationInfo, field_validator, model_validator

from perfdesk.controllers.workload import check_path

DAY_S = 86400.0
#: The first columns of the Azure Functions trace 2019's invocation files, before the minute columns.
AZURE_KEYS = ("HashOwner", "HashApp", "HashFunction", "Trigger")
TIMESTAMP_COLUMNS = ("timestamp", "time", "end_timestamp", "arrival", "t")


class TraceError(ValueError):
    """A trace file that cannot be read; the message names the file and the line."""


def read_azure_counts(path: str | Path, function: str | None = None) -> tuple[np.ndarray, int]:
    """Per-minute invocation counts of an Azure Functions trace 2019 file: the row whose HashFunction is (or starts
    with) ``function``, else every row summed. Returns (counts per minute, how many rows were summed)."""
    path = Path(path)
    total: np.ndarray | None = None
    rows = 0
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            raise TraceError(f"{path}: empty file")
        if tuple(h.strip() for h in header[:4]) != AZURE_KEYS:
            raise TraceError(
                f"{path}:1: not the Azure Functions trace format: the header must start with {','.join(AZURE_KEYS)}"
            )
        minutes = header[4:]
        if not minutes or [m.strip() for m in minutes] != [str(i) for i in range(1, len(minutes) + 1)]:
            raise TraceError(f"{path}:1: the minute columns must be 1, 2, ... (the trace has 1..1440)")
        width = len(header)
        for lineno, row in enumerate(reader, start=2):
            if not row or not any(c.strip() for c in row):
                continue
            if len(row) != width:
                raise TraceError(f"{path}:{lineno}: {len(row)} columns, the header has {width}")
            if function is not None and not row[2].startswith(function):
                continue
            try:
                counts = np.array([float(c) if c.strip() else 0.0 for c in row[4:]])
            except ValueError as exc:
                raise TraceError(f"{path}:{lineno}: a minute count is not a number ({exc})") from None
            if (counts < 0).any():
                raise TraceError(f"{path}:{lineno}: negative invocation count")
            total = counts if total is None else total + counts
            rows += 1
    if total is None:
        which = f"no row whose HashFunction starts with {function!r}" if function else "no data rows"
        raise TraceError(f"{path}: {which}")
    return total, rows


def read_timestamps(path: str | Path) -> np.ndarray:
    """Arrival times from a file: one number (seconds) a line, or a CSV whose header names a timestamp column
    (``timestamp``, ``time``, ``end_timestamp``, ``arrival``). Returned sorted, as offsets from the first."""
    path = Path(path)
    values: list[float] = []
    column = 0
    header_seen = False
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        for lineno, row in enumerate(reader, start=1):
            if not row or not row[0].strip() or row[0].lstrip().startswith("#"):
                continue
            try:
                values.append(float(row[column]))
            except (ValueError, IndexError):
                if values or header_seen:
                    raise TraceError(f"{path}:{lineno}: not a timestamp: {','.join(row)[:80]!r}") from None
                names = [c.strip().lower() for c in row]
                found = [names.index(c) for c in TIMESTAMP_COLUMNS if c in names]
                if not found:
                    raise TraceError(
                        f"{path}:{lineno}: not a number, and no timestamp column "
                        f"({', '.join(TIMESTAMP_COLUMNS)}) in this header"
                    ) from None
                column, header_seen = found[0], True
    if not values:
        raise TraceError(f"{path}: no timestamps")
    t = np.sort(np.asarray(values, dtype=float))
    return t - t[0]


def _spread(counts: np.ndarray, rng: np.random.Generator, bin_s: float = 60.0) -> np.ndarray:
    """Arrival offsets from per-bin counts: each bin's arrivals at uniform random times within it."""
    n = np.rint(counts).astype(np.int64)
    starts = np.repeat(np.arange(len(n)) * bin_s, n)
    return np.sort(starts + rng.uniform(0.0, bin_s, len(starts)))


def _poisson(rate_fn, peak: float, period_s: float, rng: np.random.Generator) -> np.ndarray:
    """A non-homogeneous Poisson process by thinning (Lewis and Shedler): candidates at ``peak``, kept with
    probability rate(t) / peak."""
    if peak <= 0:
        return np.zeros(0)
    n = rng.poisson(peak * period_s)
    t = np.sort(rng.uniform(0.0, period_s, n))
    keep = rng.uniform(0.0, 1.0, n) * peak < rate_fn(t)
    return t[keep]


class TrafficSection(BaseModel):
    """The profile's optional ``[traffic]`` section: the traffic to replay and to project a month of."""

    model_config = ConfigDict(extra="forbid")
    pattern: Literal["constant", "diurnal", "bursty", "trace"] = Field(
        "constant", description="constant, diurnal, bursty, or trace (a file)."
    )
    rate_rps: float = Field(
        1.0, gt=0, le=100000, description="Mean rate (constant, diurnal); the rate between bursts (bursty)."
    )
    arrival: Literal["poisson", "constant"] = Field("poisson", description="constant: Poisson or evenly spaced.")
    peak_to_trough: float = Field(4.0, ge=1, le=1000, description="diurnal: the peak hour's rate / the trough's.")
    peak_hour: float = Field(14.0, ge=0, lt=24, description="diurnal: hour of the day of the peak.")
    burst_rate_rps: float = Field(20.0, gt=0, le=100000, description="bursty: the rate during a burst.")
    burst_s: float = Field(30.0, gt=0, le=86400, description="bursty: seconds a burst lasts.")
    bursts_per_hour: float = Field(2.0, gt=0, le=3600, description="bursty: mean bursts an hour (at random times).")
    file: str | None = Field(
        None,
        description="trace: per-minute counts in the Azure Functions trace 2019 format, or arrival timestamps.",
    )
    format: Literal["auto", "azure", "timestamps"] = Field(
        "auto", description="trace: the file's format (auto: Azure's when the header starts with HashOwner)."
    )
    function: str | None = Field(
        None, description="trace (Azure format): the HashFunction (or a prefix) to use; default: every row summed."
    )
    seed: int = Field(0, description="Seed of the arrivals (Poisson draws, times within a minute).")
    _counts: np.ndarray | None = PrivateAttr(None)
    _stamps: np.ndarray | None = PrivateAttr(None)

    @field_validator("file")
    @classmethod
    def _file_exists(cls, v: str | None, info: ValidationInfo) -> str | None:
        return str(check_path(v, info)) if v is not None else None

    @model_validator(mode="after")
    def _read_trace(self):
        if self.pattern != "trace":
            if self.file is not None:
                raise ValueError(f"'file' is for pattern = \"trace\" (this is {self.pattern!r})")
            return self
        if self.file is None:
            raise ValueError("pattern = \"trace\" needs 'file' (per-minute counts or timestamps)")
        fmt = self.format
        if fmt == "auto":
            with open(self.file, encoding="utf-8", errors="replace") as fh:
                fmt = "azure" if fh.readline().startswith(AZURE_KEYS[0]) else "timestamps"
        try:
            if fmt == "azure":
                self._counts, _ = read_azure_counts(self.file, self.function)
            else:
                if self.function is not None:
                    raise ValueError("'function' selects a row of an Azure-format trace; this file has timestamps")
                self._stamps = read_timestamps(self.file)
        except (TraceError, OSError, UnicodeDecodeError) as exc:
            raise ValueError(str(exc)) from None
        return self

    # -- what the traffic is --------------------------------------------------------------------------------------
    @property
    def period_s(self) -> float:
        """Length of one period of the traffic (a month repeats it)."""
        if self._counts is not None:
            return 60.0 * len(self._counts)
        if self._stamps is not None:
            return max(1.0, float(self._stamps[-1]) + 1.0)
        return DAY_S

    def rate_at(self, t: np.ndarray) -> np.ndarray:
        """The synthetic patterns' rate (req/s) at offsets ``t`` (diurnal; constant elsewhere)."""
        t = np.asarray(t, dtype=float)
        if self.pattern == "diurnal":
            amp = (self.peak_to_trough - 1.0) / (self.peak_to_trough + 1.0)
            phase = 2.0 * math.pi * (t / DAY_S - self.peak_hour / 24.0)
            return self.rate_rps * (1.0 + amp * np.cos(phase))
        return np.full(t.shape, self.rate_rps)

    def describe(self) -> str:
        """The traffic in a few words."""
        if self.pattern == "trace":
            which = f", function {self.function}" if self.function else ""
            return f"trace {Path(self.file or '').name}{which}"
        if self.pattern == "diurnal":
            return (
                f"diurnal, mean {self.rate_rps:g} req/s, peak at {self.peak_hour:g}h, "
                f"peak/trough {self.peak_to_trough:g}"
            )
        if self.pattern == "bursty":
            return (
                f"bursty, {self.rate_rps:g} req/s with {self.bursts_per_hour:g} bursts/h of "
                f"{self.burst_s:g} s at {self.burst_rate_rps:g} req/s"
            )
        return f"constant {self.rate_rps:g} req/s ({self.arrival})"


def arrivals(traffic: TrafficSection, seed: int | None = None) -> np.ndarray:
    """Send offsets (seconds from the period's start, sorted) of one period of ``traffic``; seeded."""
    rng = np.random.default_rng(traffic.seed if seed is None else seed)
    period = traffic.period_s
    if traffic._counts is not None:
        return _spread(traffic._counts, rng)
    if traffic._stamps is not None:
        return traffic._stamps.copy()
    if traffic.pattern == "constant":
        if traffic.arrival == "constant":
            return np.arange(int(period * traffic.rate_rps)) / traffic.rate_rps
        return _poisson(traffic.rate_at, traffic.rate_rps, period, rng)
    if traffic.pattern == "diurnal":
        amp = (traffic.peak_to_trough - 1.0) / (traffic.peak_to_trough + 1.0)
        return _poisson(traffic.rate_at, traffic.rate_rps * (1.0 + amp), period, rng)
    # bursty: bursts start as a Poisson process; inside one the rate is burst_rate_rps
    n_bursts = rng.poisson(traffic.bursts_per_hour * period / 3600.0)
    starts = np.sort(rng.uniform(0.0, period, n_bursts))

    def rate(t: np.ndarray) -> np.ndarray:
        idx = np.searchsorted(starts, t, side="right") - 1
        inside = (idx >= 0) & (t - starts[np.clip(idx, 0, None)] < traffic.burst_s) if len(starts) else t < -1
        return np.where(inside, max(traffic.burst_rate_rps, traffic.rate_rps), traffic.rate_rps)

    return _poisson(rate, max(traffic.burst_rate_rps, traffic.rate_rps), period, rng)


def window(offsets: np.ndarray, start_s: float, length_s: float | None, compress: float) -> np.ndarray:
    """The arrivals in ``[start_s, start_s + length_s)``, from the window's start, time-compressed by ``compress``
    (60: an hour of traffic sent in a minute)."""
    end = math.inf if length_s is None else start_s + length_s
    sel = offsets[(offsets >= start_s) & (offsets < end)]
    return (sel - start_s) / compress


def minute_counts(offsets: np.ndarray, period_s: float) -> np.ndarray:
    """Arrivals per minute over one period."""
    bins = max(1, math.ceil(period_s / 60.0))
    return np.bincount(np.minimum((offsets // 60.0).astype(np.int64), bins - 1), minlength=bins)
