"""The desk's verdict pane carries the traffic projection and the cold starts side by side."""

from __future__ import annotations

import json
from pathlib import Path

from perfdesk.tui.verdict_data import compute_verdict
from tests.verdict.synth import write_session

SAMPLE = Path(__file__).resolve().parents[2] / "profiles" / "traces" / "sample_invocations_per_function.csv"


def test_verdict_pane_projects_the_traffic(tmp_path):
    path = write_session(tmp_path / "s", seed=1, prices={"targets": {"srv": {"instance_type": "c5.xlarge"}}})
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["profile"]["traffic"] = {"pattern": "trace", "file": str(SAMPLE)}
    (path / "manifest.json").write_text(json.dumps(manifest))
    verdict = compute_verdict(path)
    assert not verdict.error
    text = "\n".join(verdict.lines)
    assert "Your traffic (trace sample_invocations_per_function.csv): 10,540 requests per 1-day period" in text
    assert "srv (an emulation: measured on a server on this machine, priced as c5.xlarge" in text
    assert "server(s) always on" in text
    assert "fn: $" in text and "cold starts (predicted from the traffic's idle gaps" in text
    assert "Cold start of fn (function):" in text and "Cold start of srv (server):" in text
