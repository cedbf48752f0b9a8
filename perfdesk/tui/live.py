"""The bridge from the core's event bus (worker threads) to the UI loop: events are buffered, never drawn.

:class:`LiveFeed` is subscribed to the experiment's bus. Load-generator threads call it hundreds of times a second
(one ``RequestDone`` per request); it only appends under a lock. The app's timer calls :meth:`LiveFeed.drain` a few
times a second and hands the :class:`Batch` down to the panes, so the screen redraws at a steady rate however many
requests arrive. Every buffer is bounded: if the UI ever stalls, the oldest entries go (the CSVs keep every row).
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field

from perfdesk.controllers.events import (
    Event,
    LogLine,
    RequestDone,
    RequestsDone,
    SessionFinished,
    TargetState,
    TrialFinished,
    TrialStarted,
    Warning_,
)

MAX_PENDING_ROWS = 50_000
MAX_PENDING_LOGS = 5_000


@dataclass
class Batch:
    """What arrived since the previous drain."""

    rows: list[dict] = field(default_factory=list)
    logs: list[LogLine] = field(default_factory=list)
    states: dict[str, TargetState] = field(default_factory=dict)  # latest state per target
    started: list[TrialStarted] = field(default_factory=list)
    finished: list[dict] = field(default_factory=list)  # TrialFinished summaries
    session_finished: SessionFinished | None = None
    dropped_rows: int = 0  # rows that fell off the bounded buffer (still in requests.csv)

    def __bool__(self) -> bool:
        return bool(self.rows or self.logs or self.states or self.started or self.finished or self.session_finished)


class LiveFeed:
    """Thread-safe, bounded buffer of events; subscribe it to an :class:`EventBus`, drain it from the UI."""

    #: the event bus hands the feed whole RequestsDone batches (one lock per batch)
    takes_batches = True

    def __init__(self, max_rows: int = MAX_PENDING_ROWS, max_logs: int = MAX_PENDING_LOGS):
        self._lock = threading.Lock()
        self._rows: deque[dict] = deque(maxlen=max_rows)
        self._logs: deque[LogLine] = deque(maxlen=max_logs)
        self._states: dict[str, TargetState] = {}
        self._started: list[TrialStarted] = []
        self._finished: list[dict] = []
        self._session_finished: SessionFinished | None = None
        self._received_rows = 0
        self.events = 0  # every event seen (tests and the status line)

    def __call__(self, event: Event) -> None:
        with self._lock:
            self.events += 1
            if isinstance(event, RequestDone):
                self._rows.append(event.row)
                self._received_rows += 1
            elif isinstance(event, RequestsDone):
                self._rows.extend(event.rows)
                self._received_rows += len(event.rows)
            elif isinstance(event, LogLine):
                self._logs.append(event)
            elif isinstance(event, TargetState):
                self._states[event.target] = event
            elif isinstance(event, TrialStarted):
                self._started.append(event)
            elif isinstance(event, TrialFinished):
                self._finished.append(event.summary)
            elif isinstance(event, Warning_):
                self._logs.append(LogLine(target=event.target or "perfdesk", line=f"warning: {event.message}"))
            elif isinstance(event, SessionFinished):
                self._session_finished = event

    def drain(self) -> Batch:
        with self._lock:
            batch = Batch(
                rows=list(self._rows),
                logs=list(self._logs),
                states=dict(self._states),
                started=self._started,
                finished=self._finished,
                session_finished=self._session_finished,
                dropped_rows=self._received_rows - len(self._rows),
            )
            self._rows.clear()
            self._logs.clear()
            self._states = {}
            self._started = []
            self._finished = []
            self._session_finished = None
            self._received_rows = 0
        return batch
