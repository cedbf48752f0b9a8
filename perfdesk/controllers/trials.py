"""Trials, written once against the :class:`Target` interface.

Each kind is a pydantic spec (the profile schema for its ``[[trials]]`` table) plus a ``run`` function. A trial
runs on one target at a time (targets never compete for this machine's cores) and produces one or more *levels*
(a concurrency level, an arrival rate, a memory size); each level's rows are written as they complete and its
summary (trials.csv) is computed from those rows.

Kinds: ``cold`` (N fresh starts), ``warm`` (W warm-ups discarded, N sequential), ``concurrency`` (closed-loop
sweep), ``rate`` (open-loop constant or Poisson arrivals), ``memory`` (function memory sweep), ``stream`` (a
frame feed at a given fps, sequential or with bounded requests in flight), ``burst`` (N simultaneous requests:
:mod:`perfdesk.controllers.burst`).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from perfdesk.controllers.aioload import RecorderSender
from perfdesk.controllers.distributed import load_engine
from perfdesk.controllers.events import RequestDone, TrialFinished, TrialStarted
from perfdesk.controllers.loadgen import Send, constant_schedule, poisson_schedule, run_closed_loop, run_open_loop
from perfdesk.controllers.results import (
    DROPPED,
    LEVEL_OUT_OF_MEMORY,
    OUT_OF_MEMORY_ERROR,
    RequestResult,
    is_out_of_memory,
    request_row,
)
from perfdesk.controllers.stats import summarize
from perfdesk.controllers.target import Target, TargetError, Unsupported
from perfdesk.controllers.watchdog import LevelWatch, TargetLost
from perfdesk.controllers.workload import Payload, WorkloadSpec, check_path
from perfdesk.shipped.wire import encode_request


class TrialSpec(BaseModel):
    """Options common to every trial kind."""

    model_config = ConfigDict(extra="forbid")
    #: Latency is measured from the intended send time (trials.csv ``loop`` open), not the actual one.
    open_loop: ClassVar[bool] = False
    #: Failed requests are what the trial measures (a capacity probe past capacity fails by design): the level
    #: watchdog then ends a level only for a lost target or ``max_duration_s``, not for its failures or pace.
    failures_are_results: ClassVar[bool] = False
    kind: str = Field(description="Trial kind: one of the kinds in the README's Trials table.")
    name: str = Field(min_length=1, description="Trial name (defaults to the kind); unique in the profile.")
    targets: list[str] | None = Field(None, description="Names of the targets to run on (default: all).")
    max_error_pct: float = Field(
        10.0, ge=0, le=100, description="A level with more failed requests (errors + timeouts) than this fails."
    )
    late_threshold_ms: float = Field(5.0, ge=0, description="A send later than this past its intended time is late.")
    max_consecutive_failures: int = Field(
        20,
        ge=0,
        description="A level ends failed after this many failed requests in a row (connection failures: the "
        "target is lost); 0: never.",
    )
    max_duration_s: float | None = Field(
        None,
        gt=0,
        le=7 * 86400,
        description="A level still running after this many seconds ends 'timed out' (default: derived from its "
        "plan: 1.5 x its duration + 30 s, or 3 x the time its first requests' pace plans + 30 s).",
    )
    unresponsive_s: float = Field(
        10.0,
        gt=0,
        le=3600,
        description="A level ends failed (target lost) when the target's health check fails and no request was "
        "answered for this many seconds (a hung target).",
    )


class ColdSpec(TrialSpec):
    """N fresh starts, each followed by one request: start, model load and first inference, each timed."""

    count: int = Field(3, ge=1, le=1000, description="Fresh starts.")


class WarmSpec(TrialSpec):
    """W warm-up requests (discarded), then N sequential requests."""

    warmup: int = Field(3, ge=0, le=100000, description="Warm-up requests, not recorded.")
    count: int = Field(20, ge=1, le=1000000, description="Recorded requests.")


class _Amount(TrialSpec):
    duration_s: float | None = Field(None, gt=0, le=86400, description="Seconds per level.")
    requests: int | None = Field(None, ge=1, le=10_000_000, description="Requests per level (instead of duration_s).")

    @model_validator(mode="after")
    def _one_amount(self):
        if self.duration_s is not None and self.requests is not None:
            raise ValueError("give duration_s or requests, not both")
        if self.duration_s is None and self.requests is None:
            self.duration_s = 10.0
        return self


class ConcurrencySpec(_Amount):
    """Closed loop: at each level, that many clients send back to back (latency has the closed-loop caveat)."""

    levels: list[int] = Field([1, 2, 4, 8], min_length=1, description="Concurrency levels (clients in flight).")
    warmup_requests: int = Field(0, ge=0, description="Requests per level sent first and not recorded.")

    @model_validator(mode="after")
    def _levels(self):
        if any(lv < 1 or lv > 4096 for lv in self.levels):
            raise ValueError("levels must be between 1 and 4096")
        return self


class RateSpec(_Amount):
    """Open loop: arrivals at each rate (constant or seeded Poisson); latency from the intended send time."""

    open_loop: ClassVar[bool] = True

    rates: list[float] = Field([5.0, 10.0], min_length=1, description="Arrival rates, requests per second.")
    arrival: Literal["constant", "poisson"] = Field("poisson", description="Arrival process.")
    seed: int = Field(0, description="Seed of the Poisson arrivals.")
    max_in_flight: int = Field(64, ge=1, le=4096, description="Client workers; beyond that, sends are late.")

    @model_validator(mode="after")
    def _rates(self):
        if any(r <= 0 or r > 100000 for r in self.rates):
            raise ValueError("rates must be between 0 and 100000 requests per second")
        return self


class MemorySpec(TrialSpec):
    """Function memory sweep: at each size, one cold request, warm-ups, then N sequential requests."""

    memory_mb: list[int] = Field([768, 1536, 2240, 3008], min_length=1, description="Memory sizes, MB.")
    warmup: int = Field(2, ge=0, description="Warm-up requests per size, not recorded.")
    count: int = Field(10, ge=1, description="Recorded warm requests per size.")

    @model_validator(mode="after")
    def _sizes(self):
        if any(m < 128 or m > 10240 for m in self.memory_mb):
            raise ValueError("memory sizes must be between 128 and 10240 MB (Lambda's range)")
        return self


class StreamSpec(TrialSpec):
    """A frame feed at ``fps``: sequential (one frame in flight; frames whose slot passed are dropped) or async
    (up to ``max_in_flight`` frames in flight; a frame finding no free slot is dropped)."""

    open_loop: ClassVar[bool] = True

    fps: float = Field(10.0, gt=0, le=1000, description="Frames per second of the feed.")
    frames: int = Field(100, ge=1, le=1_000_000, description="Frames sent.")
    mode: Literal["sequential", "async"] = Field("sequential", description="Feed mode (as the video-feed study).")
    max_in_flight: int = Field(4, ge=1, le=256, description="Async mode: frames in flight at most.")
    source: str | None = Field(
        None,
        description="A video file (PyAV) or a folder of images sent in name order; default: the workload's "
        "images, cycled.",
    )
    frame_size: tuple[int, int] | None = Field(None, description="Resize frames to (width, height) before sending.")

    @field_validator("source")
    @classmethod
    def _source_exists(cls, v: str | None, info: ValidationInfo) -> str | None:
        return str(check_path(v, info)) if v is not None else None


@dataclass
class TrialRun:
    """What a trial function gets: one target, one workload and its payloads, and where rows go."""

    spec: TrialSpec
    target: Target
    workload: WorkloadSpec
    payloads: list[Payload]
    session_id: str
    emit: Callable
    cancel: threading.Event
    failed_levels: list[Any] = field(default_factory=list)
    #: Why the target was lost in the latest level (its watchdog said so); None while it serves.
    lost: str | None = None
    #: Tries once to bring a lost target back (the experiment's); True when it serves again.
    recover: Callable[[TrialRun], bool] | None = None
    #: the profile's ``[load]`` (:class:`perfdesk.controllers.distributed.LoadSection`); None: this process sends
    load: Any = None

    def level(self, level: Any, expected: int | None = None, duration_s: float | None = None) -> LevelRecorder:
        """Start a level of ``expected`` requests (when known) or ``duration_s`` seconds. After a level that lost
        the target, it is brought back first (once), else :class:`TargetLost` ends the trial."""
        if self.lost is not None:
            if self.recover is None or not self.recover(self):
                raise TargetLost(self.target.name, self.lost)
            self.lost = None
        self.emit(
            TrialStarted(
                self.workload.name, self.spec.name, self.spec.kind, self.target.name, level, expected, duration_s
            )
        )
        return LevelRecorder(self, level, planned=expected, duration_s=duration_s)


class LevelRecorder:
    """Builds, emits (the session store writes them) and keeps the rows of one level, then its summary."""

    def __init__(self, run: TrialRun, level: Any, *, planned: int | None = None, duration_s: float | None = None):
        self.run = run
        self.level_value = level
        self.planned = planned
        self.rows: list[dict] = []
        self._lock = threading.Lock()
        self._payload_cycle = itertools.cycle(range(len(run.payloads)))
        self.note = ""
        spec = run.spec
        self.watch = LevelWatch(
            run.target,
            run.cancel,
            planned=planned,
            duration_s=duration_s,
            max_error_pct=spec.max_error_pct,
            max_consecutive_failures=spec.max_consecutive_failures,
            max_duration_s=spec.max_duration_s,
            unresponsive_s=spec.unresponsive_s,
            failures_are_results=spec.failures_are_results,
            log=run.target.log,
        ).start()
        #: Set when this level must stop sending: the run's cancel, or the level's watchdog (see
        #: :mod:`perfdesk.controllers.watchdog`). Trial kinds pass ``rec.stop`` to the load generator and check it
        #: between requests, never ``run.cancel`` directly, and send through :meth:`send`.
        self.stop: threading.Event = self.watch.stop

    def payload(self) -> Payload:
        with self._lock:
            return self.run.payloads[next(self._payload_cycle)]

    def record(
        self,
        result: RequestResult,
        payload: Payload,
        *,
        seq: int,
        worker: int = 0,
        intended: float | None = None,
        closed_loop: bool = False,
        client: str | None = None,
    ) -> dict:
        row = self.row(
            result, payload, seq=seq, worker=worker, intended=intended, closed_loop=closed_loop, client=client
        )
        self.run.emit(RequestDone(row))
        return row

    def row(
        self,
        result: RequestResult,
        payload: Payload,
        *,
        seq: int,
        worker: int = 0,
        intended: float | None = None,
        closed_loop: bool = False,
        client: str | None = None,
    ) -> dict:
        """Build and keep one row without emitting it (the event-driven client emits rows in batches)."""
        r = self.run
        row = request_row(
            result,
            session=r.session_id,
            workload=r.workload.name,
            trial=r.spec.name,
            trial_kind=r.spec.kind,
            target=r.target.name,
            target_kind=r.target.kind,
            level=self.level_value,
            seq=seq,
            worker=worker,
            client=client,
            intended_send=intended if intended is not None else result.actual_send,
            payload_bytes=payload.payload_bytes,
            batch_size=payload.batch_size,
            latency_ms=result.service_ms if closed_loop else None,
        )
        with self._lock:
            self.rows.append(row)
        self.watch.count(row)
        return row

    def send(self, payload: Payload, timeout: float | None = None) -> RequestResult | None:
        """Send one request to the level's target; the level does not wait for it once the watchdog ended the
        level (it comes back ``cancelled``). None, and nothing sent, when the level had already ended."""
        return self.watch.send(payload, timeout=timeout)

    def sender(self, *, closed_loop: bool, timeout: float | None = None) -> Send:
        """A load-generator send function over this level's target and payloads (with its event-driven twin where
        the target has an event-driven client: the load generator then uses that)."""

        def send(seq: int, worker: int, intended: float) -> dict:
            payload = self.payload()
            result = self.send(payload, timeout=timeout)
            if result is None:
                return {}  # the level ended before this request went out: not a row
            return self.record(result, payload, seq=seq, worker=worker, intended=intended, closed_loop=closed_loop)

        aio = RecorderSender(self, closed_loop=closed_loop, timeout=timeout) if self.run.target.supports_async else None
        return Send(send, aio)

    def finish(self, status: str | None = None, note: str = "", extra: dict | None = None) -> dict:
        """Summarise the level's rows, decide its status (unless given) and emit its trials.csv row; ``extra``:
        kind-specific columns (e.g. a capacity trial's ``slo_p99_ms``)."""
        r = self.run
        self.watch.close()
        verdict = self.watch.verdict
        if verdict is not None and verdict.lost:
            r.lost = verdict.reason
        with self._lock:
            rows = list(self.rows)
        summary = summarize(rows, late_threshold_ms=r.spec.late_threshold_ms)
        failed = summary["errors"] + summary["timeouts"]
        not_sent = max(0, self.planned - len(rows)) if self.planned is not None else None
        if verdict is not None and status in ("completed", "interrupted") and not r.cancel.is_set():
            # a trial kind that decides its own status still ends failed (timed out) when its watchdog ended it
            status, note = verdict.status, verdict.reason + (f" ({note})" if note else "")
        if status is None:
            if r.cancel.is_set():
                status = "interrupted"
                note = note or (verdict.reason if verdict is not None else "")
            elif verdict is not None:
                status = verdict.status
                note = verdict.reason + (
                    f"; {not_sent:,} of {self.planned:,} planned requests not sent" if not_sent else ""
                )
            elif summary["count"] and (summary["ok"] == 0 or 100.0 * failed / summary["count"] > r.spec.max_error_pct):
                status = "failed"
                oom = sum(1 for row in self.rows if is_out_of_memory(row))
                note = note or f"{failed} of {summary['count']} requests failed" + (
                    f" ({oom} ran out of memory: {OUT_OF_MEMORY_ERROR})" if oom else ""
                )
            else:
                status = "completed"
        row = {
            "session": r.session_id,
            "workload": r.workload.name,
            "trial": r.spec.name,
            "trial_kind": r.spec.kind,
            "target": r.target.name,
            "target_kind": r.target.kind,
            "level": self.level_value,
            "status": status,
            "loop": "open" if r.spec.open_loop else "closed",
            "note": note or self.note,
            "invoke_path": getattr(r.target, "invoke_path", None),
            **summary,
            **(extra or {}),
            "not_sent": not_sent,
        }
        if status in ("failed", "timed out"):
            r.failed_levels.append(self.level_value)
        r.emit(TrialFinished(row))
        return row


def _sequential(rec: LevelRecorder, n: int, cancel: threading.Event, *, record: bool = True) -> None:
    for i in range(n):
        if cancel.is_set():
            return
        payload = rec.payload()
        result = rec.send(payload)
        if result is None:
            return
        if record:
            rec.record(result, payload, seq=i, closed_loop=True)


def run_cold(run: TrialRun) -> None:
    spec = run.spec
    assert isinstance(spec, ColdSpec)  # TRIAL_KINDS runs each kind with its own spec
    rec = run.level(1, expected=spec.count)
    try:
        for i in range(spec.count):
            if rec.stop.is_set():
                break
            cold = run.target.force_cold()
            payload = rec.payload()
            result = rec.send(payload)
            if result is None:
                break
            result.cold = True
            if result.start_ms is None:
                result.start_ms = cold.start_ms
            if result.init_ms is None:
                result.init_ms = cold.init_ms
            if cold.phases:
                result.extra.setdefault("cold_phases", cold.phases)
            rec.record(result, payload, seq=i, closed_loop=True)
    except TargetError as exc:
        rec.finish("failed", str(exc))
        raise
    rec.finish()


def run_warm(run: TrialRun) -> None:
    spec = run.spec
    assert isinstance(spec, WarmSpec)  # TRIAL_KINDS runs each kind with its own spec
    rec = run.level(1, expected=spec.count)
    _sequential(rec, spec.warmup, rec.stop, record=False)
    _sequential(rec, spec.count, rec.stop)
    rec.finish()


def run_concurrency(run: TrialRun) -> None:
    spec = run.spec
    assert isinstance(spec, ConcurrencySpec)  # TRIAL_KINDS runs each kind with its own spec
    with load_engine(run) as engine:  # None: this process sends; else Locust's workers (``[load]``)
        _concurrency_levels(run, spec, engine)


def _concurrency_levels(run: TrialRun, spec: ConcurrencySpec, engine) -> None:
    for level in spec.levels:
        if run.cancel.is_set():
            break
        rec = run.level(level, expected=spec.requests, duration_s=spec.duration_s)
        if spec.warmup_requests:
            _sequential(rec, spec.warmup_requests, rec.stop, record=False)
        if engine is not None:
            facts = engine.closed_loop(rec, concurrency=level, duration_s=spec.duration_s, count=spec.requests)
            rec.finish("failed" if facts["lost"] else None)  # a lost worker's share was not sent
            continue
        run_closed_loop(
            rec.sender(closed_loop=True),
            lambda row: None,
            concurrency=level,
            cancel=rec.stop,
            duration_s=spec.duration_s,
            count=spec.requests,
        )
        rec.finish()


def run_rate(run: TrialRun) -> None:
    spec = run.spec
    assert isinstance(spec, RateSpec)  # TRIAL_KINDS runs each kind with its own spec
    with load_engine(run) as engine:  # None: this process sends; else Locust's workers (``[load]``)
        _rate_levels(run, spec, engine)


def _rate_levels(run: TrialRun, spec: RateSpec, engine) -> None:
    for i, rate in enumerate(spec.rates):
        if run.cancel.is_set():
            break
        if spec.arrival == "constant":
            offsets = constant_schedule(rate, duration_s=spec.duration_s, count=spec.requests)
        else:
            offsets = poisson_schedule(rate, duration_s=spec.duration_s, count=spec.requests, seed=spec.seed + i)
        rec = run.level(rate, expected=len(offsets), duration_s=spec.duration_s)
        if engine is not None:
            facts = engine.open_loop(rec, offsets, max_in_flight=spec.max_in_flight)
            rec.finish("failed" if facts["lost"] else None)  # a lost worker's share was not sent
            continue
        run_open_loop(
            rec.sender(closed_loop=False),
            lambda row: None,
            offsets=offsets,
            cancel=rec.stop,
            max_in_flight=spec.max_in_flight,
        )
        rec.finish()


def run_memory(run: TrialRun) -> None:
    """At each size: one cold request, the warm-ups, then ``count`` recorded requests.

    A size at which a request runs out of memory (``Runtime.OutOfMemory``, as the function reports it) is a measured
    result, not a failure: the level ends there with status ``out of memory``, and the rest of it is not sent (each
    further request would be one more cold start that runs out of memory). A warm-up that runs out of memory is
    recorded: it is the level's evidence."""
    spec = run.spec
    assert isinstance(spec, MemorySpec)  # TRIAL_KINDS runs each kind with its own spec
    if not run.target.supports_memory:
        raise Unsupported(f"{run.target.kind} targets have no memory size; the memory trial runs on functions")
    configured = getattr(run.target.spec, "memory_mb", None)
    try:
        for mb in spec.memory_mb:
            if run.cancel.is_set():
                break
            rec = run.level(mb, expected=spec.count + 1)
            try:
                run.target.set_memory(mb)
            except TargetError as exc:
                rec.finish("failed", str(exc))
                continue
            out_of_memory = _memory_level(rec, spec, rec.stop)
            if out_of_memory is None:
                rec.finish()
            else:
                rec.finish(LEVEL_OUT_OF_MEMORY, _out_of_memory_note(mb, *out_of_memory))
    finally:
        # later trials run at the size the profile configured, not the sweep's last one
        if configured is not None and not run.cancel.is_set():
            try:
                run.target.set_memory(configured)
            except TargetError as exc:
                run.target.log(f"could not restore memory to {configured} MB: {exc}")


def _memory_level(rec: LevelRecorder, spec: MemorySpec, cancel: threading.Event) -> tuple[dict, str, int] | None:
    """Send one size's requests; stop at the first that runs out of memory and return (its row, which request it
    was, how many were left unsent)."""
    # the first request after a configuration change runs in a fresh environment: recorded as the cold one
    plan = [("the cold request", True)]
    plan += [("a warm-up request", False)] * spec.warmup
    plan += [(f"warm request {i + 1} of {spec.count}", True) for i in range(spec.count)]
    seq = 0
    for i, (which, recorded) in enumerate(plan):
        if i and cancel.is_set():
            return None
        payload = rec.payload()
        result = rec.send(payload)
        if result is None:
            return None
        oom = is_out_of_memory(result)
        if recorded or oom:
            row = rec.record(result, payload, seq=seq, closed_loop=True)
            seq += 1
            if oom:
                return row, which, len(plan) - i - 1
    return None


def _out_of_memory_note(mb: int, row: dict, which: str, unsent: int) -> str:
    used = row.get("max_memory_used_mb")
    note = f"{OUT_OF_MEMORY_ERROR} at {mb:,} MB on {which}"
    if used is not None:
        note += f" (max memory used {int(used):,} MB)"
    return note + (f"; the level's other {unsent} requests were not sent" if unsent else "")


def run_stream(run: TrialRun) -> None:
    """Frames are due at ``start + i / fps``. Latency is from the due time; a frame that cannot be sent within one
    frame interval of its due time (sequential: the previous frame is still in flight; async: every slot is busy)
    is dropped and recorded with status ``dropped``; one sent late but within the interval is counted late."""
    spec = run.spec
    assert isinstance(spec, StreamSpec)  # TRIAL_KINDS runs each kind with its own spec
    if spec.source is not None:
        run.payloads = _frame_payloads(spec, run)
    rec = run.level(spec.fps, expected=spec.frames, duration_s=spec.frames / spec.fps)
    interval = 1.0 / spec.fps
    slots = threading.Semaphore(1 if spec.mode == "sequential" else spec.max_in_flight)
    threads: list[threading.Thread] = []
    start = time.time() + 0.01
    dropped = 0

    def one(i: int, due: float, payload: Payload) -> None:
        try:
            result = rec.send(payload)
            if result is not None:
                rec.record(result, payload, seq=i, intended=due)
        finally:
            slots.release()

    from perfdesk.controllers.loadgen import _sleep_until

    for i in range(spec.frames):
        due = start + i * interval
        if not _sleep_until(due, rec.stop):
            break
        payload = rec.payload()
        if not slots.acquire(timeout=max(0.0, due + interval - time.time())):
            dropped += 1
            now = time.time()
            rec.record(
                RequestResult(actual_send=now, receive=now, status=DROPPED, error="no free slot in time"),
                payload,
                seq=i,
                intended=due,
            )
            continue
        t = threading.Thread(target=one, args=(i, due, payload), daemon=True)
        t.start()
        threads.append(t)
        threads = [t for t in threads if t.is_alive()]
    for t in threads:
        t.join()
    rec.finish(note=f"{dropped} of {spec.frames} frames dropped ({spec.mode}, {spec.fps:g} fps)")


def _frame_payloads(spec: StreamSpec, run: TrialRun) -> list[Payload]:
    """The feed's frames, decoded and encoded before the feed starts (decoding must not delay sends)."""
    from pathlib import Path

    from perfdesk.controllers.extras import MissingExtra, require
    from perfdesk.shipped.errors import InferenceError
    from perfdesk.shipped.inference.frames import frames

    assert spec.source is not None  # run_stream reads frames only from a source
    source = Path(spec.source)  # absolute: the profile loader resolved it
    if source.is_file():
        try:
            require("video", what="reading a video file")
        except MissingExtra as exc:
            raise TargetError(run.target.name, f"stream source {source}", str(exc)) from None
    options = run.workload.request_options()
    try:
        out = [
            Payload([f"frame-{f.index}"], [f.jpeg], encode_request([f.jpeg], options), 1, request_options=options)
            for f in frames(source, fps=spec.fps, max_frames=spec.frames, size=spec.frame_size)
        ]
    except InferenceError as exc:
        raise TargetError(run.target.name, f"stream source {source}", str(exc)) from None
    if not out:
        raise TargetError(run.target.name, f"stream source {source}", "no frames")
    return out


@dataclass(frozen=True)
class TrialKind:
    spec: type[TrialSpec]
    run: Callable[[TrialRun], None]


TRIAL_KINDS: dict[str, TrialKind] = {
    "cold": TrialKind(ColdSpec, run_cold),
    "warm": TrialKind(WarmSpec, run_warm),
    "concurrency": TrialKind(ConcurrencySpec, run_concurrency),
    "rate": TrialKind(RateSpec, run_rate),
    "memory": TrialKind(MemorySpec, run_memory),
    "stream": TrialKind(StreamSpec, run_stream),
}

# Kinds in modules of their own register themselves in TRIAL_KINDS when imported (they import this module, so the
# import is at the end: whichever of the two is imported first, both are complete after it).
import perfdesk.controllers.burst  # noqa: E402
import perfdesk.controllers.capacity  # noqa: E402


def known_trial_kinds() -> list[str]:
    return sorted(TRIAL_KINDS)


def trial_spec_model(kind: str) -> type[TrialSpec]:
    return TRIAL_KINDS[kind].spec


# the traffic kinds (replay, idle) register themselves in TRIAL_KINDS; a plain import at the end works whichever
# of the two modules is imported first
import perfdesk.controllers.traffic_trials  # noqa: E402, F401
