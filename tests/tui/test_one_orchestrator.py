"""One orchestrator: the desk's "run all" and a headless run take the same steps of the same :class:`Experiment`
(every call to its step methods is recorded) and end with the same trial statuses, session status and exit code.

The profile has a target whose deploy fails, a trial that names its targets and one that the targets cannot run
(memory: skipped), so the failure, skip and tear-down rules are compared too, not only the happy path.
"""

from __future__ import annotations

import functools
import io
import json
from pathlib import Path

import pandas as pd
from rich.console import Console

from perfdesk.controllers.exit_codes import ExitCode
from perfdesk.controllers.experiment import Experiment
from perfdesk.controllers.profile import load_profile
from perfdesk.controllers.target import TargetStatus
from perfdesk.headless import run_headless
from perfdesk.tui.app import PerfdeskApp
from tests.tui.conftest import SIZE, run, wait_for

PROFILE = """
[session]
name = "same"

[[targets]]
name = "a"
kind = "instant"

[[targets]]
name = "b"
kind = "instant"

[[targets]]
name = "broken"
kind = "instant"
fail_deploy = true

[[workloads]]
name = "tiny"
model = "mobilenet_v2"
images = "synthetic"
synthetic_size = [32, 32]
image_count = 2

[[trials]]
kind = "warm"
warmup = 1
count = 4

[[trials]]
name = "conc"
kind = "concurrency"
levels = [1, 2]
requests = 8
targets = ["a", "broken"]

[[trials]]
kind = "memory"
memory_mb = [512]
"""

STEPS = ("run_trials", "run_trial_on", "ensure_deployed", "deploy", "run_trial", "force_cold", "teardown")


def _name(arg) -> object:
    if isinstance(arg, list):
        return tuple(_name(a) for a in arg)
    return getattr(arg, "name", arg)


def record_steps(monkeypatch) -> list[tuple]:
    """Every call of the experiment's step methods, as (method, names of its arguments), in order."""
    calls: list[tuple] = []
    for step in STEPS:
        original = getattr(Experiment, step)

        def recorded(self, *args, _original=original, _step=step, **kwargs):
            calls.append((_step, *(_name(a) for a in args), *(f"{k}={_name(v)}" for k, v in kwargs.items())))
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(Experiment, step, functools.wraps(original)(recorded))
    return calls


def trial_statuses(session: Path) -> list[tuple]:
    trials = pd.read_csv(session / "trials.csv", keep_default_na=False)
    return [(r.trial, r.target, str(r.level), r.status) for r in trials.itertuples()]


def test_run_all_on_the_desk_is_the_headless_run(tmp_path, monkeypatch, instant_kind):
    path = tmp_path / "profile.toml"
    path.write_text(PROFILE)
    calls = record_steps(monkeypatch)

    code, headless_session = run_headless(
        load_profile(path), output=str(tmp_path / "headless"), console=Console(file=io.StringIO(), width=160)
    )
    headless_calls = list(calls)
    calls.clear()

    app = PerfdeskApp(load_profile(path), output=tmp_path / "desk", export_root=tmp_path / "exports")

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("a")
            await wait_for(pilot, lambda: app.job is None, 60, "the run-all job to end")
            await pilot.press("q")
            await wait_for(pilot, lambda: app.experiment.closed, 60, "the desk to close the session")

    run(scenario())
    desk_calls = list(calls)

    # the same steps, in the same order: deploy a target, run its trials, tear it down, the next one; then close
    assert desk_calls == headless_calls
    assert headless_calls[:8] == [
        ("run_trials", ("warm", "conc", "memory"), "tiny"),
        ("ensure_deployed", "a", "tiny"),
        ("deploy", "a", "tiny"),
        ("run_trial", "warm", "a", "tiny"),
        ("run_trial", "conc", "a", "tiny"),
        ("run_trial", "memory", "a", "tiny"),
        ("teardown", "a"),
        ("ensure_deployed", "b", "tiny"),
    ]

    expected = [
        ("warm", "a", "1", "completed"),
        ("conc", "a", "1", "completed"),
        ("conc", "a", "2", "completed"),
        ("memory", "a", "", "skipped"),
        ("warm", "b", "1", "completed"),
        ("memory", "b", "", "skipped"),
        ("warm", "broken", "", "failed"),
        ("conc", "broken", "", "failed"),
        ("memory", "broken", "", "failed"),
    ]
    assert trial_statuses(headless_session) == expected
    assert trial_statuses(app.experiment.path) == expected
    for session in (headless_session, app.experiment.path):
        assert json.loads((session / "manifest.json").read_text())["status"] == "failed"
        assert len(pd.read_csv(session / "requests.csv")) == 4 + 4 + 8 + 8  # warm on a and b, conc 1 and 2 on a
    # run_app returns the experiment's exit code, the one headless returns
    assert code is ExitCode.FAILED and app.experiment.exit_code is ExitCode.FAILED
    assert all(t.state is TargetStatus.TORN_DOWN for t in app.experiment.targets.values())
