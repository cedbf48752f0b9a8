"""Faults of a function target: the emulator (a process of its own here) killed mid-trial, and a function
throttled on every request. The real handler with mobilenet_v2 (random weights, ONNX) on the emulator; each test
checks how soon the level ended after the fault, its status and reason, the answers kept, and that no emulator or
execution environment is left."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from perfdesk.controllers.events import EventBus
from perfdesk.controllers.exit_codes import ExitCode
from perfdesk.controllers.experiment import Experiment
from perfdesk.controllers.profile import load_profile
from tests.conftest import agent_env
from tests.faults import Chaos, assert_answers_kept, level, processes

pytestmark = pytest.mark.slow


def _profile(tmp_path, trials: str, endpoint: str | None = None):
    path = tmp_path / "fn.toml"
    path.write_text(
        f"""
[session]
name = "fn-faults"
output = "{tmp_path / "sessions"}"

[[targets]]
name = "fn"
kind = "local-lambda"
memory_mb = 3008
timeout_s = 30
idle_s = 120
{f'endpoint_url = "{endpoint}"' if endpoint else ""}

[[workloads]]
name = "mnv2"
model = "mobilenet_v2"
runtime = "onnx"
images = "synthetic"
synthetic_size = [160, 120]
image_count = 2
"""
        + trials
    )
    return load_profile(path)


TRIALS = '\n[[trials]]\nname = "long"\nkind = "warm"\nwarmup = 1\ncount = 2000\nunresponsive_s = 3\n'


@pytest.fixture
def emulator_process(tmp_path):
    """``perfdesk emulator`` as its own process on a free port (so that a test may kill or stop it)."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "perfdesk.lambda_pkg.cli",
            "--port",
            "0",
            "--quiet",
            "--work-dir",
            str(tmp_path / "emu"),
        ],
        stdout=subprocess.PIPE,
        env=agent_env(),
        start_new_session=True,
    )
    endpoint = json.loads(proc.stdout.readline())["endpoint"]
    yield proc, endpoint
    for sig in (signal.SIGCONT, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
    proc.wait()


@pytest.mark.parametrize("fault", ["killed", "hung"])
def test_emulator_killed_mid_trial_ends_the_level(tmp_path, emulator_process, fault):
    proc, endpoint = emulator_process
    exp = Experiment(_profile(tmp_path, TRIALS, endpoint), bus=EventBus())
    sig = signal.SIGKILL if fault == "killed" else signal.SIGSTOP
    chaos = Chaos(lambda: os.killpg(proc.pid, sig), after=10, trial="long")
    exp.bus.subscribe(chaos)
    outcome = exp.run()

    long = level(outcome.session_path, "long")
    assert long["status"] == "failed" and long["note"].startswith("target lost: "), long
    if fault == "hung":
        assert "not answering" in long["note"], long["note"]
    assert chaos.noticed_s("long", "fn") < 30
    assert "of 2,000 planned requests not sent" in long["note"]
    assert outcome.exit_code == ExitCode.FAILED and outcome.lost
    assert_answers_kept(outcome.session_path, chaos)
    # the whole run ends soon after: teardown asks a hung emulator first instead of waiting out each API call
    # (once it waited 3 x 60 s at the session's close)
    assert time.time() - chaos.fault_at < 60


def _fault_mid_trial(tmp_path, fault) -> tuple:
    """Run the long warm trial on a function; ``fault(target)`` after its 5th answer. Returns the outcome, the
    level's trials.csv row and the chaos recorder, having checked what every function fault shares: the level
    failed, the target was not lost (it answers), every answer was kept and no execution environment is left."""
    exp = Experiment(_profile(tmp_path, TRIALS), bus=EventBus())
    target = exp.targets["fn"]
    chaos = Chaos(lambda: fault(target), after=5, trial="long")
    exp.bus.subscribe(chaos)
    outcome = exp.run()

    long = level(outcome.session_path, "long")
    assert long["status"] == "failed", long
    assert outcome.exit_code == ExitCode.FAILED and not outcome.lost  # an answer, not a target gone
    assert_answers_kept(outcome.session_path, chaos)
    assert processes("perfdesk", "bootstrap", str(tmp_path)) == []  # no execution environment left
    return outcome, long, chaos


def test_function_throttled_on_every_request_ends_the_level(tmp_path):
    def throttle(target) -> None:  # reserved concurrency 0: Lambda throttles every invocation
        target._manager().lam.put_function_concurrency(FunctionName=target.function, ReservedConcurrentExecutions=0)

    _, long, chaos = _fault_mid_trial(tmp_path, throttle)
    assert long["note"].startswith("failing every request: throttled x20 (TooManyRequestsException"), long["note"]
    assert int(long["throttled"]) >= 20 and chaos.noticed_s("long", "fn") < 30


SLOW_HANDLER = b"import time\n\ndef lambda_handler(event, context):\n    time.sleep(5)\n"


def test_function_timing_out_on_every_request_ends_the_level(tmp_path):
    """The function's code replaced mid-trial by one that outlives its 1 s timeout (as a bad deploy would): every
    invocation ends "Task timed out", and the level ends after 20 of them, not after the 2,000 it planned."""
    from perfdesk.lambda_pkg.builders import in_memory_zip

    def slow_code(target) -> None:
        lam = target._manager().lam
        files = {"perfdesk/__init__.py": b"", "perfdesk/shipped/__init__.py": b""}
        code = in_memory_zip({**files, "perfdesk/shipped/handler.py": SLOW_HANDLER})
        lam.update_function_configuration(FunctionName=target.function, Timeout=1)
        lam.get_waiter("function_updated_v2").wait(FunctionName=target.function)
        lam.update_function_code(FunctionName=target.function, ZipFile=code)
        lam.get_waiter("function_updated_v2").wait(FunctionName=target.function)

    _, long, chaos = _fault_mid_trial(tmp_path, slow_code)
    assert long["note"].startswith("failing every request: timeout x20"), long["note"]
    assert int(long["timeouts"]) >= 20
    # 20 invocations of at least 1 s each, one at a time, plus the two updates
    assert chaos.noticed_s("long", "fn") < 60
    assert "of 2,000 planned requests not sent" in long["note"]
