"""The load generator: arrival schedules, a closed loop (N clients back to back) and an open loop (arrivals on a
schedule, whatever the target does).

Both drive a ``send(seq, worker, intended_send) -> row`` callable from worker threads; rows are handed to
``on_row`` as they complete. In the open loop, latency is measured from the *intended* send time, so a saturated
target cannot hide its queue (coordinated omission); a request that could not be sent on time because every
worker was busy is sent late and counted as late.

Cancellation: setting ``cancel`` stops new sends at once; requests in flight finish (bounded by the target's
request timeout) and their rows are kept.

A ``send`` that carries an event-driven twin (a :class:`Send` whose ``aio`` is set: the level's target has an
event-driven client) is driven by :mod:`perfdesk.controllers.aioload` instead: the same loops on one event loop,
with no thread per request in flight. Callers need not know which runs.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

SendFn = Callable[[int, int, float], dict]
RowFn = Callable[[dict], None]


class Send:
    """A sync ``send(seq, worker, intended) -> row`` and, where the target has an event-driven client, its twin
    (``aio``, an :class:`perfdesk.controllers.aioload.LoopSender`) that the loops below prefer."""

    def __init__(self, fn: SendFn, aio: Any = None):
        self.fn = fn
        self.aio = aio

    def __call__(self, seq: int, worker: int, intended: float) -> dict:
        return self.fn(seq, worker, intended)


def constant_schedule(rate: float, *, duration_s: float | None = None, count: int | None = None) -> np.ndarray:
    """Send offsets (seconds from the start) at a constant rate, for a duration or a count."""
    if rate <= 0:
        raise ValueError("rate must be positive")
    if count is not None:
        n = count
    elif duration_s is not None:
        n = int(np.floor(duration_s * rate + 1e-9))
    else:
        raise ValueError("give a duration or a count")
    return np.arange(n, dtype=float) / rate


def poisson_schedule(
    rate: float, *, duration_s: float | None = None, count: int | None = None, seed: int = 0
) -> np.ndarray:
    """Send offsets of a Poisson process (exponential gaps, seeded), for a duration or a count."""
    if rate <= 0:
        raise ValueError("rate must be positive")
    rng = np.random.default_rng(seed)
    if count is not None:
        return np.cumsum(rng.exponential(1.0 / rate, count)) - 0.0
    if duration_s is None:
        raise ValueError("give a duration or a count")
    out: list[float] = []
    t = 0.0
    while True:
        t += rng.exponential(1.0 / rate)
        if t >= duration_s:
            break
        out.append(t)
    return np.asarray(out, dtype=float)


def _sleep_until(deadline: float, cancel: threading.Event) -> bool:
    """Sleep until ``deadline`` (time.time()); the last half millisecond is spun for precision. False if cancelled."""
    while True:
        remaining = deadline - time.time()
        if remaining <= 0:
            return not cancel.is_set()
        if cancel.is_set():
            return False
        if remaining > 0.002:
            cancel.wait(min(remaining - 0.0015, 0.1))
        elif remaining > 0.0005:
            time.sleep(remaining - 0.0005)


def run_closed_loop(
    send: SendFn,
    on_row: RowFn,
    *,
    concurrency: int,
    cancel: threading.Event,
    duration_s: float | None = None,
    count: int | None = None,
) -> None:
    """``concurrency`` workers send back to back until ``duration_s`` has passed or ``count`` requests were sent."""
    if (duration_s is None) == (count is None):
        raise ValueError("give exactly one of duration_s and count")
    aio = getattr(send, "aio", None)
    if aio is not None:
        from perfdesk.controllers import aioload

        aioload.run_coroutine(
            lambda: aioload.closed_loop(
                aio, on_row, concurrency=concurrency, cancel=cancel, duration_s=duration_s, count=count
            )
        )
        return
    seq = itertools.count()
    lock = threading.Lock()
    end = time.time() + duration_s if duration_s is not None else None

    def worker(wid: int) -> None:
        while not cancel.is_set():
            with lock:
                n = next(seq)
            if count is not None and n >= count:
                return
            now = time.time()
            if end is not None and now >= end:
                return
            on_row(send(n, wid, now))

    threads = [threading.Thread(target=worker, args=(w,), name=f"closed-{w}", daemon=True) for w in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def run_open_loop(
    send: SendFn,
    on_row: RowFn,
    *,
    offsets: np.ndarray,
    cancel: threading.Event,
    max_in_flight: int = 64,
) -> dict:
    """Send at ``start + offsets[i]`` from a pool of ``max_in_flight`` workers. Returns dispatcher statistics."""
    aio = getattr(send, "aio", None)
    if aio is not None:
        from perfdesk.controllers import aioload

        return aioload.run_coroutine(
            lambda: aioload.open_loop(aio, on_row, offsets=offsets, cancel=cancel, max_in_flight=max_in_flight)
        )
    jobs: queue.SimpleQueue = queue.SimpleQueue()
    stop = object()

    def worker(wid: int) -> None:
        while True:
            job = jobs.get()
            if job is stop:
                return
            n, intended = job
            if cancel.is_set():
                continue  # not sent: nothing to record
            on_row(send(n, wid, intended))

    threads = [threading.Thread(target=worker, args=(w,), name=f"open-{w}", daemon=True) for w in range(max_in_flight)]
    for t in threads:
        t.start()
    start = time.time() + 0.01
    dispatched = 0
    for n, off in enumerate(offsets):
        intended = start + float(off)
        if not _sleep_until(intended, cancel):
            break
        jobs.put((n, intended))
        dispatched += 1
    for _ in threads:
        jobs.put(stop)
    for t in threads:
        t.join()
    return {"scheduled": len(offsets), "dispatched": dispatched, "start": start}
