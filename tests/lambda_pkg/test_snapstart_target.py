"""The local-lambda target with ``snapstart = true``: the real handler (mobilenet_v2, random weights, ONNX Runtime),
published as a SnapStart version on the emulator, invoked by its qualifier; cold starts are restores."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from perfdesk.controllers.results import OK
from perfdesk.controllers.target import TargetContext, TargetError, target_class
from perfdesk.controllers.workload import WorkloadSpec, build_payloads

WORKLOAD = WorkloadSpec(
    name="mnv2", model="mobilenet_v2", runtime="onnx", images="synthetic", synthetic_size=(160, 120), image_count=2
)


@pytest.mark.parametrize(
    ("python", "packaging", "message"),
    [
        ("3.11", "zip", "python3.11 is not supported for SnapStart enabled functions"),
        ("3.12", "image", "SnapStart is not supported for functions with package type Image"),
    ],
)
def test_snapstart_refused_at_profile_load(python, packaging, message):
    cls = target_class("local-lambda")
    with pytest.raises(ValidationError, match=message):
        cls.spec_model(name="fn", kind="local-lambda", snapstart=True, python=python, packaging=packaging)


def test_snapstart_refused_at_deploy_for_a_default_image(tmp_path):
    """PyTorch's default packaging is an image: refused before anything is built."""
    ctx = TargetContext(session_id="t-snaprefuse", emit=lambda e: None, work_dir=str(tmp_path))
    cls = target_class("local-lambda")
    target = cls(cls.spec_model(name="fn", kind="local-lambda", snapstart=True, python="3.12"), ctx)
    try:
        with pytest.raises(TargetError, match="not supported for functions with package type Image"):
            target.deploy(WORKLOAD.model_copy(update={"runtime": "torch"}))
    finally:
        target.teardown()


@pytest.mark.slow
def test_snapstart_target_restores_the_published_version(tmp_path):
    ctx = TargetContext(session_id="t-snap", emit=lambda e: None, work_dir=str(tmp_path))
    cls = target_class("local-lambda")
    spec = cls.spec_model(name="fn", kind="local-lambda", memory_mb=2048, timeout_s=60, python="3.12", snapstart=True)
    target = cls(spec, ctx)
    payloads = build_payloads(WORKLOAD)
    try:
        target.deploy(WORKLOAD)
        facts = target.describe()
        assert facts["snapstart"] is True and facts["version"] == "1" and facts["version_arn"].endswith(":1")
        warm = target.send(payloads[0])
        assert warm.status == OK, warm.error
        assert not warm.cold and warm.restore_ms is None and warm.top1
        target.force_cold()  # a new configuration: a new version, a new snapshot
        assert target.qualifier == "2"
        cold = target.send(payloads[1])
        assert cold.status == OK, cold.error
        assert cold.cold and cold.init_ms is None and cold.restore_ms > 0 and cold.billed_restore_ms is not None
    finally:
        target.teardown()
