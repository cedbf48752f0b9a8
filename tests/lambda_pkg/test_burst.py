"""The burst trial on the emulator with the tiny handler: N simultaneous invocations against the account's
concurrency (4 here) and a function's reservation, throttled with 429 TooManyRequestsException as on Lambda."""

from __future__ import annotations

import threading

import pytest

from perfdesk.controllers.events import TrialFinished
from perfdesk.controllers.trials import TRIAL_KINDS, TrialRun
from perfdesk.controllers.workload import WorkloadSpec
from tests.lambda_pkg.test_paths import _payload, stack, tiny_target  # noqa: F401 - stack is a fixture

WORKLOAD = WorkloadSpec(name="w", model="mobilenet_v2", runtime="onnx", images="synthetic")


def _burst(target, **options) -> tuple[dict, list[dict]]:
    kind = TRIAL_KINDS["burst"]
    events: list = []
    spec = kind.spec(kind="burst", name="burst", **options)
    run = TrialRun(spec, target, WORKLOAD, [_payload(1.0)], "t-burst", events.append, threading.Event())
    kind.run(run)
    rows = [e.row for e in events if type(e).__name__ == "RequestDone"]
    (summary,) = [e.summary for e in events if isinstance(e, TrialFinished)]
    return summary, rows


@pytest.fixture(scope="module")
def burst_target(stack, tmp_path_factory):  # noqa: F811 - the fixture imported above
    mp = pytest.MonkeyPatch()
    target = tiny_target(stack, tmp_path_factory.mktemp("burst"), mp, "invoke", "burst")
    yield target
    target.teardown()
    mp.undo()


def test_burst_above_the_account_limit_is_throttled(burst_target):
    summary, rows = _burst(burst_target, sizes=[6])
    assert len(rows) == 6 and len({r["intended_send"] for r in rows}) == 1  # all released at one instant
    assert summary["throttled"] == 2 and summary["ok"] == 4 and summary["cold_starts"] == 4
    assert summary["burst_environments"] == 4 and summary["burst_all_warm_ms"] is None
    assert all("TooManyRequestsException" in r["error"] for r in rows if r["status"] == "throttled")
    assert "4 new environments, 2 throttled" in summary["note"] and summary["invoke_path"] == "invoke"
    assert summary["invoke_overhead_p50_ms"] >= 0


def test_burst_within_the_limit_warms_n_environments(burst_target):
    summary, rows = _burst(burst_target, sizes=[3])
    assert summary["ok"] == 3 and summary["throttled"] == 0 and summary["burst_environments"] == 3
    cold_answers = sorted(r["receive"] for r in rows if r["cold"])
    assert summary["burst_all_warm_ms"] == pytest.approx((cold_answers[-1] - rows[0]["intended_send"]) * 1000.0)


def test_retried_throttles_and_reserved_concurrency(burst_target):
    lam = burst_target.manager.lam
    summary, rows = _burst(burst_target, sizes=[5], retry_throttled=True, max_wait_s=30)
    assert summary["ok"] == 5 and summary["throttled"] >= 1 and len(rows) == 5 + summary["throttled"]
    lam.put_function_concurrency(FunctionName=burst_target.function, ReservedConcurrentExecutions=2)
    try:
        summary, rows = _burst(burst_target, sizes=[3], cold=False)
        assert summary["ok"] == 2 and summary["throttled"] == 1 and summary["cold_starts"] == 0
    finally:
        lam.delete_function_concurrency(FunctionName=burst_target.function)


@pytest.mark.slow
def test_a_thousand_at_once(burst_target):
    """A thousand simultaneous invocations: the client holds a thousand connections, the emulator answers every
    one; at most the account's 4 run at once, the rest are throttled (each a row). On a loaded machine the thousand
    arrive over a while, so an environment that finished may take one more: more than 4 may succeed, never more than
    4 environments."""
    summary, rows = _burst(burst_target, sizes=[1000])
    assert len(rows) == 1000 and summary["ok"] + summary["throttled"] == 1000
    assert summary["ok"] >= 1 and summary["throttled"] >= 1 and summary["errors"] == 0
    assert summary["burst_environments"] <= 4
