"""The level watchdog: a level ends as soon as it cannot pass, its target is gone, or its time is up.

Each level (:class:`~perfdesk.controllers.trials.LevelRecorder`) owns a :class:`LevelWatch`. Its ``stop`` event is
the level's: set by the run's cancel (Ctrl-C, SIGTERM, the Stop key) or by the watch itself, and the load generator
checks it between requests. The watch ends a level when

- its failures (errors and timeouts of recorded requests) exceed what ``max_error_pct`` allows of the level's
  planned requests (``error budget spent: 31 of 300``);
- ``max_consecutive_failures`` requests in a row failed (connection failures mean the target is lost:
  ``target lost: connection refused x20``);
- the target's health check (:meth:`Target.check_alive`, about once a second) says it is gone, or
  (:meth:`Target.check_answering`) it has not answered for ``unresponsive_s`` while no request was answered either;
- the level runs past its deadline (``max_duration_s``, else derived from its plan): status ``timed out``.

Requests in flight when a level ends this way are abandoned, not waited for: each is recorded with status
``cancelled`` and the reason (their late answers, if any ever come, are dropped). Requests never sent are not
rows; trials.csv's ``not_sent`` column counts them. With Ctrl-C alone, requests in flight finish as before.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from perfdesk.controllers.results import CANCELLED, ERROR, OK, THROTTLED, TIMEOUT, RequestResult

if TYPE_CHECKING:
    from perfdesk.controllers.target import Target

#: Seconds between two health checks of the target during a level.
HEALTH_INTERVAL_S = 1.0
#: Timeout of one "is it answering" check (the agent's /healthz), seconds.
ANSWER_TIMEOUT_S = 2.0
#: The derived deadline: a count-based level may take this many times its pace after its first answers, plus
#: DEADLINE_SLACK_S; a duration-based one DURATION_MARGIN times its duration plus the slack.
PACE_MARGIN, DURATION_MARGIN, DEADLINE_SLACK_S = 3.0, 1.5, 30.0

TIMED_OUT = "timed out"


class TargetLost(Exception):
    """The target was lost during a level and could not be brought back: the trial's remaining levels are skipped."""

    def __init__(self, target: str, reason: str):
        self.target, self.reason = target, reason
        super().__init__(f"{target}: {reason}")


@dataclass(frozen=True)
class Verdict:
    """Why a level was ended early: its trials.csv status and note, and whether the target is gone."""

    status: str  # "failed" | "timed out"
    reason: str
    lost: bool = False


def short_error(error: str) -> str:
    """A request's error in a few words, for a note: ``connection refused`` from urllib3's long repr."""
    m = re.search(r"\[Errno -?\d+\] ([^'\"\)>]+)", error)
    if m:
        return m.group(1).strip().lower()
    for phrase in ("Connection reset by peer", "Remote end closed connection", "Connection aborted", "timed out"):
        if phrase.lower() in error.lower():
            return phrase.lower()
    text = error.removeprefix("connection: ").strip()
    return text if len(text) <= 80 else text[:77] + "..."


def is_connection_failure(result: RequestResult) -> bool:
    """The request never reached a server that answered (refused, reset, closed, unreachable)."""
    return result.status == ERROR and result.http_status is None and result.error.startswith("connection")


