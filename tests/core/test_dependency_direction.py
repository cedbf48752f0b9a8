"""The dependency rules of DESIGN.md, checked in fresh interpreters."""

import subprocess

from tests.conftest import PYTHON, agent_env

CORE = ["perfdesk.controllers." + m for m in
        ("target", "results", "events", "workload", "profile", "stats", "loadgen", "trials", "session", "experiment",
         "export")] + ["perfdesk.remote.local", "perfdesk.remote.agent_target"]


def _modules_after(imports: list[str]) -> set[str]:
    code = "import sys\n" + "".join(f"import {m}\n" for m in imports) + "print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([PYTHON, "-c", code], env=agent_env(), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return set(out.stdout.split())


def test_core_does_not_load_the_front_ends():
    mods = _modules_after(CORE)
    assert not {m for m in mods if m.split(".")[0] in ("textual", "rich")}
    # providers are imported only when a profile uses them
    assert "paramiko" not in mods and "boto3" not in mods


def test_shipped_agent_does_not_load_the_controller_side():
    mods = _modules_after(["perfdesk.remote.agent", "perfdesk.inference"])
    assert not {m for m in mods if m.startswith("perfdesk.controllers")}
