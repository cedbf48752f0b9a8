"""Provisioning a host over a real sshd: code upload, stamp, skip on the second run, weights, clean up."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from perfdesk.controllers.target import TargetError
from perfdesk.remote.provision import (
    Provisioner,
    ProvisionOptions,
    code_bundle,
    shipped_files,
    source_root,
)


def test_bundle_ships_exactly_the_agent_and_inference_code():
    files = shipped_files(source_root())
    assert {
        "perfdesk/__init__.py",
        "perfdesk/shipped/__init__.py",
        "perfdesk/shipped/agent.py",
        "perfdesk/shipped/wire.py",
    } <= set(files)
    assert any(f.startswith("perfdesk/shipped/inference/") for f in files)
    assert not any("controllers" in f or f.endswith(".pyc") or "ssh" in f for f in files)
    assert code_bundle()[0] == code_bundle()[0]  # reproducible: same bytes, same key


def test_provision_then_skip_then_clean(sshd, tmp_path):
    weights = tmp_path / "w.bin"
    weights.write_bytes(os.urandom(1000))
    remote_dir = str(tmp_path / "host")
    opts = ProvisionOptions(
        remote_dir=remote_dir, venv=sys.executable, packages=["flask", "gunicorn", "psutil"], keep_cache=True
    )
    lines: list[str] = []
    with sshd.transport() as t:
        first = Provisioner(t, opts, on_line=lines.append).provision("torch", str(weights))
        assert [v.split()[0] for v in first.steps.values()] == ["done", "done", "done"]
        assert first.python == sys.executable
        assert first.weights.startswith(remote_dir + "/cache/weights-")
        assert Path(first.weights).read_bytes() == weights.read_bytes()
        assert (Path(remote_dir) / "app/perfdesk/shipped/agent.py").is_file()
        assert not (Path(remote_dir) / "app/perfdesk/controllers").exists()
        stamp = json.loads((Path(remote_dir) / "stamp.json").read_text())
        assert stamp["code"] == code_bundle()[1]

        second = Provisioner(t, opts, on_line=lines.append).provision("torch", str(weights))
        assert second.skipped_all, second.steps
        assert second.weights == first.weights

        # changed code is uploaded again, the rest still skipped
        root = tmp_path / "src"
        for rel in shipped_files(source_root()):
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source_root() / rel, root / rel)
        with open(root / "perfdesk/shipped/agent.py", "a") as fh:
            fh.write("\n# changed\n")
        third = Provisioner(t, opts, code_root=root).provision("torch", str(weights))
        assert third.steps["code"].startswith("done") and third.steps["environment"].startswith("skipped")
        assert "# changed" in (Path(remote_dir) / "app/perfdesk/shipped/agent.py").read_text()

        # a vanished interpreter is noticed despite the stamp
        p = Provisioner(t, ProvisionOptions(remote_dir=remote_dir, venv="/nonexistent/python", packages=["flask"]))
        with pytest.raises(TargetError, match="no interpreter /nonexistent/python on the host"):
            p.provision("torch")
        p = Provisioner(t, ProvisionOptions(remote_dir=remote_dir, venv=sys.executable, packages=["no_such_pkg_x"]))
        with pytest.raises(TargetError, match='lacks no_such_pkg_x.*set venv = "venv"'):
            p.provision("torch")

        removed = Provisioner(t, opts).clean(keep_cache=True)
        assert remote_dir + "/run" in removed
        assert (Path(remote_dir) / "cache").is_dir() and not (Path(remote_dir) / "run").exists()
        Provisioner(t, opts).clean(keep_cache=False)
        assert not Path(remote_dir).exists()
    assert any("provisioned in" in line for line in lines)


def test_missing_python_is_a_clear_error(sshd, tmp_path):
    with sshd.transport() as t:
        p = Provisioner(t, ProvisionOptions(remote_dir=str(tmp_path), python="python9.9"))
        with pytest.raises(TargetError, match="no Python interpreter 'python9.9' on the host.*python3-venv"):
            p.provision("torch")


@pytest.mark.slow
def test_real_venv_install(sshd, tmp_path):
    """Creates a real venv over SSH and pip-installs a small package into it (needs PyPI)."""
    remote_dir = str(tmp_path / "host")
    opts = ProvisionOptions(
        remote_dir=remote_dir,
        python=sys.executable,
        venv="venv",
        system_site_packages=True,
        packages=["iniconfig"],
        install_timeout_s=300,
    )
    lines: list[str] = []
    with sshd.transport() as t:
        try:
            report = Provisioner(t, opts, on_line=lines.append).provision("torch")
        except TargetError as exc:
            if "install" in exc.step:
                pytest.skip(f"no package index reachable: {exc}")
            raise
        assert report.python == remote_dir + "/venv/bin/python"
        assert t.run(f"{report.python} -c 'import iniconfig'").rc == 0
        assert Provisioner(t, opts).provision("torch").skipped_all
