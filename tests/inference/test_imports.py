"""Shipped code must not pull in the controller side, nor a heavy runtime before an engine needs it."""

import subprocess
import sys


def test_import_leaves_controllers_and_runtimes_out():
    code = (
        "import sys, perfdesk.shipped.inference as m; m.known_models(); m.EngineConfig();"
        "bad = [n for n in sys.modules if n.startswith(('perfdesk.controllers', 'torch', 'onnxruntime',"
        " 'tensorflow', 'boto3', 'textual', 'rich'))];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_tensorflow_engine_then_torch_in_one_process():
    """An agent may load a TensorFlow engine and then a torch one; with TensorFlow loaded first, torchvision's
    import of triton used to abort the process (two LLVMs). The engine imports triton first to prevent it."""
    import importlib.util

    import pytest

    if importlib.util.find_spec("tensorflow") is None:
        pytest.skip("TensorFlow is not installed")
    code = "from perfdesk.shipped.inference.runtime_tf import import_tf; import_tf();import torchvision; print('ok')"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr[-2000:]
