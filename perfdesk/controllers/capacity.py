"""The ``capacity`` trial: the highest sustained arrival rate whose p99 stays under a latency bound (an SLO).

What MLPerf's Server scenario reports (the highest Poisson rate meeting the latency bound) and Triton's
perf_analyzer searches with ``--latency-threshold``: open-loop Poisson arrivals at a rate, latency from the
intended send time (a saturated target cannot hide its queue), failures counted as slower than any success.

The search:

1. **Steps.** From ``start_rps`` (default: half the rate one client reaches sending back to back, measured first)
   the rate is multiplied by ``step_factor`` until a rate breaks the SLO (or ``max_rps`` is reached); when the
   first rate already breaks it, the rate is divided by ``step_factor`` until one meets it.
2. **Bisection** between the highest rate that met the SLO and the lowest that broke it, until they are within
   ``tolerance_pct`` of each other (or ``max_probes`` rates were tried).

A rate is *probed* in windows. A window sends at least ``min_samples`` requests (MLPerf's early-stopping minimum
for a p99 by default, 459) and lasts at least ``window_s`` (at most ``max_window_s``: at a low rate a window then
has fewer requests, and the result says so); it meets the SLO when its p99 (failures as +inf) is at
most ``p99_ms`` and at most ``error_limit_pct`` of its requests failed. The stability rule: a rate meets the SLO
when ``windows`` consecutive windows meet it and their medians agree within ``stability_pct``; it breaks it when
``windows`` consecutive windows break it; windows that keep disagreeing (a queue still growing, scale-out still
going on) end after ``max_windows`` as a break. For a function the requests in flight never exceed its concurrency
limit (the reserved concurrency, or the emulator's account limit): arrivals beyond it wait at the client, and that
wait counts in their latency.

Every probed rate is one level (its rows in requests.csv, its summary in trials.csv with ``slo_p99_ms``). A last
trials.csv row, level ``capacity``, carries the result: ``capacity_rps`` (the highest rate that met the SLO; empty
when even the first broke it), ``capacity_p99_ms`` (p99 over the windows the stability rule accepted at that rate) and
``capacity_samples`` (how many requests that p99 rests on), with the summary of that rate's requests.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

import numpy as np
from pydantic import Field, model_validator

from perfdesk.controllers.loadgen import poisson_schedule, run_open_loop
from perfdesk.controllers.stats import latency_samples, min_samples, percentile
from perfdesk.controllers.trials import TRIAL_KINDS, TrialKind, TrialSpec

if TYPE_CHECKING:
    from perfdesk.controllers.target import Target
    from perfdesk.controllers.trials import LevelRecorder, TrialRun

#: The trials.csv level of a capacity trial's result row.
RESULT_LEVEL = "capacity"
#: The lowest rate the steps go down to when the first one already breaks the SLO.
MIN_RPS = 0.1


class CapacitySpec(TrialSpec):
    """Open-loop steps, then bisection, to the highest sustained arrival rate whose p99 (failures counted as slower
    than any success) stays at or under ``p99_ms``, with a stability rule (see controllers/capacity.py)."""

    open_loop: ClassVar[bool] = True
    failures_are_results: ClassVar[bool] = True  # a probe past capacity fails by design
    p99_ms: float = Field(gt=0, le=600_000, description="The latency bound (SLO): p99 of a window, in ms.")
    error_limit_pct: float = Field(
        1.0, ge=0, le=100, description="A window with more failed requests than this % breaks the SLO."
    )
    start_rps: float | None = Field(
        None, gt=0, le=100_000, description="First rate tried (default: half the rate one client reaches)."
    )
    max_rps: float = Field(1000.0, gt=0, le=100_000, description="Highest rate tried.")
    step_factor: float = Field(2.0, gt=1, le=10, description="Each step multiplies the rate by this.")
    tolerance_pct: float = Field(
        10.0, gt=0, le=100, description="Bisection stops when the bracket is this close (% of its low end)."
    )
    max_probes: int = Field(12, ge=1, le=100, description="Rates tried at most (steps and bisection).")
    window_s: float = Field(5.0, gt=0, le=3600, description="Seconds a window lasts at least.")
    max_window_s: float = Field(
        120.0,
        gt=0,
        le=86400,
        description="Seconds a window lasts at most: at a low rate it then has fewer than min_samples (marked).",
    )
    min_samples: int | None = Field(
        None,
        ge=1,
        le=10_000_000,
        description="Requests per window at least (default: MLPerf's early-stopping minimum for p99, 459).",
    )
    windows: int = Field(2, ge=1, le=20, description="Consecutive windows that must agree at a rate.")
    max_windows: int = Field(5, ge=1, le=50, description="Windows at one rate at most before it counts as a break.")
    stability_pct: float = Field(
        50.0, gt=0, le=1000, description="Agreeing windows' medians are within this % of their smallest."
    )
    max_in_flight: int = Field(64, ge=1, le=4096, description="Client workers (functions: at most their limit).")
    seed: int = Field(0, description="Seed of the Poisson arrivals.")
    probe_timeout_s: float | None = Field(
        None,
        gt=0,
        le=3600,
        description="Client timeout of a probe's requests (default: 10 x p99_ms, 1 s at least, "
        "the target's at most); a timeout is a failure.",
    )

    @model_validator(mode="after")
    def _windows(self):
        if self.max_window_s < self.window_s:
            raise ValueError("max_window_s must be at least window_s")
        if self.max_windows < self.windows:
            raise ValueError("max_windows must be at least windows")
        if self.start_rps is not None and self.start_rps > self.max_rps:
            raise ValueError("start_rps must not exceed max_rps")
        return self

    @property
    def samples_per_window(self) -> int:
        return self.min_samples if self.min_samples is not None else min_samples(99)


@dataclass
class Window:
    p50_ms: float
    p99_ms: float
    failed_pct: float
    samples: int
    meets: bool


@dataclass
class Probe:
    """One rate tried: its windows, whether it met the SLO, and its level's trials.csv row."""

    rate: float
    windows: list[Window] = field(default_factory=list)
    meets: bool = False
    row: dict = field(default_factory=dict)
    rows: list[dict] = field(default_factory=list)
    #: the rows of the windows the stability rule accepted (the last ``windows`` of a rate that met the SLO)
    accepted_rows: list[dict] = field(default_factory=list)


