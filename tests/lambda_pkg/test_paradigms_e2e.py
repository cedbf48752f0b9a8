"""End to end: one profile runs the same model on a local server, an on-demand, a SnapStart and a Managed Instances
function (on the emulator); the paradigms verdict prices and compares all four."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import PYTHON, agent_env

pytestmark = pytest.mark.slow

PROFILE = Path(__file__).parents[2] / "profiles" / "paradigms.toml"


def test_paradigms_profile_on_the_emulator_next_to_a_local_server(tmp_path):
    out = tmp_path / "sessions"
    proc = subprocess.run(
        [PYTHON, "-m", "perfdesk", "--headless", str(PROFILE), "--output", str(out)],
        capture_output=True,
        text=True,
        env=agent_env(),
        cwd=tmp_path,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (session,) = list(out.iterdir())
    manifest = json.loads((session / "manifest.json").read_text())
    managed = manifest["targets"]["managed"]
    assert managed["billing"] == "managed-instances"
    facts = managed["managed_instances"]
    assert facts["instance_type"] == "m7i.large" and facts["max_concurrency_per_environment"] == 2
    assert facts["publish_to_active_ms"] > 0
    requests = pd.read_csv(session / "requests.csv")
    served = requests[(requests["target"] == "managed") & (requests["status"] == "ok")]
    assert len(served) and served["init_ms"].isna().all()  # no request of a managed version ran an init
    ledger = [json.loads(line) for line in (session / "aws-resources.jsonl").read_text().splitlines()]
    assert {"capacity-provider", "ec2-vpc", "ec2-subnet", "ec2-security-group"} <= {e["type"] for e in ledger}

    from perfdesk.verdict.paradigms import EC2_SERVER, MANAGED_INSTANCES, ON_DEMAND, SNAPSTART, paradigms
    from perfdesk.verdict.report.html import render_report
    from perfdesk.verdict.session_data import load_session

    result = paradigms(load_session(session))
    by_target = {r.target: r for r in result.rows}
    assert by_target["server"].paradigm == EC2_SERVER
    assert by_target["on-demand"].paradigm == ON_DEMAND and by_target["on-demand"].cold_start_ms > 0
    assert by_target["snapstart"].paradigm == SNAPSTART and by_target["snapstart"].cold_start_ms > 0
    assert by_target["managed"].paradigm == MANAGED_INSTANCES and by_target["managed"].cold_start_ms is None
    for row in result.rows:
        assert row.p99_ms is not None and all(v is not None and v > 0 for v in row.monthly_usd.values())
    # Managed Instances: at least the 3 minimum instances at m7i.large + 15 %, whatever the traffic
    floor = 3 * 0.1008 * 1.15 * result.hours_per_month
    assert by_target["managed"].monthly_usd[1e6] >= floor
    assert "paradigms managed (Managed Instances)" in proc.stdout
    html = render_report(session)
    assert "id='paradigms'" in html and "Managed Instances" in html
