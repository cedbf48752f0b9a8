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


def s3_copy(event, context):
    """An S3-triggered function: reads each record's input object, writes ``out/<name>`` with what it saw."""
    import json
    from urllib.parse import unquote_plus

    import boto3

    s3 = boto3.client("s3")
    written = []
    for record in event["Records"]:
        bucket = record["s3"]["bucket"]["name"]
        key = unquote_plus(record["s3"]["object"]["key"])
        data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        out = "out/" + key.split("/", 1)[-1]
        body = {"record": record, "input": data.decode(), "instance": INSTANCE, "handler_ms": 0.1, "cold": False}
        s3.put_object(Bucket=bucket, Key=out, Body=json.dumps(body).encode())
        written.append(out)
    return {"written": written}


def _answer(request: dict) -> dict:
    global _INVOCATIONS
    t0 = time.perf_counter()
    _INVOCATIONS += 1
    time.sleep(float(request.get("sleep_s", 0)))
    return {
        "predictions": [[{"label": "tiny", "score": 1.0}]],
        "timings": {"inference_ms": 0.0},
        "batch_size": 1,
        "cold": _INVOCATIONS == 1,
        "init": {"total_ms": 1.0},
        "instance": INSTANCE,
        "handler_ms": (time.perf_counter() - t0) * 1000.0,
    }


def paths(event, context):
    """Answers like perfdesk's handler on each path: a direct invoke, an HTTP request (function URL or API Gateway,
    payload format 2.0) and S3 records (reads the input object, writes PERFDESK_S3_OUTPUT_PREFIX<name>.json)."""
    import json

    if "Records" in event:
        from urllib.parse import unquote_plus

        import boto3

        s3 = boto3.client("s3")
        prefix_in = os.environ["PERFDESK_S3_INPUT_PREFIX"]
        for record in event["Records"]:
            bucket = record["s3"]["bucket"]["name"]
            key = unquote_plus(record["s3"]["object"]["key"])
            request = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
            out = {**_answer(request), "record": record}
            name = key[len(prefix_in) :].rsplit(".", 1)[0]
            s3.put_object(
                Bucket=bucket,
                Key=os.environ["PERFDESK_S3_OUTPUT_PREFIX"] + name + ".json",
                Body=json.dumps(out).encode(),
            )
        return {"records": len(event["Records"])}
    if event.get("version") == "2.0" and "requestContext" in event:
        out = {**_answer(json.loads(event.get("body") or "{}")), "routeKey": event["routeKey"]}
        out["authorizer"] = event["requestContext"].get("authorizer")
        return {"statusCode": 200, "headers": {"content-type": "application/json"}, "body": json.dumps(out)}
    return _answer(event)
