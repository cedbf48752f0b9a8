"""A target that answers in-process after a short sleep: it drives the desk at thousands of requests per second
(no model, no network), to show that the UI coalesces events and keys still answer; with ``fail_deploy`` its
deploy fails as a real one can, for the failure rules of the experiment. Test use only."""

from __future__ import annotations

import time
from typing import Literal

from pydantic import Field

from perfdesk.controllers.results import RequestResult
from perfdesk.controllers.target import Target, TargetError, TargetSpec, TargetStatus


class InstantSpec(TargetSpec):
    kind: Literal["instant"] = "instant"
    answer_ms: float = Field(1.0, ge=0, description="Milliseconds each request sleeps.")
    fail_deploy: bool = Field(False, description="Every deploy fails (a TargetError), as an unreachable host's.")


class InstantTarget(Target):
    kind = "instant"
    spec_model = InstantSpec

    def __init__(self, spec, ctx):
        super().__init__(spec, ctx)
        self.deploys = 0  # how many times it was deployed (the experiment deploys only what is not ready)

    def deploy(self, workload) -> None:
        self.workload = workload
        self.set_state(TargetStatus.DEPLOYING, workload.name)
        if self.spec.fail_deploy:
            raise TargetError(self.name, "deploy", "told to fail", "fail_deploy = true in the profile")
        self.deploys += 1
        self.set_state(TargetStatus.READY, "answers in-process")

    def send(self, payload, *, timeout=None) -> RequestResult:
        t = time.time()
        time.sleep(self.spec.answer_ms / 1000.0)
        return RequestResult(actual_send=t, receive=time.time(), top1="tabby")

    def teardown(self) -> None:
        if self.state is not TargetStatus.NOT_DEPLOYED:
            self.set_state(TargetStatus.TORN_DOWN)


def use_instant_kind(monkeypatch) -> None:
    """Register the "instant" kind for one test only: the registry is global, and the profile reference (checked
    against the README) lists every registered kind."""
    from perfdesk.controllers import target

    monkeypatch.setattr(target, "_KINDS", {**target._KINDS, "instant": "tests.tui.instant_target:InstantTarget"})
    monkeypatch.setattr(target, "_LOADED", dict(target._LOADED))