class LevelWatch:
    """Watches one level while it runs (see the module docstring). Thread-safe: sends come from many threads."""

    def __init__(
        self,
        target: Target,
        cancel: threading.Event,
        *,
        planned: int | None,
        duration_s: float | None,
        max_error_pct: float,
        max_consecutive_failures: int,
        max_duration_s: float | None,
        unresponsive_s: float,
        failures_are_results: bool = False,
        log: Callable[[str], None] | None = None,
    ):
        self.target, self.cancel = target, cancel
        self.planned = planned
        self.stop = threading.Event()
        self.verdict: Verdict | None = None
        self._log = log or (lambda line: None)
        self._budget = max_error_pct / 100.0 * planned if planned is not None and not failures_are_results else None
        self._only_connection = failures_are_results  # then only connection failures in a row end the level
        self._max_consecutive = max_consecutive_failures
        self._unresponsive_s = unresponsive_s
        self._lock = threading.Lock()
        self._failed = 0
        self._recorded = 0
        self._consecutive: list[RequestResult] = []
        self._waiters: set[threading.Event] = set()
        self._closed = threading.Event()
        self.started = time.monotonic()
        self._last_answer = self.started
        self._deadline_why = ""
        self._deadline: float | None = None
        if max_duration_s is not None:
            self._set_deadline(max_duration_s, f"max_duration_s = {max_duration_s:g}")
        elif duration_s is not None:
            self._set_deadline(
                DURATION_MARGIN * duration_s + DEADLINE_SLACK_S,
                f"{DURATION_MARGIN:g} x its {duration_s:g} s + {DEADLINE_SLACK_S:g} s",
            )
        self._pace_at = (5, 20)  # the derived deadline is set at the 5th recorded request, refined at the 20th
        self._fixed = self._deadline is not None or failures_are_results
        self._threads = [
            threading.Thread(target=self._monitor, name="level-watch", daemon=True),
            threading.Thread(target=self._health, name="level-health", daemon=True),
        ]

    # -- lifecycle ---------------------------------------------------------------------------------------------
    def start(self) -> LevelWatch:
        for t in self._threads:
            t.start()
        return self

    def close(self) -> None:
        """The level is over: stop watching (a health check in progress is left to end on its own timeout)."""
        self._closed.set()
        self._threads[0].join(timeout=1)

    def _set_deadline(self, seconds: float, why: str) -> None:
        self._deadline = self.started + seconds
        self._deadline_why = f"{seconds:.0f} s ({why})"

    # -- the rules ---------------------------------------------------------------------------------------------
    def trip(self, status: str, reason: str, *, lost: bool = False) -> None:
        """End the level now: no new sends, requests in flight abandoned. The first verdict wins."""
        with self._lock:
            if self.verdict is not None or self._closed.is_set():
                return
            self.verdict = Verdict(status, reason, lost)
            waiters = list(self._waiters)
        self._log(f"level ended: {reason}")
        self.stop.set()
        for done in waiters:
            done.set()

    def observe(self, result: RequestResult) -> None:
        """Every answer (warm-ups included): the run of consecutive failures and the last answer's time."""
        trip = None
        with self._lock:
            if result.status == OK:
                self._consecutive.clear()
                self._last_answer = time.monotonic()
            elif self._only_connection and not is_connection_failure(result):
                self._consecutive.clear()
            elif result.status in (ERROR, TIMEOUT, THROTTLED):
                if not is_connection_failure(result) and result.status != TIMEOUT:
                    self._last_answer = time.monotonic()  # an answer, if not a good one: the target is there
                self._consecutive.append(result)
                n = len(self._consecutive)
                if self._max_consecutive and n >= self._max_consecutive:
                    run = self._consecutive
                    what = short_error(run[-1].error) if run[-1].error else run[-1].status
                    if all(is_connection_failure(r) for r in run):
                        trip = ("failed", f"target lost: {what} x{n}", True)
                    else:
                        trip = ("failed", f"failing every request: {run[-1].status} x{n} ({what})", False)
        if trip:
            self.trip(trip[0], trip[1], lost=trip[2])

    def count(self, row: dict) -> None:
        """Every recorded row: the error budget and the derived deadline."""
        trip = None
        with self._lock:
            self._recorded += 1
            if row.get("status") in (ERROR, TIMEOUT):
                self._failed += 1
                if self._budget is not None and self._failed > self._budget:
                    trip = f"error budget spent: {self._failed} of {self.planned}"
            if not self._fixed and self.planned and self._recorded in self._pace_at:
                pace = (time.monotonic() - self.started) / self._recorded
                planned_s = pace * self.planned
                self._set_deadline(
                    PACE_MARGIN * planned_s + DEADLINE_SLACK_S,
                    f"{PACE_MARGIN:g} x the {planned_s:.0f} s its first {self._recorded} requests' pace plans"
                    f" + {DEADLINE_SLACK_S:g} s",
                )
        if trip:
            self.trip("failed", trip)

    def _monitor(self) -> None:
        while not self._closed.wait(0.05):
            if self.cancel.is_set():
                self.stop.set()  # Ctrl-C: no new sends; requests in flight finish unless the target is gone
            deadline = self._deadline
            if deadline is not None and time.monotonic() > deadline:
                self.trip(TIMED_OUT, f"past the level's deadline of {self._deadline_why}")

    def _health(self) -> None:
        while not self._closed.wait(HEALTH_INTERVAL_S):
            if self.verdict is not None:
                return
            try:
                gone = self.target.check_alive()
                quiet = None if gone else self.target.check_answering(ANSWER_TIMEOUT_S)
            except Exception as exc:  # noqa: BLE001 - a broken check must not end a level; say so once
                self._log(f"health check failed: {exc!r}")
                return
            if self._closed.is_set():
                return
            if gone:
                self.trip("failed", f"target lost: {gone}", lost=True)
                return
            if quiet:
                silent = time.monotonic() - self._last_answer
                if silent >= self._unresponsive_s:
                    self.trip(
                        "failed", f"target lost: not answering ({quiet}; no answer for {silent:.0f} s)", lost=True
                    )
                    return

    # -- sending -----------------------------------------------------------------------------------------------
    def send(self, payload, timeout: float | None = None) -> RequestResult | None:
        """``target.send`` that the level does not wait for once it ended: an abandoned request comes back
        ``cancelled`` with the reason (its answer, should one come later, is dropped). None, and nothing sent,
        when the level had already ended."""
        done = threading.Event()
        box: dict = {}

        def work() -> None:
            try:
                box["result"] = self.target.send(payload, timeout=timeout)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                box["error"] = exc
            finally:
                done.set()

        t0 = time.time()
        with self._lock:
            if self.verdict is not None:
                return None
            self._waiters.add(done)
        threading.Thread(target=work, name="send", daemon=True).start()
        done.wait()
        with self._lock:
            self._waiters.discard(done)
        if "result" in box:
            self.observe(box["result"])
            return box["result"]
        if "error" in box:
            raise box["error"]
        verdict = self.verdict
        reason = verdict.reason if verdict is not None else "the level ended"
        return RequestResult(actual_send=t0, receive=time.time(), status=CANCELLED, error=f"abandoned: {reason}")
