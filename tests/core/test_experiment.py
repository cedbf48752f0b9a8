"""The experiment's steps, the ones both front ends call: deploy one target, run one trial, run all; the failure,
tear-down and status rules; target states. On the in-process "instant" target (tests/tui/instant_target.py), so
the orchestration is what is tested, not a model."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from perfdesk.controllers.events import EventBus, TargetState
from perfdesk.controllers.exit_codes import ExitCode
from perfdesk.controllers.experiment import Experiment
from perfdesk.controllers.profile import load_profile
from perfdesk.controllers.target import TargetStatus
from tests.tui.instant_target import use_instant_kind

PROFILE = """
[session]
name = "orch"
output = "{out}"

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
name = "w1"
model = "mobilenet_v2"
images = "synthetic"
synthetic_size = [32, 32]
image_count = 2

[[workloads]]
name = "w2"
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
levels = [2]
requests = 10
targets = ["a", "broken"]

[[trials]]
kind = "memory"
memory_mb = [512]
"""


@pytest.fixture
def experiment(tmp_path, monkeypatch):
    use_instant_kind(monkeypatch)
    path = tmp_path / "profile.toml"
    path.write_text(PROFILE.format(out=tmp_path / "sessions"))
    exp = Experiment(load_profile(path), bus=EventBus())
    yield exp
    exp.close()


def statuses(exp: Experiment) -> list[tuple]:
    return [(s["workload"], s["trial"], s["target"], s["level"], s["status"]) for s in exp.summaries]


def manifest(exp: Experiment) -> dict:
    return json.loads((Path(exp.path) / "manifest.json").read_text())


def test_target_status_is_text_and_one_notion_of_ready(experiment):
    a = experiment.targets["a"]
    assert a.state is TargetStatus.NOT_DEPLOYED and f"{a.state}" == "not deployed" and a.state == "not deployed"
    w1, w2 = experiment.profile.workloads
    assert not a.is_ready()
    a.deploy(w1)
    assert a.is_ready() and a.is_ready(w1) and not a.is_ready(w2)
    a.set_state("cold")  # the value is accepted; a function after a forced cold start is still serving
    assert a.state is TargetStatus.COLD and a.is_ready(w1)
    for state in (TargetStatus.DEPLOYING, TargetStatus.FAILED, TargetStatus.TORN_DOWN):
        a.set_state(state)
        assert not a.is_ready()
    with pytest.raises(ValueError):
        a.set_state("warm")  # not a state


def test_ensure_deployed_deploys_only_what_is_not_ready(experiment):
    seen: list[TargetState] = []
    experiment.bus.subscribe(lambda e: seen.append(e) if isinstance(e, TargetState) else None)
    a = experiment.targets["a"]
    w1, w2 = experiment.profile.workloads
    assert experiment.ensure_deployed(a, w1) and experiment.ensure_deployed(a, w1)
    assert a.deploys == 1
    assert experiment.ensure_deployed(a, w2)  # serving another workload: torn down, then deployed with w2
    assert a.deploys == 2 and a.workload is w2 and a.state is TargetStatus.READY
    D, R, T = TargetStatus.DEPLOYING, TargetStatus.READY, TargetStatus.TORN_DOWN
    assert [e.state for e in seen] == [D, R, T, D, R]

    broken = experiment.targets["broken"]
    assert not experiment.ensure_deployed(broken, w1)
    assert broken.state is TargetStatus.FAILED and "told to fail" in experiment.failures[-1]
    assert experiment.status == "failed" and experiment.exit_code is ExitCode.FAILED


def test_run_trial_on_honours_the_trial_targets_and_keeps_them_deployed(experiment):
    experiment.open()
    conc = next(t for t in experiment.profile.trials if t.name == "conc")
    warm = next(t for t in experiment.profile.trials if t.name == "warm")
    assert experiment.run_trial_on(conc) == 1  # a ran it; broken failed to deploy; b is not named
    assert experiment.run_trial_on(warm, targets=["b"]) == 1
    assert experiment.run_trial_on(conc, targets=["b"]) == 0  # conc does not name b
    assert statuses(experiment) == [
        ("w1", "conc", "a", 2, "completed"),
        ("w1", "conc", "broken", "", "failed"),
        ("w1", "warm", "b", 1, "completed"),
    ]
    assert experiment.targets["a"].is_ready() and experiment.targets["b"].is_ready()
    experiment.close()
    assert all(t.state is TargetStatus.TORN_DOWN for t in experiment.targets.values())
    assert experiment.status == "failed" and manifest(experiment)["status"] == "failed"


def test_run_is_run_trials_per_workload_with_the_failure_and_teardown_rules(experiment):
    deployed: list[tuple[str, str]] = []
    experiment.bus.subscribe(lambda e: deployed.append((e.target, e.state)) if isinstance(e, TargetState) else None)
    outcome = experiment.run()
    per_workload = [
        ("warm", "a", 1, "completed"),
        ("conc", "a", 2, "completed"),
        ("memory", "a", "", "skipped"),
        ("warm", "b", 1, "completed"),
        ("memory", "b", "", "skipped"),
        ("warm", "broken", "", "failed"),
        ("conc", "broken", "", "failed"),
        ("memory", "broken", "", "failed"),
    ]
    assert statuses(experiment) == [(w, *s) for w in ("w1", "w2") for s in per_workload]
    notes = [s["note"] for s in experiment.summaries if s["target"] == "broken"]
    assert all(n.startswith("deploy failed: broken: deploy: told to fail") for n in notes), notes
    # one target at a time: each is torn down before the next one deploys
    D, R, T = TargetStatus.DEPLOYING, TargetStatus.READY, TargetStatus.TORN_DOWN
    a_and_b = [(t, s) for t, s in deployed if t != "broken"]
    assert a_and_b[:6] == [("a", D), ("a", R), ("a", T), ("b", D), ("b", R), ("b", T)]
    assert experiment.targets["a"].deploys == 2
    assert outcome.status == "failed" and outcome.exit_code is ExitCode.FAILED == experiment.exit_code
    assert manifest(experiment)["status"] == "failed"
    trials = pd.read_csv(Path(outcome.session_path) / "trials.csv")
    assert len(trials) == len(experiment.summaries)


def test_stop_makes_the_session_interrupted_and_resume_lets_the_next_step_run(experiment):
    experiment.open()
    warm = experiment.profile.trials[0]
    experiment.stop()
    assert experiment.run_trials(experiment.profile.trials) == 0  # stopped: nothing starts
    experiment.resume()
    assert experiment.run_trial_on(warm, targets=["a"]) == 1
    assert statuses(experiment) == [("w1", "warm", "a", 1, "completed")]
    experiment.close()
    assert experiment.status == "interrupted" and experiment.exit_code is ExitCode.INTERRUPTED
    assert manifest(experiment)["status"] == "interrupted"
    experiment.stop()  # after closing: the status stays what it was
    assert experiment.outcome().exit_code is ExitCode.INTERRUPTED


def test_a_clean_session_completes(experiment):
    experiment.open()
    assert experiment.run_trial_on(experiment.profile.trials[0], targets=["a", "b"]) == 2
    assert experiment.status == "completed"
    experiment.close()
    assert experiment.exit_code is ExitCode.OK and manifest(experiment)["status"] == "completed"
