"""A handler for the Managed Instances tests: which worker process and which environment served a request, and
when (module scope runs once per worker process: each has its own init)."""

import os
import time
import uuid

WORKER = uuid.uuid4().hex
LOADED_AT = time.time()


def handler(event, context):
    start = time.time()
    time.sleep(float(event.get("sleep_s", 0)))
    return {
        "worker": WORKER,
        "environment": os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME"),
        "init_type": os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE"),
        "max_concurrency": os.environ.get("AWS_LAMBDA_MAX_CONCURRENCY"),
        "version": os.environ.get("AWS_LAMBDA_FUNCTION_VERSION"),
        "loaded_at": LOADED_AT,
        "start": start,
        "end": time.time(),
    }
