"""The event-driven load generator: the closed and open loops of :mod:`perfdesk.controllers.loadgen` on one asyncio
event loop (uvloop where installed), for targets with an event-driven client (``Target.supports_async``).

Every request in flight is a coroutine, not a thread, so thousands can be in flight and the client stays far below
the target's rate. Rows leave the hot path in batches: those finished in one loop tick are emitted together (one
:class:`RequestsDone`, one CSV write and flush) at the start of the next tick, so a row reaches requests.csv within
a tick of its answer (well under 100 ms), the last ones when the level ends, and a killed run loses only requests
still in flight.

Timeouts: one sweeper task cancels requests past their deadline every few tens of milliseconds (cheaper than a
timer per request); a timed-out request is a row with status ``timeout``. Cancellation (the level's stop event) is
checked between requests; requests in flight finish, bounded by the timeout, and their rows are kept.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from perfdesk.controllers.events import RequestsDone
from perfdesk.controllers.results import CANCELLED, TIMEOUT, RequestResult

if TYPE_CHECKING:
    from perfdesk.controllers.target import AsyncClient
    from perfdesk.controllers.trials import LevelRecorder
    from perfdesk.controllers.workload import Payload

RowFn = Callable[[dict], None]
#: how often the sweeper looks for requests past their deadline (seconds)
SWEEP_S = 0.02


class LoopSender(Protocol):
    """What the event-driven loops drive (see :class:`RecorderSender`)."""

    timeout: float

    async def open(self) -> None: ...
    def payload(self) -> Any: ...
    async def request(self, payload: Any) -> RequestResult | None: ...
    def abandoned(self) -> str | None: ...
    def row(self, result: RequestResult, payload: Any, *, seq: int, worker: int, intended: float) -> dict: ...
    def flush(self) -> None: ...
    async def close(self) -> None: ...


class RecorderSender:
    """A level's target and payloads, driven from the event loop: rows are built by the level's recorder and
    emitted in per-tick batches."""

    def __init__(self, rec: LevelRecorder, *, closed_loop: bool, timeout: float | None = None):
        self.rec = rec
        self.closed_loop = closed_loop
        self.target = rec.run.target
        self.timeout = float(timeout or self.target.spec.request_timeout_s)
        self.client: AsyncClient | None = None
        self._pending: list[dict] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    async def open(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.client = self.target.async_client()

    def payload(self) -> Payload:
        return self.rec.payload()

    async def request(self, payload: Payload) -> RequestResult | None:
        """One request; None (nothing sent, not a row) when the level's watchdog already ended the level."""
        assert self.client is not None, "open first"
        watch = self.rec.watch
        if watch.verdict is not None:
            return None
        result = await self.client.send(payload)
        watch.observe(result)
        return result

    def abandoned(self) -> str | None:
        """Why requests in flight are to be abandoned now (the watchdog ended the level), or None."""
        verdict = self.rec.watch.verdict
        return verdict.reason if verdict is not None else None

    def row(self, result: RequestResult, payload: Payload, *, seq: int, worker: int, intended: float) -> dict:
        row = self.rec.row(result, payload, seq=seq, worker=worker, intended=intended, closed_loop=self.closed_loop)
        if not self._pending:
            assert self._loop is not None
            self._loop.call_soon(self.flush)
        self._pending.append(row)
        return row

    def flush(self) -> None:
        if self._pending:
            rows, self._pending = self._pending, []
            self.rec.run.emit(RequestsDone(rows))

    async def close(self) -> None:
        self.flush()
        if self.client is not None:
            client, self.client = self.client, None
            await client.close()


def ensure_open_files(n: int) -> None:
    """Raise this process's open-file limit (soft, up to the hard limit) to fit ``n`` connections and some."""
    try:
        import resource
    except ImportError:  # not on POSIX
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n + 256
    if soft != resource.RLIM_INFINITY and soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        except (ValueError, OSError):
            pass


