"""A SnapStart handler for emulator tests: module-scope init, a before-snapshot and an after-restore hook.

``INSTANCE`` is made at init, so every environment restored from one snapshot shares it; ``RESTORED`` is made by the
after-restore hook, so each restored environment has its own. The hooks print lines the tests find in the logs.
"""

import os
import time
import uuid

from snapshot_restore_py import register_after_restore, register_before_snapshot

INSTANCE = uuid.uuid4().hex
INIT_SLEEP = float(os.environ.get("SNAPPY_INIT_SLEEP", "0"))
if INIT_SLEEP:
    time.sleep(INIT_SLEEP)
STATE = {"before_snapshot": 0, "after_restore": 0, "restored": None, "invocations": 0}


@register_before_snapshot
def _before():
    STATE["before_snapshot"] += 1
    print("snappy: before snapshot")
    if os.environ.get("SNAPPY_FAIL") == "before":
        raise RuntimeError("before-snapshot hook failed")


@register_after_restore
def _after():
    STATE["after_restore"] += 1
    STATE["restored"] = uuid.uuid4().hex
    print("snappy: after restore")
    if os.environ.get("SNAPPY_FAIL") == "after":
        raise RuntimeError("after-restore hook failed")


def handler(event, context):
    STATE["invocations"] += 1
    time.sleep(float(os.environ.get("SNAPPY_SLEEP", "0")))
    print(f"snappy: invocation {STATE['invocations']}")
    return {
        "instance": INSTANCE,
        **STATE,
        "init_type": os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE"),
        "version": context.function_version,
        "tmp_writable": os.access("/tmp", os.W_OK),
    }
