"""The memory sweep on a local function through the experiment runner: each size's rows carry that size in the
REPORT figures, the first row after a change is cold, and later trials run at the configured size again."""

import subprocess

import pandas as pd
import pytest

from tests.conftest import PYTHON, agent_env

pytestmark = pytest.mark.slow


def test_memory_sweep_then_warm_at_the_configured_size(tmp_path):
    profile = tmp_path / "fn.toml"
    profile.write_text(f"""
[session]
name = "fn"
output = "{tmp_path / "sessions"}"

[[targets]]
name = "fn"
kind = "local-lambda"
memory_mb = 1769
timeout_s = 120

[[workloads]]
model = "mobilenet_v2"
runtime = "onnx"        # what fits a zip function and its layers (PyTorch does not, on Lambda or the emulator)
images = "synthetic"
synthetic_size = [96, 96]
image_count = 2
threads = 1

[[trials]]
kind = "memory"
memory_mb = [1024]
warmup = 0
count = 2

[[trials]]
kind = "warm"
warmup = 1
count = 3
""")
    proc = subprocess.run(
        [PYTHON, "-m", "perfdesk", "--headless", str(profile)],
        env=agent_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    session = next((tmp_path / "sessions").iterdir())
    req = pd.read_csv(session / "requests.csv")
    mem = req[req.trial == "memory"].sort_values("seq")
    assert len(mem) == 3 and (mem.status == "ok").all()
    assert (mem.memory_size_mb == 1024).all()
    assert bool(mem.iloc[0].cold) and mem.iloc[0].init_ms > 0 and not mem.iloc[1:].cold.any()
    assert (mem.billed_ms > 0).all() and (mem.max_memory_used_mb > 0).all()
    warm = req[req.trial == "warm"]
    assert len(warm) == 3 and (warm.memory_size_mb == 1769).all()
