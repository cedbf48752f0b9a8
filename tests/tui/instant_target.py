"""A target that answers in-process after a short sleep: it drives the desk at thousands of requests per second
(no model, no network), to show that the UI coalesces events and keys still answer. Test use only."""

from __future__ import annotations

import time
from typing import Literal

from pydantic import Field

from perfdesk.controllers.results import RequestResult
from perfdesk.controllers.target import Target, TargetSpec


class InstantSpec(TargetSpec):
    kind: Literal["instant"] = "instant"
    answer_ms: float = Field(1.0, ge=0, description="Milliseconds each request sleeps.")


class InstantTarget(Target):
    kind = "instant"
    spec_model = InstantSpec

    def deploy(self, workload) -> None:
        self.workload = workload
        self.set_state("ready", "answers in-process")

    def send(self, payload, *, timeout=None) -> RequestResult:
        t = time.time()
        time.sleep(self.spec.answer_ms / 1000.0)
        return RequestResult(actual_send=t, receive=time.time(), top1="tabby")

    def teardown(self) -> None:
        if self.state != "not deployed":
            self.set_state("torn down")
