"""Faults end a level in seconds: the watchdog's rules (unit), then the local agent killed, stopped (hung), a level
past its deadline and Ctrl-C on a hung target, each on a real agent on loopback and checked from the CSVs."""

from __future__ import annotations

import os
import signal
import time

import pytest

from perfdesk.controllers.events import EventBus
from perfdesk.controllers.exit_codes import ExitCode
from perfdesk.controllers.experiment import Experiment
from perfdesk.controllers.profile import load_profile
from perfdesk.controllers.results import CANCELLED, ERROR, OK, THROTTLED, RequestResult
from perfdesk.controllers.target import TargetContext
from perfdesk.controllers.watchdog import LevelWatch, short_error
from tests.faults import Chaos, assert_answers_kept, level, local_agents, rows


def _watch(**kw) -> LevelWatch:
    from tests.tui.instant_target import InstantSpec, InstantTarget

    target = InstantTarget(InstantSpec(name="i", kind="instant"), TargetContext(session_id="s", emit=lambda e: None))
    opts = dict(
        planned=100,
        duration_s=None,
        max_error_pct=10.0,
        max_consecutive_failures=5,
        max_duration_s=None,
        unresponsive_s=10.0,
    )
    opts.update(kw)
    return LevelWatch(target, __import__("threading").Event(), **opts).start()


def _result(status: str, error: str = "", http: int | None = None) -> RequestResult:
    return RequestResult(actual_send=0.0, receive=0.0, status=status, error=error, http_status=http)


def test_watch_rules_budget_consecutive_and_deadline():
    refused = "connection: <HTTPConnection>: Failed to establish a new connection: [Errno 111] Connection refused"
    assert short_error(refused) == "connection refused"

    w = _watch()  # 10 % of 100 planned: the 11th failure spends the budget
    for i in range(11):
        w.observe(_result(ERROR, "HTTP 500: boom", 500) if i % 2 else _result(OK))
        w.count({"status": ERROR})
    assert w.stop.is_set() and w.verdict.status == "failed" and not w.verdict.lost
    assert w.verdict.reason == "error budget spent: 11 of 100"
    w.close()

    w = _watch()
    for _ in range(5):
        w.observe(_result(ERROR, refused))
    assert w.verdict.reason == "target lost: connection refused x5" and w.verdict.lost
    w.close()

    w = _watch(max_error_pct=100.0)
    for _ in range(5):
        w.observe(_result(THROTTLED, "TooManyRequestsException: Rate Exceeded.", 429))
    assert w.verdict.reason.startswith("failing every request: throttled x5") and not w.verdict.lost
    w.close()

    w = _watch(max_error_pct=100.0)  # a function timing out on every request
    for _ in range(5):
        w.observe(_result("timeout", "Sandbox.Timedout: Task timed out after 1.00 seconds", 200))
    assert w.verdict.reason.startswith("failing every request: timeout x5") and not w.verdict.lost
    w.close()

    w = _watch(max_duration_s=0.3)
    assert w.stop.wait(5) and w.verdict.status == "timed out"
    assert w.verdict.reason == "past the level's deadline of 0 s (max_duration_s = 0.3)"
    w.close()


def _experiment(tiny_profile, trials: str) -> tuple[Experiment, EventBus]:
    bus = EventBus()
    return Experiment(load_profile(tiny_profile(trials)), bus=bus), bus


def _agent_group(exp: Experiment) -> int:
    return exp.targets["server"].proc.pid  # the agent runs in its own process group


@pytest.mark.slow
def test_agent_killed_ends_the_level_at_once_and_the_next_trial_runs_on_a_fresh_agent(tiny_profile):
    exp, bus = _experiment(
        tiny_profile,
        """
[[trials]]
name = "long"
kind = "warm"
warmup = 1
count = 2000

[[trials]]
name = "after"
kind = "warm"
warmup = 1
count = 5
""",
    )
    chaos = Chaos(lambda: os.killpg(_agent_group(exp), signal.SIGKILL), after=20, trial="long")
    bus.subscribe(chaos)
    outcome = exp.run()

    long = level(outcome.session_path, "long")
    assert long["status"] == "failed", long
    assert long["note"].startswith("target lost: "), long["note"]
    assert chaos.noticed_s("long", "server") < 15  # generous: measured well under a second
    assert int(long["not_sent"]) > 1500 and "of 2,000 planned requests not sent" in long["note"]
    assert level(outcome.session_path, "after")["status"] == "completed"  # deployed again, the run went on
    assert outcome.exit_code == ExitCode.FAILED
    assert outcome.lost and "server: lost at" in outcome.lost[0] and "deployed again" in outcome.lost[0]
    assert_answers_kept(outcome.session_path, chaos)
    assert local_agents() == []


@pytest.mark.slow
def test_agent_stopped_is_noticed_by_its_health_check_and_requests_in_flight_are_abandoned(tiny_profile):
    exp, bus = _experiment(
        tiny_profile,
        """
[[trials]]
name = "long"
kind = "concurrency"
levels = [2]
requests = 5000
unresponsive_s = 3
""",
    )
    chaos = Chaos(lambda: os.killpg(_agent_group(exp), signal.SIGSTOP), after=20, trial="long")
    bus.subscribe(chaos)
    outcome = exp.run()

    long = level(outcome.session_path, "long")
    assert long["status"] == "failed"
    assert long["note"].startswith("target lost: not answering (/healthz: timed out"), long["note"]
    assert chaos.noticed_s("long", "server") < 25  # unresponsive_s 3 + the 2 s health timeouts; measured ~6 s
    abandoned = [r for r in rows(outcome.session_path, "requests.csv") if r["status"] == CANCELLED]
    assert 1 <= len(abandoned) <= 2 and all(r["error"].startswith("abandoned: target lost") for r in abandoned)
    assert outcome.exit_code == ExitCode.FAILED
    assert_answers_kept(outcome.session_path, chaos)
    assert local_agents() == []


@pytest.mark.slow
def test_a_level_past_its_deadline_ends_timed_out_and_ctrl_c_on_a_hung_target_still_ends(tiny_profile):
    exp, bus = _experiment(
        tiny_profile,
        """
[[trials]]
name = "long"
kind = "warm"
warmup = 0
count = 100000
max_duration_s = 3

[[trials]]
name = "hung"
kind = "warm"
warmup = 0
count = 100000
unresponsive_s = 3
""",
    )

    def stop_and_interrupt() -> None:
        os.killpg(_agent_group(exp), signal.SIGSTOP)
        exp.stop()  # Ctrl-C while the request in flight hangs

    chaos = Chaos(stop_and_interrupt, after=5, trial="hung")
    bus.subscribe(chaos)
    t0 = time.time()
    outcome = exp.run()

    long = level(outcome.session_path, "long")
    assert long["status"] == "timed out" and long["note"].startswith("past the level's deadline of 3 s"), long
    assert chaos.ended[("long", "server")] - t0 < 60
    hung = level(outcome.session_path, "hung")
    assert hung["status"] == "interrupted" and hung["note"].startswith("target lost: not answering"), hung
    assert chaos.noticed_s("hung", "server") < 25
    assert outcome.exit_code == ExitCode.INTERRUPTED
    assert_answers_kept(outcome.session_path, chaos)
    assert local_agents() == []
