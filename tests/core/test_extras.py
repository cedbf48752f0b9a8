"""The light install: ``pip install perfdesk`` is the whole controller, the inference runtimes are extras.

A base-only environment is played in the full one by a child interpreter whose import system refuses the extras'
modules (a ``sys.meta_path`` finder raising ModuleNotFoundError, as a missing package does). In it, checking and
opening a profile whose workload uses torch must work and load none of them; deploying a local target that needs a
runtime must fail with a message naming the extra to install.
"""

import json
import subprocess
import textwrap
import tomllib

import pandas as pd
import pytest

from perfdesk.controllers.extras import EXTRAS, MissingExtra, install_hint, missing_modules, require
from tests.conftest import PYTHON, ROOT, agent_env

#: the modules of the extras; none may be loaded (or even asked for by perfdesk) on the base install's paths
HEAVY = ("torch", "torchvision", "onnx", "onnxruntime", "tensorflow", "av", "awslambdaric")
#: distribution name -> import name, where they differ
IMPORT_NAME = {"tensorflow-cpu": "tensorflow"}

BASE_ONLY = textwrap.dedent(
    f"""
    import importlib.abc, json, sys
    HEAVY = {HEAVY!r}
    ASKED = []  # (module, file of the import statement) of every refused import

    class BaseInstallOnly(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in HEAVY:
                f = sys._getframe(1)
                while f is not None and f.f_code.co_filename.startswith("<frozen"):
                    f = f.f_back
                ASKED.append((name, f.f_code.co_filename if f is not None else "?"))
                raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
            return None

    sys.meta_path.insert(0, BaseInstallOnly())

    def report(**facts):
        loaded = sorted({{m.split(".")[0] for m in sys.modules}} & set(HEAVY))
        print("RESULT " + json.dumps({{"loaded": loaded, "asked": ASKED, **facts}}), flush=True)
    """
)


