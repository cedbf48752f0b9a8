"""Events flow from targets and trials to the session store and the front ends (TUI, headless printer).

They are small frozen dataclasses named as facts. Subscribers are called in the emitting thread (often a
load-generator thread): they must be quick and thread-safe; a front end hands them to its own loop.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from perfdesk.controllers.target import TargetStatus


@dataclass(frozen=True)
class Event:
    pass


@dataclass(frozen=True)
class SessionStarted(Event):
    session_id: str
    path: str
    profile_path: str


@dataclass(frozen=True)
class SessionFinished(Event):
    session_id: str
    path: str
    status: str  # completed | failed | interrupted


@dataclass(frozen=True)
class TargetState(Event):
    target: str
    state: TargetStatus
    detail: str = ""
    time: float = 0.0


@dataclass(frozen=True)
class LogLine(Event):
    target: str
    line: str
    stream: str = "perfdesk"  # perfdesk | agent | function | ssh ...
    time: float = 0.0


@dataclass(frozen=True)
class TrialStarted(Event):
    workload: str
    trial: str
    trial_kind: str
    target: str
    level: Any
    expected: int | None  # requests expected, when known
    duration_s: float | None


@dataclass(frozen=True)
class RequestDone(Event):
    row: dict  # a requests.csv row (REQUEST_COLUMNS)


@dataclass(frozen=True)
class RequestsDone(Event):
    """Several finished requests at once (the event-driven load generator emits one per loop tick). A subscriber
    marked with :func:`takes_batches` gets it whole; every other subscriber gets one :class:`RequestDone` per row."""

    rows: list[dict]


def takes_batches(fn: Callable) -> Callable:
    """Mark a subscriber (function or method) as handling :class:`RequestsDone` itself."""
    fn.takes_batches = True  # type: ignore[attr-defined]
    return fn


@dataclass(frozen=True)
class MetricSample(Event):
    row: dict  # a metrics.csv row (METRIC_COLUMNS)


@dataclass(frozen=True)
class TrialFinished(Event):
    summary: dict  # a trials.csv row (TRIAL_COLUMNS)


@dataclass(frozen=True)
class LoadClients(Event):
    """The machines that sent one level's load (``[load] engine = "locust"``) and their clock offsets."""

    workload: str
    trial: str
    target: str
    level: Any
    facts: dict


@dataclass(frozen=True)
class Warning_(Event):
    message: str
    target: str = ""


class EventBus:
    """Fan-out of events to subscribers; a failing subscriber is dropped from that event, not the run."""

    def __init__(self) -> None:
        self._subs: list[Callable[[Event], None]] = []
        self._lock = threading.Lock()

    def subscribe(self, fn: Callable[[Event], None]) -> None:
        with self._lock:
            self._subs.append(fn)

    def unsubscribe(self, fn: Callable[[Event], None]) -> None:
        with self._lock:
            if fn in self._subs:
                self._subs.remove(fn)

    def emit(self, event: Event) -> None:
        if isinstance(event, RequestsDone):
            singles: list[RequestDone] | None = None
            for fn in list(self._subs):
                if getattr(fn, "takes_batches", False):
                    fn(event)
                else:
                    if singles is None:
                        singles = [RequestDone(row) for row in event.rows]
                    for single in singles:
                        fn(single)
            return
        for fn in list(self._subs):
            fn(event)
