"""Function management (role, layer, create/update/delete, tags, teardown) against the moto server."""

from __future__ import annotations

import json

import pytest

from perfdesk.lambda_pkg.builders import in_memory_zip
from perfdesk.lambda_pkg.functions import SESSION_TAG, FunctionManager


@pytest.fixture(scope="module")
def clients(moto_server):
    import boto3

    kw = dict(
        endpoint_url=moto_server, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    return boto3.client("lambda", **kw), boto3.client("iam", **kw)


def test_role_layer_function_tags_teardown(clients, tmp_path):
    lam, iam = clients
    mgr = FunctionManager(lam, "s-moto", iam_client=iam)
    role_arn = mgr.ensure_role(
        "perfdesk-s-moto", region="us-east-1", function_prefix="perfdesk-", bucket="weights-bucket"
    )
    policy = iam.get_role_policy(RoleName="perfdesk-s-moto", PolicyName="perfdesk-execution")["PolicyDocument"]
    policy = policy if isinstance(policy, dict) else json.loads(policy)
    actions = [
        a for st in policy["Statement"] for a in ([st["Action"]] if isinstance(st["Action"], str) else st["Action"])
    ]
    assert set(actions) == {"logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "s3:GetObject"}
    assert any(st["Resource"] == "arn:aws:s3:::weights-bucket/*" for st in policy["Statement"])
    assert mgr.ensure_role("perfdesk-s-moto", region="us-east-1", function_prefix="perfdesk-") == role_arn

    layer_zip = tmp_path / "layer.zip"
    layer_zip.write_bytes(in_memory_zip({"python/dep.py": b"X = 1\n"}))
    layer_arn = mgr.publish_layer("perfdesk-deps", layer_zip, runtimes=["python3.11"], architectures=["arm64"])
    code = tmp_path / "code.zip"
    code.write_bytes(in_memory_zip({"h.py": b"def handler(e, c):\n    return 1\n"}))
    cfg = mgr.deploy_function(
        "perfdesk-moto-fn",
        zip_path=code,
        role_arn=role_arn,
        handler="h.handler",
        runtime="python3.11",
        memory_mb=768,
        timeout_s=30,
        architecture="arm64",
        variables={"PERFDESK_MODEL": "mobilenet_v2"},
        layers=[layer_arn],
    )
    assert cfg["MemorySize"] == 768 and cfg["Architectures"] == ["arm64"]
    assert lam.list_tags(Resource=cfg["FunctionArn"])["Tags"][SESSION_TAG] == "s-moto"

    cfg = mgr.update("perfdesk-moto-fn", MemorySize=1536)
    assert cfg["MemorySize"] == 1536
    cfg = mgr.set_variables("perfdesk-moto-fn", PERFDESK_COLD_NONCE="x")
    assert cfg["Environment"]["Variables"] == {"PERFDESK_MODEL": "mobilenet_v2", "PERFDESK_COLD_NONCE": "x"}
    # redeploy = update code and configuration of the existing function
    cfg = mgr.deploy_function(
        "perfdesk-moto-fn",
        zip_path=code,
        role_arn=role_arn,
        handler="h.handler",
        runtime="python3.11",
        memory_mb=2240,
        timeout_s=30,
        architecture="arm64",
        variables={},
        layers=[layer_arn],
    )
    assert cfg["MemorySize"] == 2240

    # a function of another session is left alone by this session's teardown
    other = FunctionManager(lam, "s-other")
    other.deploy_function(
        "perfdesk-other",
        zip_path=code,
        role_arn=role_arn,
        handler="h.handler",
        runtime="python3.11",
        memory_mb=128,
        timeout_s=3,
        architecture="x86_64",
        variables={},
    )
    assert mgr.session_functions() == ["perfdesk-moto-fn"]
    deleted = mgr.teardown(layer_names=["perfdesk-deps"], role_names=["perfdesk-s-moto"])
    assert deleted == ["function perfdesk-moto-fn", "layer perfdesk-deps:1", "role perfdesk-s-moto"]
    assert not mgr.exists("perfdesk-moto-fn") and other.exists("perfdesk-other")
    assert mgr.teardown(layer_names=["perfdesk-deps"], role_names=["perfdesk-s-moto"]) == []  # safe to repeat
    other.teardown()
