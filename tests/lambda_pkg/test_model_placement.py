"""Where the ONNX export goes: a layer (``/opt/model``) or S3 (read by the function at init, checked against its
sha256); a local-lambda target keeps its S3 on the local S3 that AWS's endpoint variables name, and its sweep
removes what a killed session left there without touching the emulator that ended with it."""

from __future__ import annotations

import boto3
import pytest

from perfdesk.controllers.results import OK
from perfdesk.controllers.target import TargetContext, TargetError, target_class
from perfdesk.controllers.workload import WorkloadSpec, build_payloads
from perfdesk.lambda_pkg.functions import SESSION_TAG, Ledger

pytestmark = pytest.mark.slow

WORKLOAD = dict(name="mnv2", model="mobilenet_v2", runtime="onnx", images="synthetic", synthetic_size=(96, 96))


def _target(tmp_path, session: str, **spec):
    ctx = TargetContext(session_id=session, emit=lambda e: None, work_dir=str(tmp_path))
    cls = target_class("local-lambda")
    return cls(cls.spec_model(name="fn", kind="local-lambda", memory_mb=1769, idle_s=60, **spec), ctx)


def test_model_in_a_layer(tmp_path):
    target = _target(tmp_path, "place-layer", weights_placement="layer")
    try:
        try:
            target.deploy(WorkloadSpec(**WORKLOAD, image_count=1))
        except TargetError as exc:
            if "/opt/model/" in str(exc) and "is not there" in str(exc):
                pytest.skip("this emulator does not unpack layers at /opt (its environments are not isolated)")
            raise
        d = target.describe()
        assert d["onnx_file"].startswith("/opt/model/mobilenet_v2-random0") and len(d["layers"]) == 2
        assert set(d["packages"]) == {"code", "dependencies layer", "model layer"}
        assert target.send(build_payloads(target.workload)[0]).status == OK
    finally:
        target.teardown()


def test_model_in_s3_read_at_init_then_swept_after_a_crash(tmp_path, moto_server, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_server)  # AWS's own variable: the local S3 (never AWS itself)
    s3 = boto3.client("s3", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    target = _target(
        tmp_path,
        "place-s3",
        weights_placement="s3",
        environment={"AWS_ENDPOINT_URL_S3": moto_server},  # the function reads the model from the same S3
    )
    unchecked = None
    try:
        try:
            target.deploy(WorkloadSpec(**WORKLOAD, image_count=1))
        except TargetError as exc:  # the emulator gave the function no credentials standing in for its role
            if "Unable to locate credentials" not in str(exc):
                raise
            unchecked = "this emulator gives a function no credentials for its role: its S3 read was not checked"
        else:
            assert target.send(build_payloads(target.workload)[0]).status == OK
        d = target.describe()
        bucket = d["bucket"]
        assert d["onnx_file"] == f"s3://{bucket}/perfdesk/place-s3/{d['onnx_file'].rsplit('/', 1)[1]}"
        tags = {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket=bucket)["TagSet"]}
        assert tags[SESSION_TAG] == "place-s3"
    finally:  # as if the session was killed: the in-process emulator ends, the bucket stays
        target.emulator.stop()
        target.emulator = None
    entries = Ledger.read(tmp_path)
    assert {e["lambda_endpoint"] for e in entries} == {"in-process"} and {e["s3_endpoint"] for e in entries} == {
        moto_server
    }
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")  # the ledger knows which S3 the session used
    said: list[str] = []
    removed = type(target).sweep("place-s3", session_dir=tmp_path, region=None, facts=[], say=said.append)
    assert f"bucket {bucket}" in removed and said == [f"removed {r}" for r in removed]
    assert bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    if unchecked:
        pytest.skip(unchecked)


def test_local_lambda_with_no_s3_configured_uses_a_local_s3_of_its_own(tmp_path, monkeypatch):
    """A package that must go through S3, with no S3 of AWS's configuration: the target starts a moto server of its
    own on loopback (never AWS), the emulator reads the package there, and teardown stops it."""
    for var in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(var, raising=False)
    target = _target(tmp_path, "place-own-s3", weights_placement="s3")
    try:
        target.deploy(WorkloadSpec(**WORKLOAD, image_count=1))
        local = target.local_s3
        assert local is not None and local.url.startswith("http://127.0.0.1:")
        assert target.describe()["onnx_file"].startswith("s3://")
        proc = local.proc
    except TargetError as exc:  # the function reads its model from S3 with its role's credentials
        if "Unable to locate credentials" not in str(exc):
            raise
        pytest.skip("this emulator gives a function no credentials for its role: its S3 read was not checked")
    finally:
        target.teardown()
    assert target.local_s3 is None and proc.poll() is not None  # nothing left running
    # the objects died with the local S3: the ledger sends no later teardown there
    assert all("s3_endpoint" not in e for e in Ledger.read(tmp_path))