def run_coroutine(make: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    """Run a coroutine on a fresh event loop (uvloop where installed) in this thread, or in a helper thread when
    this thread already runs a loop; return its result, raise its exception."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return _run(make())
    out: dict[str, Any] = {}

    def target() -> None:
        try:
            out["value"] = _run(make())
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            out["error"] = exc

    t = threading.Thread(target=target, name="perfdesk-loop", daemon=True)
    t.start()
    t.join()
    if "error" in out:
        raise out["error"]
    return out.get("value")


def _run(coro: Coroutine[Any, Any, Any]) -> Any:
    try:
        import uvloop

        factory = uvloop.new_event_loop
    except ImportError:
        factory = None
    with _young_collections_only(), asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)


@contextmanager
def _young_collections_only() -> Iterator[None]:
    """While a loop runs, the garbage collector collects only its young generations: a full collection walks every
    object alive (the level's rows among them) and stalls the loop for tens of milliseconds, which showed as the
    open loop's send-time p99 (5,000 req/s on the 2-core box: 14-20 ms with the default thresholds, 4-6 ms with
    these). The full collection runs once the loop is done, between levels."""
    old = gc.get_threshold()
    gc.set_threshold(max(old[0], 2000), max(old[1], 20), 1_000_000)
    try:
        yield
    finally:
        gc.set_threshold(*old)
        gc.collect()


class _InFlight:
    """Requests in flight with their deadlines; the sweeper cancels those past it, and every one when the sender
    says the level's requests are abandoned (the level watchdog ended it)."""

    def __init__(self, sender: LoopSender):
        self.sender = sender
        self.timeout = sender.timeout
        self.deadlines: dict[int, tuple[float, asyncio.Task]] = {}
        #: requests the sweeper cancelled, and why: a RequestResult status and error
        self.expired: dict[int, tuple[str, str]] = {}

    async def sweep(self) -> None:
        while True:
            await asyncio.sleep(min(SWEEP_S, self.timeout / 4))
            now = time.time()
            reason = self.sender.abandoned()
            for seq, (deadline, task) in list(self.deadlines.items()):
                if seq in self.expired:
                    continue
                if reason is not None:
                    self.expired[seq] = (CANCELLED, f"abandoned: {reason}")
                elif deadline <= now:
                    self.expired[seq] = (TIMEOUT, f"timed out after {self.timeout:g} s")
                else:
                    continue
                task.cancel()

    async def one(self, sender: LoopSender, seq: int, worker: int, intended: float) -> dict | None:
        """One request and its row; None when it was not sent (the level had ended)."""
        payload = sender.payload()
        task = asyncio.current_task()
        assert task is not None
        t0 = time.time()
        self.deadlines[seq] = (t0 + self.timeout, task)
        try:
            result = await sender.request(payload)
        except asyncio.CancelledError:
            why = self.expired.pop(seq, None)
            if why is None:
                raise
            task.uncancel()
            result = RequestResult(actual_send=t0, receive=time.time(), status=why[0], error=why[1])
        finally:
            self.deadlines.pop(seq, None)
        if result is None:
            return None
        return sender.row(result, payload, seq=seq, worker=worker, intended=intended)


async def closed_loop(
    sender: LoopSender,
    on_row: RowFn,
    *,
    concurrency: int,
    cancel: threading.Event,
    duration_s: float | None = None,
    count: int | None = None,
) -> None:
    """``concurrency`` coroutines send back to back until ``duration_s`` has passed or ``count`` were sent."""
    ensure_open_files(concurrency)
    await sender.open()
    flight = _InFlight(sender)
    sweeper = asyncio.get_running_loop().create_task(flight.sweep())
    end = time.time() + duration_s if duration_s is not None else None
    next_seq = 0

    async def worker(wid: int) -> None:
        nonlocal next_seq
        while not cancel.is_set():
            n = next_seq
            if count is not None and n >= count:
                return
            now = time.time()
            if end is not None and now >= end:
                return
            next_seq += 1
            row = await flight.one(sender, n, wid, now)
            if row is None:
                return  # the level ended before this request went out
            on_row(row)

    try:
        await asyncio.gather(*(worker(w) for w in range(concurrency)))
    finally:
        sweeper.cancel()
        await sender.close()


async def _until(deadline: float, cancel: threading.Event) -> bool:
    """Wait until ``deadline`` (time.time()) while the loop serves I/O: a timer for all but the last 1.5 ms, then
    yielding tick by tick (loop timers are millisecond-coarse). False if cancelled."""
    while True:
        remaining = deadline - time.time()
        if remaining <= 0:
            return not cancel.is_set()
        if cancel.is_set():
            return False
        if remaining > 0.002:
            await asyncio.sleep(min(remaining - 0.0015, 0.05))
        else:
            await asyncio.sleep(0)


async def open_loop(
    sender: LoopSender,
    on_row: RowFn,
    *,
    offsets: np.ndarray,
    cancel: threading.Event,
    max_in_flight: int = 64,
) -> dict:
    """Send at ``start + offsets[i]``, at most ``max_in_flight`` in flight (beyond that, sends wait and are late).
    ``worker`` in a row is the slot (0 .. max_in_flight - 1) the request used."""
    ensure_open_files(max_in_flight)
    await sender.open()
    loop = asyncio.get_running_loop()
    flight = _InFlight(sender)
    sweeper = loop.create_task(flight.sweep())
    slots = asyncio.Semaphore(max_in_flight)
    free = list(range(max_in_flight - 1, -1, -1))
    tasks: set[asyncio.Task] = set()

    async def one(n: int, intended: float) -> None:
        wid = free.pop()
        try:
            row = await flight.one(sender, n, wid, intended)
            if row is not None:
                on_row(row)
        finally:
            free.append(wid)
            slots.release()

    start = time.time() + 0.01
    dispatched = 0
    try:
        for n, off in enumerate(offsets.tolist()):
            intended = start + off
            if not await _until(intended, cancel):
                break
            await slots.acquire()
            if cancel.is_set():
                slots.release()
                break
            task = loop.create_task(one(n, intended))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            dispatched += 1
        if tasks:
            await asyncio.gather(*list(tasks))
    finally:
        sweeper.cancel()
        await sender.close()
    return {"scheduled": len(offsets), "dispatched": dispatched, "start": start}
