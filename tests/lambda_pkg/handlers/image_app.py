"""A handler for image-function tests: what the function sees of its environment (no third-party imports)."""

import os
import sys


def look(event, context):
    try:
        open(os.path.join(os.environ.get("LAMBDA_TASK_ROOT", "/var/task"), "written"), "w").close()
        task_writable = True
    except OSError:
        task_writable = False
    with open("/tmp/probe", "w") as fh:
        fh.write("ok")
    try:
        import perfdesk  # noqa: F401 - the host's packages must not be importable

        host_visible = True
    except ImportError:
        host_visible = False
    return {
        "event": event,
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "uid": os.getuid(),
        "cwd": os.getcwd(),
        "task_writable": task_writable,
        "tmp_writable": open("/tmp/probe").read() == "ok",
        "host_visible": host_visible,
        "memory_limit_mb": int(context.memory_limit_in_mb),
        "env": {
            k: os.environ.get(k)
            for k in (
                "AWS_LAMBDA_FUNCTION_NAME",
                "LAMBDA_TASK_ROOT",
                "_HANDLER",
                "AWS_EXECUTION_ENV",
                "MY_SETTING",
                "PATH",
            )
        },
    }
