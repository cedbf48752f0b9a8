"""Small handlers for emulator tests: they exercise the emulator, not a model.

Module-scope work stands in for a model load (cold starts measurable); ``INSTANCE`` tells environments apart (the
pid does not: the runtime is PID 1 of its environment's own PID namespace, as each environment is a sandbox).
"""

import os
import time
import uuid

LOADED_AT = time.time()
INSTANCE = uuid.uuid4().hex
INIT_SLEEP = float(os.environ.get("TINY_INIT_SLEEP", "0"))
if INIT_SLEEP:
    time.sleep(INIT_SLEEP)
_INVOCATIONS = 0


def echo(event, context):
    """Sleeps event['sleep_s'] (default 0), prints a line, returns what it saw."""
    global _INVOCATIONS
    _INVOCATIONS += 1
    time.sleep(float(event.get("sleep_s", 0)))
    print(f"tiny handler invocation {_INVOCATIONS}")
    return {
        "event": event,
        "invocations": _INVOCATIONS,
        "pid": os.getpid(),
        "instance": INSTANCE,
        "loaded_at": LOADED_AT,
        "memory_limit_mb": int(context.memory_limit_in_mb),
        "env_nonce": os.environ.get("PERFDESK_COLD_NONCE"),
    }


def hog(event, context):
    """Allocates event['mb'] MB and touches it (RSS grows), then holds it for event['hold_s']."""
    block = bytearray(int(event.get("mb", 64)) * 1024 * 1024)
    for i in range(0, len(block), 4096):
        block[i] = 1
    time.sleep(float(event.get("hold_s", 1.0)))
    return {"allocated_mb": len(block) // (1024 * 1024)}


def fail(event, context):
    raise ValueError(f"bad input: {event.get('why', 'no reason')}")


def hog_request(event, context):
    """Answers like perfdesk's handler (one prediction) after holding TINY_HOG_MB MB for TINY_HOG_HOLD_S seconds: a
    function whose memory need is known, so a memory sweep runs out of memory below it and works above it."""
    block = b"\x01" * (int(os.environ.get("TINY_HOG_MB", "64")) * 1024 * 1024)  # written, so resident
    time.sleep(float(os.environ.get("TINY_HOG_HOLD_S", "0.3")))
    return {
        "predictions": [[{"label": "hog", "score": 1.0}]],
        "timings": {"inference_ms": 0.0},
        "batch_size": 1,
        "held_mb": len(block) // (1024 * 1024),
    }
