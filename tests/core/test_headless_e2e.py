"""End to end: `perfdesk --headless` on a small profile with a real local agent; CSVs checked with pandas.
Also Ctrl-C (SIGINT) mid-trial and an agent killed mid-trial: rows kept, trial marked, nothing left running."""

import json
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest

from perfdesk.controllers.results import METRIC_COLUMNS, REQUEST_COLUMNS, TRIAL_COLUMNS
from tests.conftest import PYTHON, agent_env

pytestmark = pytest.mark.slow

TRIALS = """
[[trials]]
kind = "cold"
count = 2

[[trials]]
kind = "warm"
warmup = 2
count = 12

[[trials]]
kind = "concurrency"
levels = [1, 3]
requests = 15

[[trials]]
kind = "rate"
rates = [8]
arrival = "constant"
requests = 16

[[trials]]
kind = "stream"
fps = 20
frames = 20
mode = "async"
max_in_flight = 2

[[trials]]
kind = "memory"
memory_mb = [512]
"""


def _agents_of(pid: int) -> list[psutil.Process]:
    out = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if "perfdesk.shipped.agent" in cmd and f"--parent-pid {pid}" in cmd:
            out.append(p)
    return out


def _session(tmp_path: Path) -> Path:
    sessions = list((tmp_path / "sessions").iterdir())
    assert len(sessions) == 1
    return sessions[0]


