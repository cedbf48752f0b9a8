"""Handlers that look at what the execution environment gives: identity, paths, variables, /tmp, payload sizes.

The emulator must give exactly what Lambda's Python runtime gives; the tests compare with Lambda's documented
behaviour. Module scope: SLOW_INIT_S sleeps (an init that takes that long), HOG_INIT_MB allocates (an init that runs
out of memory).
"""

import os
import sys
import time

if os.environ.get("SLOW_INIT_S"):
    time.sleep(float(os.environ["SLOW_INIT_S"]))
if os.environ.get("HOG_INIT_MB"):
    _HOG = bytearray(int(os.environ["HOG_INIT_MB"]) * 1024 * 1024)
    for _i in range(0, len(_HOG), 4096):
        _HOG[_i] = 1


def look(event, context):
    """Who runs the function, what it can import, its search path and variables, and where it can write."""
    out = {
        "uid": os.getuid(),
        "gid": os.getgid(),
        "cwd": os.getcwd(),
        "executable": sys.executable,
        "version": list(sys.version_info[:2]),
        "path": sys.path,
        "env": dict(os.environ),
        "imports": {},
        "writes": {},
    }
    for name in event.get("imports", []):
        try:
            __import__(name)
            out["imports"][name] = "ok"
        except ImportError as exc:
            out["imports"][name] = f"{type(exc).__name__}: {exc}"
    for path in event.get("writes", []):
        try:
            with open(path, "w") as fh:
                fh.write("x")
            out["writes"][path] = "ok"
        except OSError as exc:
            out["writes"][path] = exc.strerror
    return out


def fill_tmp(event, context):
    """Write event['mb'] MB to /tmp; report how much fit and why it stopped."""
    chunk = b"\0" * (1024 * 1024)
    written = 0
    error = None
    try:
        with open("/tmp/fill", "wb") as fh:
            for _ in range(int(event["mb"])):
                fh.write(chunk)
                written += 1
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        error = exc.strerror
    finally:
        if os.path.exists("/tmp/fill"):
            os.unlink("/tmp/fill")
    return {"written_mb": written, "error": error}


def big_response(event, context):
    """Answer a string of event['bytes'] bytes (JSON-encoded: two more for the quotes)."""
    return "x" * int(event["bytes"])


def echo(event, context):
    return event
