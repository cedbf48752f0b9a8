"""The optional parts of the install (pyproject.toml's extras) and the message a missing one gives.

``pip install perfdesk`` is the whole controller (the desk, headless runs, SSH, EC2 and Lambda targets, reports,
teardown, the emulator's control plane, the agent's web stack). What runs a model or reads a video on this machine
is an extra. Code that needs one asks :func:`require` before it starts anything: it looks the modules up with
``find_spec`` (nothing is imported, so a check costs no torch import) and raises :class:`MissingExtra`, whose
message names the extra to install, instead of letting a subprocess die on an ``ImportError``::

    local: deploy: the torch runtime needs torch, torchvision, not installed here: pip install 'perfdesk[torch]'
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from pathlib import Path

#: extra -> the modules (import names) it provides; the same packages as pyproject.toml's optional dependencies.
EXTRAS: dict[str, tuple[str, ...]] = {
    "torch": ("torch", "torchvision"),
    # ONNX models are exported from the torchvision model (torch.onnx needs onnx), so the export needs torch too
    "onnx": ("onnxruntime", "onnx", "torch", "torchvision"),
    "tensorflow": ("tensorflow",),
    "video": ("av",),
    "emulator": ("awslambdaric", "moto"),
    # [load] engine = "locust": the master and the local workers run on this machine's interpreter
    "locust": ("locust",),
}
#: What the agent needs besides an inference runtime: part of the base install, checked all the same (a trimmed
#: environment gets a message, not an agent dying at start-up).
AGENT_MODULES = ("flask", "gunicorn", "psutil")


def missing_modules(modules: Iterable[str]) -> list[str]:
    """The modules of ``modules`` this interpreter cannot import (looked up, not imported)."""
    out = []
    for name in modules:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # a finder that refuses the name, or a module without a spec
            found = False
        if not found:
            out.append(name)
    return out


def install_hint(*extras: str) -> str:
    """How to install ``extras`` (none: the base install): from the registry, and from this checkout where perfdesk
    runs from one."""
    spec = f"[{','.join(extras)}]" if extras else ""
    hint = f"pip install 'perfdesk{spec}'"
    root = Path(__file__).resolve().parents[2]
    if (root / "pyproject.toml").is_file():
        hint += f" (from this checkout: pip install -e '{root}{spec}')"
    return hint


class MissingExtra(Exception):
    """Something needs modules of extras that are not installed; the message says which extras to install."""

    def __init__(self, what: str, extras: list[str], missing: list[str]):
        self.what, self.extras, self.missing = what, extras, missing
        super().__init__(f"{what} needs {', '.join(missing)}, not installed here: {install_hint(*extras)}")


def require(*extras: str, what: str) -> None:
    """Raise :class:`MissingExtra` naming each of ``extras`` one of whose modules is missing (``what`` needs them)."""
    missing: list[str] = []
    short: list[str] = []
    for extra in extras:
        gone = [m for m in missing_modules(EXTRAS[extra]) if m not in missing]
        if gone:
            missing += gone
            short.append(extra)
    if missing:
        raise MissingExtra(what, short, missing)


def require_agent(runtime: str, what: str = "the inference agent") -> None:
    """The agent serving ``runtime`` must start in this interpreter: its web stack (base install) and the runtime
    (the extras are named after the runtimes: torch, onnx, tensorflow)."""
    missing = missing_modules(AGENT_MODULES)
    if missing:
        raise MissingExtra(what, [], missing)
    require(runtime, what=f"{what} on the {runtime} runtime")
