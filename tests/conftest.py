import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable


def agent_env(token: str | None = None) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["PYTHONUNBUFFERED"] = "1"
    if token:
        env["PERFDESK_AGENT_TOKEN"] = token
    return env


@pytest.fixture
def tiny_profile(tmp_path):
    """Write a small local-server profile; returns a function taking the [[trials]] TOML text."""

    def make(trials: str, extra_target: str = "", workload: str = "") -> Path:
        text = f"""
[session]
name = "t"
output = "{tmp_path / "sessions"}"
metrics_interval_s = 0.5

[[targets]]
name = "server"
kind = "local-server"
wsgi_threads = 4
{extra_target}

[[workloads]]
name = "mnv2"
model = "mobilenet_v2"
images = "synthetic"
synthetic_size = [160, 120]
image_count = 3
threads = 1
{workload}

{trials}
"""
        path = tmp_path / "profile.toml"
        path.write_text(text)
        return path

    return make
