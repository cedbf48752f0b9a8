"""The local-lambda target end to end: the real handler with mobilenet_v2 (random weights) on ONNX Runtime,
packaged as for Lambda (dependencies layer from manylinux wheels, the ONNX export made at build time), in the
emulator's isolated environment: nothing of this machine's Python is importable there."""

from __future__ import annotations

import base64
import json

import pytest

from perfdesk.controllers.results import ERROR, OK, THROTTLED
from perfdesk.controllers.target import TargetContext, target_class
from perfdesk.controllers.workload import Payload, WorkloadSpec, build_payloads


def test_torch_is_refused_as_a_zip(tmp_path):
    from perfdesk.controllers.target import TargetError

    ctx = TargetContext(session_id="t-refuse", emit=lambda e: None, work_dir=str(tmp_path))
    cls = target_class("local-lambda")
    target = cls(cls.spec_model(name="fn", kind="local-lambda", packaging="zip"), ctx)
    workload = WorkloadSpec(name="w", model="mobilenet_v2", runtime="torch", images="synthetic")
    try:
        with pytest.raises(TargetError, match="fn: package: runtime 'torch' cannot be packaged as a zip.*image"):
            target.deploy(workload)
    finally:
        target.teardown()
    default = cls(cls.spec_model(name="fn", kind="local-lambda"), ctx)
    assert default._packaging(workload) == "image"  # PyTorch's default packaging: a container image
    assert default._packaging(workload.model_copy(update={"runtime": "onnx"})) == "zip"


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    events = []
    ctx = TargetContext(session_id="t-sess", emit=events.append, work_dir=str(tmp_path_factory.mktemp("work")))
    cls = target_class("local-lambda")
    spec = cls.spec_model(
        name="fn", kind="local-lambda", memory_mb=3538, timeout_s=60, reserved_concurrency=1, idle_s=120
    )
    target = cls(spec, ctx)
    workload = WorkloadSpec(
        name="mnv2", model="mobilenet_v2", runtime="onnx", images="synthetic", synthetic_size=(160, 120), image_count=2
    )
    target.deploy(workload)
    yield target, build_payloads(workload), events
    target.teardown()


@pytest.mark.slow
def test_deploy_cold_then_warm(deployed):
    target, payloads, events = deployed
    assert target.facts["probe_init_ms"] > 0  # the deploy probe was the cold start
    r = target.send(payloads[0])
    assert r.status == OK, r.error
    assert not r.cold and r.init_ms is None and r.top1
    assert r.memory_size_mb == 3538 and r.max_memory_used_mb > 50 and r.billed_ms >= r.duration_ms > 0
    assert r.server_inference_ms > 0 and r.request_id
    d = target.describe()
    assert d["kind"] == "local-lambda" and "emulator" in d and d["region"] == "us-east-1"
    assert d["onnx_file"].startswith("model/mobilenet_v2-random0") and len(d["onnx_sha256"]) == 64
    deps = d["packages"]["dependencies layer"]
    assert deps["upload"] == "inline" and 0 < d["unzipped_total_bytes"] < d["unzipped_limit_bytes"]
    assert "python/onnxruntime" in deps["biggest"] or "python/numpy" in deps["biggest"]
    assert "code.zip" in d["uploads"] and set(d["uploads"].values()) == {"inline"}  # all under 50 MB zipped
    assert d["emulator"]["isolation"].startswith("mount namespace") or "none" in d["emulator"]["isolation"]


@pytest.mark.slow
def test_forced_cold_and_memory_change(deployed):
    target, payloads, _ = deployed
    target.force_cold()
    r = target.send(payloads[1])
    assert r.status == OK and r.cold and r.init_ms > 0
    assert r.extra["init"]["weight_load_ms"] > 0 and r.extra["init"]["first_inference_ms"] > 0
    target.set_memory(2240)
    r = target.send(payloads[0])
    assert r.status == OK and r.cold and r.memory_size_mb == 2240


@pytest.mark.slow
def test_bad_payload_and_throttle_are_rows_not_crashes(deployed):
    target, payloads, _ = deployed
    bad = Payload(["x"], [b"x"], json.dumps({"images": [base64.b64encode(b"not an image").decode()]}).encode(), 1)
    r = target.send(bad)
    assert r.status == ERROR and "image 0" in r.error
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(3) as pool:  # reserved concurrency 1: some of three at once are throttled
        statuses = [res.status for res in pool.map(lambda p: target.send(p), [payloads[0]] * 3)]
    assert OK in statuses and THROTTLED in statuses, statuses


def test_torch_is_refused_at_deploy_as_on_aws(tmp_path):
    """PyTorch does not fit Lambda's 250 MB for code and layers: as a zip it is refused before anything is built or
    downloaded (its default packaging is an image)."""
    from perfdesk.controllers.target import TargetError

    ctx = TargetContext(session_id="t-torch", emit=lambda e: None, work_dir=str(tmp_path))
    cls = target_class("local-lambda")
    target = cls(cls.spec_model(name="fn", kind="local-lambda", packaging="zip"), ctx)
    workload = WorkloadSpec(name="mnv2", model="mobilenet_v2", runtime="torch", images="synthetic", image_count=1)
    try:
        with pytest.raises(TargetError) as info:
            target.deploy(workload)
        assert "250 MB" in str(info.value) and "onnx" in str(info.value)
        assert not (tmp_path / "lambda" / "fn" / "deps-layer.zip").exists()
    finally:
        target.teardown()
