"""Packages over 50 MB zipped go through S3: uploaded to the moto server, referenced by S3Bucket/S3Key, read back by
the emulator from its S3 endpoint (AWS's own ``AWS_ENDPOINT_URL_S3``), and the function answers; teardown leaves
nothing in S3."""

from __future__ import annotations

import json
import os
import zipfile

import boto3
import pytest
from botocore.exceptions import ClientError

from perfdesk.lambda_pkg.builders import MAX_INLINE_ZIP_BYTES
from perfdesk.lambda_pkg.functions import SESSION_TAG, ArtifactBucket, FunctionManager, Ledger

from .conftest import ROLE, lambda_client

HANDLER = b"""
import os, blob_probe

def handler(event, context):
    task = os.environ["LAMBDA_TASK_ROOT"]
    return {"layer_blob": blob_probe.size(), "code_blob": os.path.getsize(os.path.join(task, "code_blob.bin"))}
"""
PROBE = b"""
import os

def size():
    return os.path.getsize(os.path.join(os.path.dirname(__file__), "blob.bin"))
"""


def _random_zip(path, files: dict[str, bytes], blob_name: str) -> int:
    """A zip holding ``files`` and a blob of random bytes just over the inline limit (stored: random bytes do not
    compress, and storing them is fast). Returns the blob's size."""
    size = MAX_INLINE_ZIP_BYTES + 1024

    def entry(name: str, compress: int) -> zipfile.ZipInfo:
        info = zipfile.ZipInfo(name, (2020, 1, 1, 0, 0, 0))
        info.external_attr, info.compress_type = (0o100644 << 16), compress  # world-readable, as Lambda needs
        return info

    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(entry(name, zipfile.ZIP_DEFLATED), data)
        zf.writestr(entry(blob_name, zipfile.ZIP_STORED), os.urandom(size))
    assert path.stat().st_size > MAX_INLINE_ZIP_BYTES
    return size


@pytest.fixture
def aws_env(moto_server, monkeypatch):
    """AWS's own variables, as a LocalStack user sets them: S3 on the moto server (the emulator reads code there)."""
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_S3": moto_server,
    }.items():
        monkeypatch.setenv(key, value)
    return boto3.client("s3")


def test_layer_and_code_over_50_mb_go_through_s3_and_the_function_answers(emulator, aws_env, tmp_path):
    s3 = aws_env
    lam = lambda_client(emulator.url)
    ledger = Ledger(tmp_path)
    artifacts = ArtifactBucket(s3, "s-big", "us-east-1", ledger=ledger)
    mgr = FunctionManager(lam, "s-big", artifacts=artifacts, ledger=ledger)

    layer_zip = tmp_path / "layer.zip"
    layer_blob = _random_zip(layer_zip, {"python/blob_probe.py": PROBE}, "python/blob.bin")
    code_zip = tmp_path / "code.zip"
    code_blob = _random_zip(code_zip, {"big.py": HANDLER}, "code_blob.bin")

    # sent inline, the emulator refuses it as Lambda does
    with pytest.raises(ClientError, match="RequestEntityTooLargeException.*52428800"):
        lam.publish_layer_version(LayerName="too-big", Content={"ZipFile": layer_zip.read_bytes()})

    layer_arn = mgr.publish_layer("perfdesk-big-layer", layer_zip, runtimes=["python3.11"], architectures=["x86_64"])
    cfg = mgr.deploy_function(
        "perfdesk-big-fn",
        zip_path=code_zip,
        role_arn=ROLE,
        handler="big.handler",
        runtime="python3.11",
        memory_mb=256,
        timeout_s=30,
        architecture="x86_64",
        variables={},
        layers=[layer_arn],
    )
    bucket = artifacts.bucket
    assert mgr.uploads == {
        "layer.zip": f"s3://{bucket}/perfdesk/s-big/layer.zip",
        "code.zip": f"s3://{bucket}/perfdesk/s-big/code.zip",
    }
    assert cfg["CodeSize"] == code_zip.stat().st_size
    tags = {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket=bucket)["TagSet"]}
    assert tags[SESSION_TAG] == "s-big"
    obj_tags = s3.get_object_tagging(Bucket=bucket, Key="perfdesk/s-big/code.zip")["TagSet"]
    assert {"Key": SESSION_TAG, "Value": "s-big"} in obj_tags

    out = json.loads(lam.invoke(FunctionName="perfdesk-big-fn", Payload=b"{}")["Payload"].read())
    assert out == {"layer_blob": layer_blob, "code_blob": code_blob}

    # the ledger names everything before it was created (layer versions take no tags)
    types = [(e["type"], e.get("name") or e.get("key") or e.get("bucket")) for e in Ledger.read(tmp_path)]
    assert ("s3-bucket", bucket) in types and ("layer", "perfdesk-big-layer") in types
    assert ("function", "perfdesk-big-fn") in types and ("s3-object", "perfdesk/s-big/code.zip") in types

    # a missing S3 object is Lambda's error, not a crash
    with pytest.raises(ClientError, match="InvalidParameterValueException.*GetObject.*NoSuchKey"):
        lam.update_function_code(FunctionName="perfdesk-big-fn", S3Bucket=bucket, S3Key="perfdesk/s-big/none.zip")

    removed = mgr.teardown(layer_names=["perfdesk-big-layer"])
    assert removed[:2] == ["function perfdesk-big-fn", "layer perfdesk-big-layer:1"]
    assert f"bucket {bucket}" in removed
    assert bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert not lam.list_functions()["Functions"]
    assert mgr.teardown(layer_names=["perfdesk-big-layer"]) == []  # safe to repeat


def test_a_named_bucket_keeps_everything_but_the_session_objects(emulator, aws_env, tmp_path):
    s3 = aws_env
    s3.create_bucket(Bucket="team-artifacts")
    s3.put_object(Bucket="team-artifacts", Key="keep/me.txt", Body=b"theirs")
    artifacts = ArtifactBucket(s3, "s-named", "us-east-1", bucket="team-artifacts")
    mgr = FunctionManager(lambda_client(emulator.url), "s-named", artifacts=artifacts)
    big = tmp_path / "layer.zip"
    _random_zip(big, {"python/blob_probe.py": PROBE}, "python/blob.bin")
    mgr.publish_layer("perfdesk-named-layer", big, runtimes=["python3.11"], architectures=["x86_64"])
    assert mgr.uploads["layer.zip"] == "s3://team-artifacts/perfdesk/s-named/layer.zip"
    removed = mgr.teardown(layer_names=["perfdesk-named-layer"])
    assert "s3://team-artifacts/perfdesk/s-named/layer.zip" in removed and "bucket team-artifacts" not in removed
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="team-artifacts").get("Contents", [])]
    assert keys == ["keep/me.txt"]
