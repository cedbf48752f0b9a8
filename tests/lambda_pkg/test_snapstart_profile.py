"""profiles/snapstart.toml end to end (its SnapStart target, smaller counts; the on-demand one is any local-lambda
target): the real handler on the emulator, cold starts that are restores, and the verdict pricing them."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import PYTHON, agent_env

pytestmark = pytest.mark.slow

PROFILE = Path(__file__).parents[2] / "profiles" / "snapstart.toml"


def test_snapstart_profile_on_the_emulator(tmp_path):
    text = PROFILE.read_text().replace("count = 3", "count = 1").replace("count = 10", "count = 3")
    first, second = text.index("[[targets]]"), text.index("[[targets]]", text.index("[[targets]]") + 1)
    text = text[:first] + text[second:]  # the SnapStart target alone
    profile = tmp_path / "snapstart.toml"
    profile.write_text(text)
    proc = subprocess.run(
        [PYTHON, "-m", "perfdesk", "--headless", str(profile)],
        env=agent_env(),
        cwd=tmp_path,  # the session goes to ./sessions
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
    (session,) = list((tmp_path / "sessions").iterdir())
    req = pd.read_csv(session / "requests.csv")
    assert (req["status"] == "ok").all()
    snap = req[req.trial == "cold"]
    assert len(snap) == 1 and snap["cold"].all() and (snap["restore_ms"] > 0).all() and snap["init_ms"].isna().all()
    assert snap["billed_restore_ms"].notna().all()
    assert not req[req.trial == "warm"]["cold"].any() and req[req.trial == "warm"]["restore_ms"].isna().all()
    facts = json.loads((session / "manifest.json").read_text())["targets"]["fn-snap"]
    assert facts["snapstart"] is True and int(facts["version"]) >= 1 and facts["version_arn"].endswith(facts["version"])
    trials = pd.read_csv(session / "trials.csv")
    assert trials[(trials.trial == "cold") & (trials.target == "fn-snap")]["restore_p50_ms"].iloc[0] > 0

    from perfdesk.verdict.cost import target_costs
    from perfdesk.verdict.session_data import load_session

    costs = target_costs(load_session(session))
    assert costs["fn-snap"].pricing.snapstart and costs["fn-snap"].pricing.restore_gb_usd
    assert costs["fn-snap"].cold_cost_per_request_usd > costs["fn-snap"].warm_cost_per_request_usd
    assert costs["fn-snap"].monthly_usd(0.0, 730) > 0  # the snapshot's cache costs even with no traffic