def concurrency_limit(target: Target) -> int | None:
    """A function's limit on requests in flight: its reserved concurrency, else (the emulator) its account limit;
    None for a server. Read from the spec's documented fields, for function-billed targets only."""
    if target.billing != "function":
        return None
    spec = target.spec
    for name in ("reserved_concurrency", "concurrency"):
        value = getattr(spec, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def window_verdict(rows: list[dict], spec: CapacitySpec) -> Window:
    """Does one window meet the SLO: p99 (failures as +inf) within the bound, failures within the error limit."""
    samples = latency_samples(rows)
    p99 = percentile(samples, 99)
    failed = float(np.isinf(samples).mean() * 100.0) if samples.size else 100.0
    meets = bool(samples.size) and p99 <= spec.p99_ms and failed <= spec.error_limit_pct
    p50 = percentile(samples, 50)
    return Window(p50_ms=p50, p99_ms=p99, failed_pct=failed, samples=int(samples.size), meets=meets)


def stable_verdict(windows: list[Window], spec: CapacitySpec) -> bool | None:
    """The stability rule over a rate's windows so far: True (the last ``windows`` meet the SLO and their medians
    agree within ``stability_pct``: a queue still growing shows in the median long before the p99 of a few hundred
    samples settles), False (the last ``windows`` break it, or ``max_windows`` ran out), None (run another)."""
    last = windows[-spec.windows :]
    if len(last) == spec.windows:
        if all(not w.meets for w in last):
            return False
        if all(w.meets for w in last):
            p50s = [w.p50_ms for w in last]
            if max(p50s) <= min(p50s) * (1.0 + spec.stability_pct / 100.0):
                return True
    return False if len(windows) >= spec.max_windows else None


def _round_rate(rate: float) -> float:
    """Three significant figures: levels people can read ('37.5', not '37.49999')."""
    if rate <= 0:
        return rate
    digits = 2 - int(math.floor(math.log10(rate)))
    return round(rate, max(0, digits))


def _single_client_rps(run: TrialRun, rec_stop: threading.Event) -> float | None:
    """Rate one client reaches sending back to back (a few requests, not recorded): where the steps start."""
    target = run.target
    times = []
    for i in range(8):
        if rec_stop.is_set():
            return None
        result = target.send(run.payloads[i % len(run.payloads)])
        if result.status == "ok" and i >= 2:  # the first ones may still warm caches or start environments
            times.append(result.service_ms)
    if not times:
        return None
    return 1000.0 / float(np.median(times))


def _probe(run: TrialRun, spec: CapacitySpec, rate: float, index: int, in_flight: int, timeout: float) -> Probe:
    rate = _round_rate(rate)
    per_window = max(spec.samples_per_window, math.ceil(spec.window_s * rate))
    per_window = max(2, min(per_window, math.floor(spec.max_window_s * rate)))  # a low rate: max_window_s bounds it
    rec: LevelRecorder = run.level(rate, expected=per_window * spec.windows)
    probe = Probe(rate=rate)
    send = rec.sender(closed_loop=False, timeout=timeout)
    verdict: bool | None = None
    w = 0
    per_window_rows: list[list[dict]] = []
    while verdict is None and not rec.stop.is_set():
        window_rows: list[dict] = []
        lock = threading.Lock()

        def keep(row: dict, into: list[dict] = window_rows, lock: threading.Lock = lock) -> None:
            with lock:
                into.append(row)

        offsets = poisson_schedule(rate, count=per_window, seed=spec.seed + 1000 * index + w)
        run_open_loop(send, keep, offsets=offsets, cancel=rec.stop, max_in_flight=in_flight)
        probe.windows.append(window_verdict(window_rows, spec))
        probe.rows += window_rows
        per_window_rows.append(window_rows)
        verdict = stable_verdict(probe.windows, spec)
        w += 1
    probe.meets = bool(verdict)
    if probe.meets:
        probe.accepted_rows = [row for rows in per_window_rows[-spec.windows :] for row in rows]
    last = probe.windows[-1] if probe.windows else None
    words = "meets" if probe.meets else "breaks"
    detail = ", ".join(f"p99 {x.p99_ms:.1f} ms, {x.failed_pct:.1f}% failed" for x in probe.windows)
    note = f"{words} the SLO p99 <= {spec.p99_ms:g} ms (windows: {detail})" if last else "not measured"
    status = "interrupted" if rec.stop.is_set() and verdict is None else "completed"
    probe.row = rec.finish(status, note, extra={"slo_p99_ms": spec.p99_ms})
    return probe


def run_capacity(run: TrialRun) -> None:
    spec = run.spec
    assert isinstance(spec, CapacitySpec)  # TRIAL_KINDS runs each kind with its own spec
    limit = concurrency_limit(run.target)
    in_flight = min(spec.max_in_flight, limit) if limit else spec.max_in_flight
    target_timeout = float(getattr(run.target.spec, "request_timeout_s", 60.0))
    timeout = spec.probe_timeout_s or min(target_timeout, max(1.0, 10.0 * spec.p99_ms / 1000.0))
    start = spec.start_rps
    if start is None:
        single = _single_client_rps(run, run.cancel)
        start = min(spec.max_rps, max(0.1, (single or 2.0) / 2.0))
    probes: list[Probe] = []
    low: Probe | None = None
    high: Probe | None = None
    rate = start
    t0 = time.time()
    while len(probes) < spec.max_probes and not run.cancel.is_set():
        probe = _probe(run, spec, rate, len(probes), in_flight, timeout)
        probes.append(probe)
        if not probe.meets:
            high = probe if high is None or probe.rate < high.rate else high
            if low is not None or rate <= MIN_RPS:
                break
            rate = max(MIN_RPS, rate / spec.step_factor)  # the first rate already broke it: step down
            continue
        low = probe
        if high is not None or rate >= spec.max_rps:
            break
        rate = min(spec.max_rps, rate * spec.step_factor)
    while (
        low is not None
        and high is not None
        and (high.rate - low.rate) / low.rate > spec.tolerance_pct / 100.0
        and len(probes) < spec.max_probes
        and not run.cancel.is_set()
    ):
        mid = _round_rate((low.rate + high.rate) / 2.0)
        if mid in (low.rate, high.rate):
            break
        probe = _probe(run, spec, mid, len(probes), in_flight, timeout)
        probes.append(probe)
        if probe.meets:
            low = probe
        else:
            high = probe
    _finish(run, spec, probes, low, high, in_flight, limit, time.time() - t0)


def _finish(
    run: TrialRun,
    spec: CapacitySpec,
    probes: list[Probe],
    low: Probe | None,
    high: Probe | None,
    in_flight: int,
    limit: int | None,
    elapsed_s: float,
) -> None:
    from perfdesk.controllers.events import TrialFinished

    if not probes:
        return
    base = dict((low or probes[0]).row)
    samples = latency_samples(low.accepted_rows) if low is not None else np.asarray([])
    tried = ", ".join(f"{p.rate:g}{'+' if p.meets else '-'}" for p in probes)
    limit_text = f"; at most {in_flight} in flight (the function's concurrency limit {limit})" if limit else ""
    if low is None:
        note = f"no rate met the SLO p99 <= {spec.p99_ms:g} ms: even {probes[0].rate:g} req/s broke it"
    else:
        bracket = f"below {high.rate:g} req/s, which broke it" if high is not None else "the highest tried (max_rps)"
        enough = "" if samples.size >= min_samples(99) else f" (fewer than the {min_samples(99)} p99 needs)"
        note = (
            f"capacity under p99 <= {spec.p99_ms:g} ms: {low.rate:g} req/s, p99 {percentile(samples, 99):.1f} ms over "
            f"{samples.size} requests{enough}, {int(np.isinf(samples).sum())} failed; {bracket}"
        )
    note += f"; rates tried (+ met, - broke): {tried}{limit_text}; {elapsed_s:.0f} s"
    interrupted = run.cancel.is_set()
    base.update(
        level=RESULT_LEVEL,
        status="interrupted" if interrupted else "completed",
        note=note,
        slo_p99_ms=spec.p99_ms,
        capacity_rps=low.rate if low is not None else math.nan,
        capacity_p99_ms=percentile(samples, 99) if low is not None else math.nan,
        capacity_samples=int(samples.size) if low is not None else 0,
    )
    run.target.log(note)
    run.emit(TrialFinished(base))


TRIAL_KINDS["capacity"] = TrialKind(CapacitySpec, run_capacity)
