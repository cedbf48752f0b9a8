"""Teardown of everything, the way a LocalStack user runs perfdesk: a ``kind = "lambda"`` session with AWS's own
endpoint variables (``AWS_ENDPOINT_URL`` at the moto server for IAM and S3, ``AWS_ENDPOINT_URL_LAMBDA`` at
``perfdesk emulator``), killed with SIGKILL mid-trial; ``perfdesk teardown SESSION`` then finds and removes the
function, the layer versions, the execution role and the session's S3 bucket and objects, and a listing finds
nothing of the session left."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import boto3
import pytest

from perfdesk.lambda_pkg.functions import LAYER_MARK, ROLE_PATH, SESSION_TAG, Ledger
from tests.conftest import PYTHON, agent_env

from .conftest import free_port, wait_port

pytestmark = pytest.mark.slow

PROFILE = """
[session]
name = "kill"
output = "{out}"

[[targets]]
name = "fn"
kind = "lambda"          # no region, no endpoint: AWS's own variables say where
memory_mb = 1769
timeout_s = 120

[[workloads]]
name = "resnet50"
model = "resnet50"       # its ONNX export makes the code zip ~90 MB: above 50 MB, so it goes through S3
runtime = "onnx"
images = "synthetic"
synthetic_size = [96, 96]
image_count = 2
threads = 1

[[trials]]
kind = "warm"
warmup = 1
count = 400
"""


@pytest.fixture
def aws_env(moto_server, tmp_path):
    env = agent_env()
    for key in [k for k in env if k.startswith("AWS_")]:
        del env[key]
    env.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_REGION="us-east-1",
        AWS_ENDPOINT_URL=moto_server,
        AWS_CONFIG_FILE=str(tmp_path / "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-aws-credentials"),
    )
    port = free_port()
    log = open(tmp_path / "emulator.log", "wb")
    # the emulator reads S3 code from its S3 endpoint: the same AWS_ENDPOINT_URL (moto)
    emulator = subprocess.Popen(
        [PYTHON, "-m", "perfdesk", "emulator", "--port", str(port), "--work-dir", str(tmp_path / "emu"), "--quiet"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_port(port, emulator, timeout=60)
        env["AWS_ENDPOINT_URL_LAMBDA"] = f"http://127.0.0.1:{port}"
        yield env
    finally:
        emulator.terminate()
        try:
            emulator.wait(20)
        except subprocess.TimeoutExpired:
            emulator.kill()
            emulator.wait(10)


def _clients(env):
    kw = dict(region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
    lam = boto3.client("lambda", endpoint_url=env["AWS_ENDPOINT_URL_LAMBDA"], **kw)
    iam = boto3.client("iam", endpoint_url=env["AWS_ENDPOINT_URL"], **kw)
    s3 = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], **kw)
    return lam, iam, s3


def _left(env, session_id: str, layer_names: list[str]) -> dict[str, list[str]]:
    """Everything of the session still there, by the same listings a user would make."""
    lam, iam, s3 = _clients(env)
    functions = [
        f["FunctionName"]
        for f in lam.list_functions()["Functions"]
        if lam.list_tags(Resource=f["FunctionArn"])["Tags"].get(SESSION_TAG) == session_id
    ]
    layers = [
        f"{name}:{v['Version']}"
        for name in layer_names
        for v in lam.list_layer_versions(LayerName=name)["LayerVersions"]
        if v.get("Description", "").startswith(LAYER_MARK + session_id)
    ]
    roles = [
        r["RoleName"]
        for r in iam.list_roles(PathPrefix=ROLE_PATH)["Roles"]
        if {t["Key"]: t["Value"] for t in iam.list_role_tags(RoleName=r["RoleName"])["Tags"]}.get(SESSION_TAG)
        == session_id
    ]
    buckets, objects = [], []
    for b in s3.list_buckets()["Buckets"]:
        try:
            tags = {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket=b["Name"])["TagSet"]}
        except s3.exceptions.ClientError:
            tags = {}
        if tags.get(SESSION_TAG) == session_id:
            buckets.append(b["Name"])
        objects += [
            o["Key"] for o in s3.list_objects_v2(Bucket=b["Name"], Prefix=f"perfdesk/{session_id}/").get("Contents", [])
        ]
    return {"functions": functions, "layers": layers, "roles": roles, "buckets": buckets, "objects": objects}


def test_killed_lambda_session_then_teardown_leaves_nothing(aws_env, tmp_path):
    env = aws_env
    out = tmp_path / "sessions"
    profile = tmp_path / "kill.toml"
    profile.write_text(PROFILE.format(out=out))
    log = open(tmp_path / "session.log", "wb")
    proc = subprocess.Popen(
        [PYTHON, "-m", "perfdesk", "--headless", str(profile)], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.time() + 600
        rows = 0
        while time.time() < deadline and proc.poll() is None:
            csvs = list(out.glob("*/requests.csv"))
            rows = len(csvs[0].read_text().splitlines()) - 1 if csvs else 0
            if rows >= 3:  # mid-trial: some of the 400 warm requests recorded
                break
            time.sleep(0.5)
        assert proc.poll() is None and rows >= 3, (tmp_path / "session.log").read_text()[-4000:]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    session = next(out.iterdir())
    session_id = json.loads((session / "manifest.json").read_text())["session_id"]
    ledger = Ledger.read(session)
    layer_names = sorted({e["name"] for e in ledger if e["type"] == "layer"})

    before = _left(env, session_id, layer_names)
    assert before["functions"] == [f"perfdesk-fn-{session_id}"[:64]], before
    assert len(before["layers"]) == 1 and len(before["roles"]) == 1 and len(before["buckets"]) == 1, before
    assert "perfdesk/" + session_id + "/code.zip" in before["objects"], before  # ~90 MB code went through S3

    teardown = subprocess.run(
        [PYTHON, "-m", "perfdesk", "teardown", str(session)], env=env, capture_output=True, text=True, timeout=300
    )
    assert teardown.returncode == 0, teardown.stdout + teardown.stderr
    said = teardown.stdout
    assert f"removed function perfdesk-fn-{session_id}"[:64] in said and "removed layer " in said, said
    assert "removed role " in said and f"removed bucket {before['buckets'][0]}" in said, said
    assert _left(env, session_id, layer_names) == {k: [] for k in before}

    again = subprocess.run(
        [PYTHON, "-m", "perfdesk", "teardown", session_id, "--region", "us-east-1"],
        env=env,
        cwd=tmp_path,  # the id is looked up under ./sessions
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0 and "nothing to remove" in again.stdout, again.stdout + again.stderr
