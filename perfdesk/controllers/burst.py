"""The ``burst`` trial: N simultaneous requests, and what scaling out to N costs.

At each size N (up to 1,000) the target is first made cold (unless ``cold = false``), then N threads, each with
its request ready, are released at the same instant; every request is one row whose intended send time is that
instant, so ``latency_ms`` is the time from the burst's start to its answer. A throttled request
(``TooManyRequestsException``, HTTP 429) is a row with status ``throttled``; with ``retry_throttled`` it is sent
again after a jittered exponential backoff (each attempt its own row) until it is answered or ``max_wait_s`` has
passed since the burst's start.

The level's summary (trials.csv) adds: ``burst_environments`` (cold starts answered: new environments), and
``burst_all_warm_ms``: the time from the burst's start until the N-th new environment answered (blank when fewer
than N came up: throttled by the account's or the function's concurrency). The rows' ``cold`` and ``receive``
columns are the cold starts over time.
"""

from __future__ import annotations

import random
import threading
import time
from typing import TYPE_CHECKING, ClassVar

from pydantic import Field, model_validator

from perfdesk.controllers.results import OK, THROTTLED
from perfdesk.controllers.target import TargetError
from perfdesk.controllers.trials import TRIAL_KINDS, TrialKind, TrialSpec

if TYPE_CHECKING:
    from perfdesk.controllers.trials import LevelRecorder, TrialRun


class BurstSpec(TrialSpec):
    """N simultaneous requests per size: cold starts over time, throttles, time until N environments are warm."""

    #: Latency is from the burst's instant (every request's intended send time), not each one's actual send.
    open_loop: ClassVar[bool] = True

    max_consecutive_failures: int = Field(
        0,
        ge=0,
        description="The level ends failed after this many failed requests in a row; 0 (the default here): never, "
        "since a burst's throttles in a row are its measurement.",
    )
    sizes: list[int] = Field([10], min_length=1, description="Burst sizes: requests released at the same instant.")
    cold: bool = Field(True, description="Retire every warm environment before each burst (a scale-out from zero).")
    retry_throttled: bool = Field(False, description="Send a throttled request again (backoff) until max_wait_s.")
    max_wait_s: float = Field(
        60.0,
        gt=0,
        le=3600,
        description="Retries of throttled requests end this long after the burst's start (the level's time budget: "
        "its watchdog's deadline is 1.5 x this + 30 s).",
    )
    settle_s: float = Field(0.0, ge=0, le=600, description="Pause between bursts.")

    @model_validator(mode="after")
    def _sizes(self):
        if any(n < 1 or n > 1000 for n in self.sizes):
            raise ValueError("burst sizes must be between 1 and 1000")
        return self


def run_burst(run: TrialRun) -> None:
    spec = run.spec
    assert isinstance(spec, BurstSpec)  # TRIAL_KINDS runs each kind with its own spec
    for i, n in enumerate(spec.sizes):
        if run.cancel.is_set():
            break
        if i and spec.settle_s:
            run.cancel.wait(spec.settle_s)
        rec = run.level(n, expected=n, duration_s=spec.max_wait_s)
        if spec.cold:
            try:
                run.target.force_cold()
            except TargetError as exc:
                rec.finish("failed", str(exc))
                raise
        _burst(run, rec, n, spec)


def _burst(run: TrialRun, rec: LevelRecorder, n: int, spec: BurstSpec) -> None:
    """One burst of ``n``: threads ready with their requests, released together; the level's row at the end."""
    payloads = [rec.payload() for _ in range(n)]
    ready = threading.Barrier(n + 1)
    start: list[float] = []
    cold_done: list[float] = []
    throttled = [0]
    seq = iter(range(1_000_000_000))
    lock = threading.Lock()

    def one(worker: int) -> None:
        ready.wait()
        t0 = start[0]
        backoff = 0.05
        while not rec.stop.is_set():
            result = rec.send(payloads[worker])
            if result is None:  # the level ended (the watchdog or Ctrl-C) before this one went out
                return
            with lock:
                row_seq = next(seq)
                if result.status == THROTTLED:
                    throttled[0] += 1
                elif result.cold and result.status == OK:
                    cold_done.append(result.receive)
            rec.record(result, payloads[worker], seq=row_seq, worker=worker, intended=t0)
            if result.status != THROTTLED or not spec.retry_throttled or time.time() - t0 > spec.max_wait_s:
                return
            rec.stop.wait(backoff * (0.5 + random.random()))
            backoff = min(backoff * 2, 2.0)

    threads = [threading.Thread(target=one, args=(w,), daemon=True, name=f"burst-{w}") for w in range(n)]
    for t in threads:
        t.start()
    start.append(time.time())
    ready.wait()  # every thread is at the barrier with its request: release them together
    for t in threads:
        t.join()
    cold_done.sort()
    warm_ms = (cold_done[n - 1] - start[0]) * 1000.0 if len(cold_done) >= n else None
    note = f"{n} simultaneous: {len(cold_done)} new environments, {throttled[0]} throttled"
    if warm_ms is not None:
        note += f"; all {n} warm after {warm_ms:,.0f} ms"
    elif cold_done:
        note += f"; only {len(cold_done)} of {n} environments came up (the rest throttled or failed)"
    rec.finish(note=note, extra={"burst_environments": len(cold_done), "burst_all_warm_ms": warm_ms})


TRIAL_KINDS["burst"] = TrialKind(BurstSpec, run_burst)
