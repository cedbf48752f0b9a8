"""The dependency rules of DESIGN.md: read statically from every module's imports (top-level and deferred), and
checked in fresh interpreters for what a front end or a deployed function really loads."""

import ast
import subprocess
from pathlib import Path

import pytest

from tests.conftest import PYTHON, agent_env

PKG = Path(__file__).resolve().parents[2] / "perfdesk"

#: package -> the perfdesk packages it must never import
FORBIDDEN = {
    "shipped": {"controllers", "remote", "lambda_pkg", "verdict", "tui", "cli", "headless"},
    "controllers": {"remote", "lambda_pkg", "verdict", "tui", "cli", "headless"},
    "remote": {"lambda_pkg", "verdict", "tui", "cli", "headless"},
    "lambda_pkg": {"remote", "verdict", "tui", "cli", "headless"},
    "verdict": {"remote", "lambda_pkg", "tui", "cli", "headless"},
}
#: package -> third-party top-level modules it must never import
FORBIDDEN_THIRD_PARTY = {
    "shipped": {"textual", "rich", "pandas", "scipy", "paramiko", "pydantic"},
    "controllers": {"textual", "rich", "matplotlib"},
    "remote": {"textual", "rich"},
    "lambda_pkg": {"textual", "rich"},
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
    return out


def _package_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "perfdesk" and len(parts) > 1 else None


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_static_import_rules(package):
    bad = []
    for path in sorted((PKG / package).rglob("*.py")):
        for mod in _imports(path):
            top = mod.split(".")[0]
            inner = _package_of(mod)
            if inner in FORBIDDEN[package] or top in FORBIDDEN_THIRD_PARTY.get(package, set()):
                bad.append(f"{path.relative_to(PKG.parent)} imports {mod}")
    assert not bad, "\n".join(bad)


def test_the_rules_see_every_package():
    packages = {p.name for p in PKG.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert packages == set(FORBIDDEN) | {"tui"}


def test_shipped_inference_has_no_import_cycle():
    """The runtimes import the engine base; only the loader picks a runtime; nothing imports the loader back."""
    inf = PKG / "shipped" / "inference"
    for path in inf.glob("runtime_*.py"):
        assert not {m for m in _imports(path) if m.endswith("loader")}, path
    assert not {m for m in _imports(inf / "base.py") if "runtime_" in m}


def _modules_after(imports: list[str]) -> set[str]:
    code = "import sys\n" + "".join(f"import {m}\n" for m in imports) + "print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([PYTHON, "-c", code], env=agent_env(), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return set(out.stdout.split())


CORE = [
    "perfdesk.controllers." + m
    for m in (
        "target",
        "results",
        "events",
        "workload",
        "profile",
        "stats",
        "loadgen",
        "trials",
        "session",
        "experiment",
    )
]


def test_core_does_not_load_the_front_ends_or_the_verdict():
    mods = _modules_after(CORE + ["perfdesk.remote.local", "perfdesk.remote.agent_target"])
    assert not {m for m in mods if m.split(".")[0] in ("textual", "rich", "matplotlib")}
    assert not {m for m in mods if m.startswith("perfdesk.verdict")}
    # providers are imported only when a profile uses them
    assert "paramiko" not in mods and "boto3" not in mods


def test_shipped_code_does_not_load_the_client_side():
    mods = _modules_after(
        ["perfdesk.shipped.agent", "perfdesk.shipped.handler", "perfdesk.shipped.wire", "perfdesk.shipped.inference"]
    )
    client = {m for m in mods if m.startswith("perfdesk.") and not m.startswith("perfdesk.shipped")}
    assert not client
    assert not {m for m in mods if m.split(".")[0] in ("pydantic", "pandas", "textual", "rich")}
