"""Shipped code must not pull in the controller side, nor a heavy runtime before an engine needs it."""

import subprocess
import sys


def test_import_leaves_controllers_and_runtimes_out():
    code = (
        "import sys, perfdesk.inference as m; m.known_models(); m.EngineConfig();"
        "bad = [n for n in sys.modules if n.startswith(('perfdesk.controllers', 'torch', 'onnxruntime',"
        " 'tensorflow', 'boto3', 'textual', 'rich'))];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