def _run_base_only(body: str, cwd, timeout: float = 180) -> tuple[subprocess.CompletedProcess, dict]:
    proc = subprocess.run(
        [PYTHON, "-c", BASE_ONLY + textwrap.dedent(body)],
        cwd=cwd,
        env=agent_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, f"the child printed no result (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc, json.loads(lines[-1][len("RESULT ") :])


def _asked_by_perfdesk(result: dict) -> list:
    package = str(ROOT / "perfdesk")
    return [(name, where) for name, where in result["asked"] if where.startswith(package)]


REMOTE_PROFILE = """
[session]
name = "light"
output = "{out}"

[[targets]]
name = "host"
kind = "ssh"
host = "gpu-box.example.invalid"
user = "ubuntu"

[[targets]]
name = "fn"
kind = "lambda"
region = "eu-west-1"
memory_mb = 2048

[[workloads]]
name = "r50"
model = "resnet50"
runtime = "torch"

[[trials]]
kind = "warm"
count = 5

[[trials]]
kind = "concurrency"
levels = [1, 4]
requests = 20
"""


def test_base_install_checks_and_opens_a_torch_profile_with_ssh_and_lambda_targets(tmp_path):
    profile = tmp_path / "remote.toml"
    profile.write_text(REMOTE_PROFILE.format(out=tmp_path / "sessions"))
    proc, result = _run_base_only(
        f"""
        try:
            import torch  # the finder works: a base install has no torch
        except ModuleNotFoundError:
            blocked = True
        else:
            blocked = False
        from perfdesk.cli import main
        check = main(["--check", {str(profile)!r}])
        after_check = sorted({{m.split(".")[0] for m in sys.modules}} & set(HEAVY))

        import asyncio
        from perfdesk.controllers.profile import load_profile
        from perfdesk.tui.app import PerfdeskApp

        app = PerfdeskApp(load_profile({str(profile)!r}), output={str(tmp_path / "sessions")!r})

        async def desk():
            async with app.run_test(size=(160, 48)) as pilot:
                await pilot.pause(0.3)
                targets = sorted(app.experiment.targets)
                await pilot.press("q")
                for _ in range(400):
                    if app.experiment.closed:
                        break
                    await pilot.pause(0.05)
                return targets

        targets = asyncio.run(desk())
        report(blocked=blocked, check=check, after_check=after_check, targets=targets,
               closed=app.experiment.closed, return_code=app.return_code)
        """,
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert result["blocked"] is True
    assert result["check"] == 0
    assert f"{profile}: ok (2 targets, 1 workloads, 2 trials)" in proc.stdout
    assert result["after_check"] == []
    assert result["targets"] == ["fn", "host"]
    assert result["closed"] is True and result["return_code"] == 0
    assert result["loaded"] == []
    assert _asked_by_perfdesk(result) == [], "perfdesk itself tried to import an extra's module"


LOCAL_PROFILE = """
[session]
name = "light-local"
output = "{out}"

[[targets]]
name = "server"
kind = "local-server"

[[targets]]
name = "fn"
kind = "local-lambda"
memory_mb = 1024

[[workloads]]
name = "mnv2"
model = "mobilenet_v2"
runtime = "torch"
images = "synthetic"

[[trials]]
kind = "warm"
warmup = 1
count = 2
"""


def test_base_install_deploy_of_a_local_target_names_the_extra(tmp_path):
    profile = tmp_path / "local.toml"
    profile.write_text(LOCAL_PROFILE.format(out=tmp_path / "sessions"))
    proc, result = _run_base_only(
        f"""
        from perfdesk.cli import main
        code = main(["--headless", {str(profile)!r}])
        report(code=code)
        """,
        tmp_path,
    )
    out = " ".join((proc.stdout + proc.stderr).split())  # rich wraps long lines
    assert result["code"] == 1, out
    assert "Traceback" not in out
    assert (
        "server: deploy: the agent for workload 'mnv2' on the torch runtime needs torch, torchvision, "
        "not installed here: pip install 'perfdesk[torch]'" in out
    )
    # the function's runtime comes in its layer, not from this machine: the emulator needs only its own extra
    assert (
        "fn: deploy: a function of workload 'mnv2' on the emulator needs awslambdaric, "
        "not installed here: pip install 'perfdesk[emulator]'" in out
    )
    assert f"pip install -e '{ROOT}[torch]'" in out  # run from a checkout: how to install there
    assert result["loaded"] == []
    # the session says it too, and nothing was started: no agent process, no emulator
    (session,) = (tmp_path / "sessions").iterdir()
    log = (session / "log.txt").read_text()
    assert log.count("not installed here: pip install 'perfdesk[") == 2
    assert "starting agent" not in log and "emulator on" not in log
    trials = pd.read_csv(session / "trials.csv")
    assert sorted(trials["target"]) == ["fn", "server"] and set(trials["status"]) == {"failed"}


def test_the_extras_are_the_pyproject_extras():
    """extras.EXTRAS names the same packages as pyproject.toml, `all` is every one, and the base has none."""
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    optional = meta["optional-dependencies"]

    def names(reqs: list[str]) -> set[str]:
        out = set()
        for req in reqs:
            dist = req.split(";")[0].split("[")[0]
            for op in "<>=!~ ":
                dist = dist.split(op)[0]
            out.add(IMPORT_NAME.get(dist, dist))
        return out

    for extra, modules in EXTRAS.items():
        assert names(optional[extra]) == set(modules), extra
    assert names(optional["all"]) == set().union(*EXTRAS.values())
    assert not names(meta["dependencies"]) & set(HEAVY)
    assert {"ruff", "mypy", "pytest"} <= names(optional["test"])


def test_require_names_only_the_extras_that_are_missing(monkeypatch):
    monkeypatch.setitem(EXTRAS, "video", ("json",))
    monkeypatch.setitem(EXTRAS, "torch", ("json", "perfdesk_no_such_module"))
    assert missing_modules(["json", "perfdesk_no_such_module"]) == ["perfdesk_no_such_module"]
    require("video", what="nothing missing")  # does not raise
    with pytest.raises(MissingExtra) as info:
        require("video", "torch", what="a test")
    assert info.value.extras == ["torch"] and info.value.missing == ["perfdesk_no_such_module"]
    assert str(info.value) == (
        "a test needs perfdesk_no_such_module, not installed here: pip install 'perfdesk[torch]' "
        f"(from this checkout: pip install -e '{ROOT}[torch]')"
    )
    assert install_hint() == f"pip install 'perfdesk' (from this checkout: pip install -e '{ROOT}')"