def test_headless_run_writes_every_csv(tiny_profile, tmp_path):
    profile = tiny_profile(TRIALS)
    proc = subprocess.Popen(
        [PYTHON, "-m", "perfdesk", "--headless", str(profile)],
        env=agent_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    out, _ = proc.communicate(timeout=400)
    assert proc.returncode == 0, out[-5000:]
    assert "Summary" in out
    assert "random weights (timing only" in out
    session = _session(tmp_path)
    assert str(session.name) in out

    req = pd.read_csv(session / "requests.csv")
    assert list(req.columns) == REQUEST_COLUMNS
    assert req["latency_ms"].dtype == float and req["cold"].dtype == bool
    by_trial = req.groupby("trial").size().to_dict()
    assert by_trial == {"cold": 2, "warm": 12, "concurrency": 30, "rate": 16, "stream": 20}
    assert (req[req.trial != "stream"]["status"] == "ok").all()
    assert req[req.trial == "cold"]["cold"].all() and not req[req.trial == "warm"]["cold"].any()
    cold = req[req.trial == "cold"]
    assert (cold["init_ms"] > 0).all() and (cold["start_ms"] > 0).all()
    ok = req[req.status == "ok"]
    for col in ("server_decode_ms", "server_preprocess_ms", "server_inference_ms", "server_postprocess_ms"):
        assert (ok[col] >= 0).all()
    assert (req["payload_bytes"] > 0).all() and (req["batch_size"] == 1).all()
    assert ((req["receive"] >= req["actual_send"]) & (req["actual_send"] >= req["intended_send"] - 1e-3)).all()

    trials = pd.read_csv(session / "trials.csv")
    assert list(trials.columns) == TRIAL_COLUMNS
    measured = trials[trials.status == "completed"]
    assert set(zip(measured.trial, measured["count"])) >= {("cold", 2), ("warm", 12), ("rate", 16)}
    assert sorted(measured[measured.trial == "concurrency"]["count"]) == [15, 15]
    mem = trials[trials.trial == "memory"].iloc[0]
    assert mem.status == "skipped" and "memory" in mem.note
    for col in ("p50_ms", "p99_ms", "p999_ms", "mean_ms", "throughput_rps"):
        assert (measured[col] > 0).all()
    assert (measured["mean_ci_low_ms"] <= measured["mean_ms"]).all()
    assert (measured["mean_ms"] <= measured["mean_ci_high_ms"]).all()
    assert (measured["p50_ms"] <= measured["p99_ms"]).all()

    metrics = pd.read_csv(session / "metrics.csv")
    assert list(metrics.columns) == METRIC_COLUMNS
    assert len(metrics) >= 1 and (metrics["rss_mb"] > 0).all()

    manifest = json.loads((session / "manifest.json").read_text())
    assert manifest["status"] == "completed"
    assert manifest["profile"]["workloads"][0]["model"] == "mobilenet_v2"
    for key in ("perfdesk_version", "python", "os", "cpu_model", "cores", "packages", "started", "finished"):
        assert manifest[key]
    assert manifest["rows"]["requests"] == len(req)
    # the token never reaches a file
    for name in ("requests.csv", "trials.csv", "metrics.csv", "manifest.json", "log.txt"):
        assert "Bearer" not in (session / name).read_text()
    # the summary is derived from the rows: recomputing it from requests.csv gives the same figures
    from perfdesk.controllers.stats import summarize_frame

    again = summarize_frame(req).astype({"level": float})
    merged = again.merge(measured.astype({"level": float}), on=["trial", "level"], suffixes=("", "_saved"))
    assert len(merged) == len(measured)
    for col in ("count", "p50_ms", "p99_ms", "throughput_rps"):
        # allclose: a p50 of inf (a level with most frames dropped, as on a loaded box) equals inf
        assert np.allclose(merged[col], merged[f"{col}_saved"], rtol=0, atol=1e-6)

    # export: files copied, combined.csv has every request with its level's summary
    from perfdesk.cli import main

    assert main(["export", str(session), "-o", str(tmp_path / "export")]) == 0
    combined = pd.read_csv(tmp_path / "export" / "combined.csv")
    assert len(combined) == len(req)
    assert combined[combined.trial == "warm"]["level_p50_ms"].notna().all()
    assert (tmp_path / "export" / session.name / "manifest.json").exists()

    assert not _agents_of(proc.pid)


def _wait_rows(path: Path, n: int, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if path.exists() and len(path.read_text().splitlines()) > n:
            return
        time.sleep(0.2)
    raise AssertionError(f"no {n} rows in {path} within {timeout} s")


def test_sigint_keeps_rows_and_leaves_nothing_running(tiny_profile, tmp_path):
    profile = tiny_profile('[[trials]]\nkind = "concurrency"\nlevels = [2]\nduration_s = 120\n')
    proc = subprocess.Popen(
        [PYTHON, "-m", "perfdesk", "--headless", str(profile)],
        env=agent_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        sessions = tmp_path / "sessions"
        deadline = time.time() + 60
        while time.time() < deadline and not (sessions.exists() and any(sessions.iterdir())):
            time.sleep(0.1)
        session = _session(tmp_path)
        _wait_rows(session / "requests.csv", 10)
        agents = _agents_of(proc.pid)
        assert agents, "the agent runs during the trial"
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out[-3000:]
    req = pd.read_csv(session / "requests.csv")
    assert len(req) >= 10 and (req.status == "ok").all()
    trials = pd.read_csv(session / "trials.csv")
    assert trials.iloc[0]["status"] == "interrupted"
    assert trials.iloc[0]["count"] == len(req)
    assert json.loads((session / "manifest.json").read_text())["status"] == "interrupted"
    time.sleep(0.5)
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in agents)


def test_killed_agent_marks_the_trial_failed_and_keeps_rows(tiny_profile, tmp_path):
    profile = tiny_profile(
        '[[trials]]\nkind = "concurrency"\nlevels = [2]\nduration_s = 6\n', extra_target="request_timeout_s = 5"
    )
    proc = subprocess.Popen(
        [PYTHON, "-m", "perfdesk", "--headless", str(profile)],
        env=agent_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.time() + 60
        sessions = tmp_path / "sessions"
        while time.time() < deadline and not (sessions.exists() and any(sessions.iterdir())):
            time.sleep(0.1)
        session = _session(tmp_path)
        _wait_rows(session / "requests.csv", 5)
        for agent in _agents_of(proc.pid):
            for p in [agent] + agent.children(recursive=True):
                p.kill()
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, out[-3000:]
    req = pd.read_csv(session / "requests.csv")
    assert (req.status == "ok").sum() >= 5
    assert (req.status == "error").sum() >= 1
    assert req[req.status == "error"]["error"].str.contains("connection").all()
    trials = pd.read_csv(session / "trials.csv")
    assert trials.iloc[0]["status"] == "failed"
    assert "failed" in out
