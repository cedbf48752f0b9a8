"""End to end: the bundled sample trace replayed (compressed hard) at a local server and a function on perfdesk's
Lambda emulator, the idle trial measuring the emulator's eviction, and the month of it projected for both."""

from __future__ import annotations

import re
import subprocess

import pandas as pd
import pytest

from perfdesk.controllers.results import parse_phases
from tests.conftest import PYTHON, ROOT, agent_env

pytestmark = pytest.mark.slow

PROFILE = """
[session]
name = "traffic"
output = "{out}"

[[targets]]
name = "server"
kind = "local-server"
wsgi_threads = 4

[[targets]]
name = "fn"
kind = "local-lambda"
memory_mb = 1769
timeout_s = 60
concurrency = 4
idle_s = 2              # the emulator reclaims an idle environment after 2 s: what the idle trial measures

[[workloads]]
name = "mnv2"
model = "mobilenet_v2"
runtime = "onnx"
images = "synthetic"
synthetic_size = [160, 120]
image_count = 2
threads = 1

[traffic]
pattern = "trace"
file = "{trace}"

[prices.targets.server]
instance_type = "c5.xlarge"

[[trials]]
kind = "cold"
count = 1

[[trials]]
kind = "replay"
compress = 30           # three afternoon minutes in six seconds
start_minute = 840
minutes = 3

[[trials]]
kind = "idle"
targets = ["fn"]
gaps_s = [0.5, 4]
repeats = 2
"""


def test_replay_and_idle_project_a_month_for_both(tmp_path):
    trace = ROOT / "profiles" / "traces" / "sample_invocations_per_function.csv"
    profile = tmp_path / "traffic.toml"
    profile.write_text(PROFILE.format(out=tmp_path / "sessions", trace=trace))
    proc = subprocess.run(
        [PYTHON, "-m", "perfdesk", "--headless", str(profile)],
        env=agent_env(),
        capture_output=True,
        text=True,
        timeout=500,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-5000:]
    session = next((tmp_path / "sessions").iterdir())
    trials = pd.read_csv(session / "trials.csv")
    replay = trials[trials["trial_kind"] == "replay"]
    assert sorted(replay["target"]) == ["fn", "server"] and (replay["status"] == "completed").all()
    assert (replay["loop"] == "open").all() and (replay["count"] > 10).all()
    reqs = pd.read_csv(session / "requests.csv")
    idle = reqs[reqs["trial_kind"] == "idle"]
    assert len(idle) == 4 and (idle["status"] == "ok").all()
    assert not idle[idle["level"] == 0.5]["cold"].any()  # kept warm across half a second
    evicted = idle[idle["level"] == 4]
    assert evicted["cold"].all() and (evicted["init_ms"] > 0).all()  # reclaimed after 2 s: Init Duration reported
    # the cold starts' phases are recorded: the function's init answer and the server's forced restart
    fn_cold = reqs[(reqs["target"] == "fn") & reqs["cold"]]
    assert {"inference_import_ms", "weight_load_ms", "first_inference_ms"} <= set(
        parse_phases(fn_cold["cold_phases"].iloc[0])
    )
    srv_cold = reqs[(reqs["target"] == "server") & reqs["cold"]]
    assert {"process_start_ms", "model_load_ms", "import_ms"} <= set(parse_phases(srv_cold["cold_phases"].iloc[0]))
    # the month of the sample trace, for both paradigms, with a cost and a p99 each
    text = " ".join(out.split())
    assert "Your traffic (trace sample_invocations_per_function.csv): 10,540 requests per 1-day period" in text
    server = re.search(
        r"server \(an emulation[^)]*\): \$([\d,.]+)/month, 1 server\(s\) always on, p99 ([\d,.]+) ms", text
    )
    fn = re.search(
        r"fn \(an emulation[^)]*\): \$([\d,.]+)/month, p99 ([\d,.]+) ms \([^)]*\), ([\d.]+)% cold starts", text
    )
    assert server and fn, text[-3000:]
    assert float(server.group(1).replace(",", "")) > 0 and float(fn.group(1).replace(",", "")) > 0
    assert 0 < float(fn.group(3)) <= 100  # the emulator keeps an environment 2 s: the trace's gaps evict many
    assert "measured (idle trial, 4 probes)" in text
    assert "Cold start of fn (function):" in text and "Cold start of server (server):" in text
    # the report shows the same
    subprocess.run([PYTHON, "-m", "perfdesk", "report", str(session)], env=agent_env(), check=True, timeout=120)
    html = (session / "report.html").read_text()
    assert "<section id='traffic'>" in html and "<section id='coldstarts'>" in html
    assert "Eviction curves" in html and "first inference" in html
