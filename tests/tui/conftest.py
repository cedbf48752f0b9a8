"""Helpers of the TUI tests: the test profile, an app factory and a wait loop for Pilot.

The tests are plain functions running their Pilot scenario with ``asyncio.run`` (no async pytest plugin needed).
"""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

import pytest

from perfdesk.controllers.profile import load_profile
from tests.tui.instant_target import use_instant_kind

DATA = Path(__file__).parent / "data"
SIZE = (160, 48)


@pytest.fixture
def profile():
    return load_profile(DATA / "tui.toml")


@pytest.fixture
def instant_kind(monkeypatch):
    """The in-process "instant" target kind, registered for this test only."""
    use_instant_kind(monkeypatch)


@pytest.fixture
def saved_sessions(tmp_path) -> list[Path]:
    """Two recorded sessions (real runs of the local server, copied from tests/tui/data/sessions)."""
    root = tmp_path / "sessions"
    root.mkdir()
    out = []
    for src in sorted((DATA / "sessions").iterdir()):
        shutil.copytree(src, root / src.name)
        out.append(root / src.name)
    return out


async def wait_for(pilot, condition, timeout: float, what: str) -> float:
    """Let the app run until ``condition()`` holds; returns the seconds it took, fails naming ``what``."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await pilot.pause(0.05)
    return time.monotonic() - start


def run(coro):
    return asyncio.run(coro)
