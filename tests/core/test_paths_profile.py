"""profiles/paths.toml end to end on the emulator: the four function paths side by side with the real handler and
model, each path's invoke overhead in trials.csv, a burst over the account's concurrency, and a clean teardown."""

import json
import math
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import PYTHON, agent_env

pytestmark = pytest.mark.slow
PROFILE = Path(__file__).parents[2] / "profiles" / "paths.toml"


def test_four_paths_side_by_side(tmp_path):
    proc = subprocess.run(
        [PYTHON, "-m", "perfdesk", "--headless", str(PROFILE), "-o", str(tmp_path)],
        env=agent_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    session = next(tmp_path.iterdir())
    trials = pd.read_csv(session / "trials.csv")
    warm = trials[trials.trial == "warm"].set_index("target")
    assert dict(warm.invoke_path) == {"fn-invoke": "invoke", "fn-url": "url", "fn-apigw": "apigw", "fn-s3": "s3"}
    assert (warm.status == "completed").all() and (warm.ok == 5).all()
    for target, row in warm.iterrows():
        assert not math.isnan(row.invoke_overhead_p50_ms) and row.invoke_overhead_p50_ms >= 0, target
    requests = pd.read_csv(session / "requests.csv")
    assert (requests[requests.trial == "warm"].duration_ms > 0).all()
    (burst,) = trials[trials.trial == "burst"].itertuples()
    assert burst.target == "fn-invoke" and burst.level == 3
    assert burst.throttled == 1 and burst.ok == 2 and burst.burst_environments == 2  # the account's 2
    ledger = [json.loads(line) for line in (session / "aws-resources.jsonl").read_text().splitlines()]
    assert any(e["type"] == "apigw-api" and e.get("api_id") for e in ledger)
    manifest = json.loads((session / "manifest.json").read_text())
    assert manifest["status"] == "completed", manifest["status"]
