"""The local-lambda target with ``snapstart = true`` refused where AWS refuses SnapStart (the target with the real
handler on the emulator: test_snapstart_profile.py)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from perfdesk.controllers.target import TargetContext, TargetError, target_class
from perfdesk.controllers.workload import WorkloadSpec

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
