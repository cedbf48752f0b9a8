"""A target that serves one request at a time in-process (a lock held for ``service_ms``): a single-server queue
with a known capacity (1000 / service_ms requests per second), for the capacity trial's search. With
``billing_function`` it is billed as a function whose ``concurrency`` limits requests in flight, and it records the
most it ever had in flight. Test use only."""

from __future__ import annotations

import threading
import time
from typing import Literal

from pydantic import Field

from perfdesk.controllers.results import TIMEOUT, RequestResult
from perfdesk.controllers.target import Target, TargetSpec, TargetStatus


class QueueSpec(TargetSpec):
    kind: Literal["queue"] = "queue"
    service_ms: float = Field(10.0, gt=0, description="Milliseconds each request holds the one server.")
    concurrency: int | None = Field(None, ge=1, description="Functions: requests in flight at most.")


class QueueTarget(Target):
    kind = "queue"
    spec_model = QueueSpec

    def __init__(self, spec, ctx):
        super().__init__(spec, ctx)
        self._server = threading.Lock()
        self._count = threading.Lock()
        self.in_flight = 0
        self.most_in_flight = 0

    def deploy(self, workload) -> None:
        self.workload = workload
        self.set_state(TargetStatus.READY, "serves one request at a time")

    def send(self, payload, *, timeout=None) -> RequestResult:
        t = time.time()
        with self._count:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if not self._server.acquire(timeout=timeout if timeout is not None else -1):
                return RequestResult(actual_send=t, receive=time.time(), status=TIMEOUT, error="timed out")
            try:
                time.sleep(self.spec.service_ms / 1000.0)
            finally:
                self._server.release()
            return RequestResult(actual_send=t, receive=time.time(), top1="tabby")
        finally:
            with self._count:
                self.in_flight -= 1

    def teardown(self) -> None:
        if self.state is not TargetStatus.NOT_DEPLOYED:
            self.set_state(TargetStatus.TORN_DOWN)


class QueueFunctionSpec(QueueSpec):
    kind: Literal["queue-function"] = "queue-function"  # type: ignore[assignment]


class QueueFunctionTarget(QueueTarget):
    kind = "queue-function"
    spec_model = QueueFunctionSpec
    billing = "function"


def use_queue_kinds(monkeypatch) -> None:
    """Register the "queue" kinds for one test only (the profile reference lists every registered kind)."""
    from perfdesk.controllers import target

    kinds = {
        "queue": "tests.core.queue_target:QueueTarget",
        "queue-function": "tests.core.queue_target:QueueFunctionTarget",
    }
    monkeypatch.setattr(target, "_KINDS", {**target._KINDS, **kinds})
    monkeypatch.setattr(target, "_LOADED", dict(target._LOADED))
