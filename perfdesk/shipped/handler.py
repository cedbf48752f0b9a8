"""The function handler shipped to AWS Lambda (and run by the local emulator under awslambdaric).

Handler string: ``perfdesk.shipped.handler.lambda_handler``. Shipped code: it imports nothing of
``perfdesk.controllers``; torch, onnxruntime and boto3 only through the inference module or when an S3 key is sent.

Configuration comes from the function's environment variables:

==========================  ===================================================================================
PERFDESK_MODEL              model name (default ``resnet50``)
PERFDESK_RUNTIME            ``torch`` | ``onnx`` | ``tensorflow`` (default ``torch``)
PERFDESK_DEVICE             ``cpu`` (default)
PERFDESK_THREADS            intra-op threads (default: the inference module's choice)
PERFDESK_WEIGHTS            ``random`` (default), a path (relative paths are under the package, ``/opt/...`` in a
                            layer), an ``https://`` URL or an ``s3://`` URI
PERFDESK_WEIGHTS_SHA256     expected sha256 of the weights
PERFDESK_ONNX_FILE          runtime ``onnx``: the export made at build time (a path under the package, ``/opt/...``
                            in a layer, or an ``s3://`` URI); a function never exports at cold start
PERFDESK_ONNX_SHA256        its sha256 (checked when it is downloaded)
PERFDESK_WARMUP             ``1`` (default): run one inference during init, so the first request is not slowed
PERFDESK_CACHE_DIR          where downloaded weights go (default ``/tmp/perfdesk-cache``: /tmp is writable)
PERFDESK_COLD_NONCE         ignored by the handler: perfdesk changes it to force a cold start
PERFDESK_S3_INPUT_PREFIX    S3-triggered path: the prefix of input objects (default ``in/``)
PERFDESK_S3_OUTPUT_PREFIX   S3-triggered path: where output objects go (default ``out/``; never under the input's)
==========================  ===================================================================================

The model is loaded at module scope, once per execution environment, when running inside Lambda (the
``AWS_LAMBDA_FUNCTION_NAME`` variable is set); elsewhere on the first call. Events::

    {"images": ["<base64 jpeg>", ...], "top_k": 5, ...}          # the agent's wire format, within 6 MB
    {"s3": {"bucket": "b", "keys": ["img/1.jpg", ...]}, "top_k": 5}  # images read from S3 (or "key": "...")
    {"version": "2.0", "body": "...", ...}                           # a function URL / HTTP API request
    {"Records": [{"eventSource": "aws:s3", "s3": {...}}, ...]}       # S3 ObjectCreated notifications

Answer (direct invoke): the agent's result (``predictions``, ``timings``, ``batch_size``, ``model``, ...) plus
``cold`` (first invocation of this environment), ``init`` (phases of the environment's initialisation, ms),
``memory`` (RSS now and peak, MB) and ``handler_ms``. A bad request answers ``{"error": ..., "status": 400}``
without failing the invocation (as the agent answers a 400); a function URL request gets a real HTTP status.

An S3 notification: each record's input object (``<input prefix><name>``: a request in the wire format, or one
JPEG) is read and answered as a direct invoke would be; the answer is written as the output object
``<output prefix><name>.json`` in the same bucket (a bad request's answer too, so the caller always sees one).
"""

from __future__ import annotations

import time

_T_START = time.perf_counter()
_EPOCH_START = time.time()

import base64  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402

#: Lambda's synchronous invocation limit (request and response payloads).
MAX_SYNC_PAYLOAD = 6 * 1024 * 1024

_ENGINE = None
_INIT: dict = {}
_INVOCATIONS = 0


class _BadRequest(Exception):
    """The caller's fault: answered with a 400 and this message."""


def _load() -> None:
    """Load the model once per environment, timing each phase (imports, weight load, first inference)."""
    global _ENGINE
    if _ENGINE is not None:
        return
    os.environ.setdefault("PERFDESK_CACHE_DIR", "/tmp/perfdesk-cache")
    t0 = time.perf_counter()
    from perfdesk.shipped.inference import EngineConfig, load_engine
    from perfdesk.shipped.wire import sample_jpeg

    t1 = time.perf_counter()
    engine = load_engine(EngineConfig.from_env())
    t2 = time.perf_counter()
    first_ms = None
    if os.environ.get("PERFDESK_WARMUP", "1") not in ("0", "false", "no"):
        engine.predict([sample_jpeg()], top_k=1)
        first_ms = (time.perf_counter() - t2) * 1000.0
    t3 = time.perf_counter()
    _INIT.update(
        {
            "module_import_ms": (t0 - _T_START) * 1000.0,
            "inference_import_ms": (t1 - t0) * 1000.0,
            "runtime_import_ms": engine.info.get("import_ms"),
            "weight_load_ms": (t2 - t1) * 1000.0,
            "engine_load_ms": engine.info.get("load_ms"),
            "first_inference_ms": first_ms,
            "total_ms": (t3 - _T_START) * 1000.0,
            "started_at": _EPOCH_START,
            "engine": {
                k: v
                for k, v in engine.info.items()
                if k in ("model", "task", "runtime", "device", "threads", "random_weights", "weights_sha256")
            },
        }
    )
    _ENGINE = engine


def _memory() -> dict:
    """Resident memory of this process now and at its peak (MB)."""
    try:
        import psutil

        rss = psutil.Process().memory_info().rss / 2**20
    except ImportError:  # psutil missing from the layer: fall back to the peak only
        rss = None
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
    return {"rss_mb": rss, "peak_rss_mb": peak}


def _s3_images(spec: dict) -> list[bytes]:
    if not isinstance(spec, dict) or not spec.get("bucket"):
        raise _BadRequest("'s3' must be an object with 'bucket' and 'key' (or 'keys')")
    keys = spec.get("keys") or ([spec["key"]] if spec.get("key") else [])
    if not keys or not all(isinstance(k, str) for k in keys):
        raise _BadRequest("'s3' needs 'key' (a string) or 'keys' (a list of strings)")
    import boto3  # in the Lambda runtime already; lazy so a direct-image function never pays for it

    s3 = boto3.client("s3")
    out = []
    for key in keys:
        try:
            out.append(s3.get_object(Bucket=spec["bucket"], Key=key)["Body"].read())
        except Exception as exc:  # noqa: BLE001 - botocore's errors: name the object and the cause
            raise _BadRequest(f"could not read s3://{spec['bucket']}/{key}: {exc}") from None
    return out


def _predict(event: dict) -> dict:
    from perfdesk.shipped.inference import BadInput

    if not isinstance(event, dict):
        raise _BadRequest(f"the event must be a JSON object, got {type(event).__name__}")
    options = {k: event[k] for k in ("top_k", "score_threshold", "annotate") if k in event}
    try:
        if "s3" in event:
            images = _s3_images(event["s3"])
            body = {"images": [base64.b64encode(i).decode("ascii") for i in images], **options}
        else:
            images = event.get("images")
            if isinstance(images, list):
                size = sum(len(i) for i in images if isinstance(i, str))
                if size > MAX_SYNC_PAYLOAD:
                    raise _BadRequest(
                        f"the images are {size} bytes of base64, above Lambda's {MAX_SYNC_PAYLOAD}-byte synchronous "
                        "payload limit; send fewer or smaller images, or S3 keys ({'s3': {'bucket', 'keys'}})"
                    )
            body = event
        assert _ENGINE is not None  # _handle() loaded it
        return _ENGINE.predict_request(body)
    except BadInput as exc:
        raise _BadRequest(str(exc)) from None


def _handle(event: dict, context) -> dict:
    global _INVOCATIONS
    t0 = time.perf_counter()
    _INVOCATIONS += 1
    cold = _INVOCATIONS == 1
    _load()
    result = _predict(event)
    result.update(
        {
            "cold": cold,
            "init": dict(_INIT),
            "invocation": _INVOCATIONS,
            "request_id": getattr(context, "aws_request_id", ""),
            "memory": {**_memory(), "limit_mb": int(getattr(context, "memory_limit_in_mb", 0) or 0) or None},
            "handler_ms": (time.perf_counter() - t0) * 1000.0,
        }
    )
    return result


def _s3_records(event: dict, context) -> dict:
    """S3 ObjectCreated records: read each input object, write the answer as its output object."""
    from urllib.parse import unquote_plus

    import boto3  # in the Lambda runtime already

    s3 = boto3.client("s3")
    in_prefix = os.environ.get("PERFDESK_S3_INPUT_PREFIX", "in/")
    out_prefix = os.environ.get("PERFDESK_S3_OUTPUT_PREFIX", "out/")
    written = []
    for record in event["Records"]:
        bucket = record["s3"]["bucket"]["name"]
        key = unquote_plus(record["s3"]["object"]["key"])  # S3 sends the key URL-encoded
        name = key[len(in_prefix) :] if key.startswith(in_prefix) else key.rsplit("/", 1)[-1]
        data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        try:
            inner = json.loads(data) if data[:1] == b"{" else {"images": [base64.b64encode(data).decode("ascii")]}
            out = _handle(inner, context)
        except (ValueError, _BadRequest) as exc:
            out = {"error": f"bad input object s3://{bucket}/{key}: {exc}", "status": 400}
        out_key = out_prefix + name.rsplit(".", 1)[0] + ".json"
        body = json.dumps({**out, "input": {"bucket": bucket, "key": key}}).encode()
        s3.put_object(Bucket=bucket, Key=out_key, Body=body, ContentType="application/json")
        written.append(out_key)
    return {"written": written}


def lambda_handler(event, context):
    """Lambda's entry point; see the module docs for the events and the answer."""
    if isinstance(event, dict) and isinstance(event.get("Records"), list) and event["Records"]:
        if all(isinstance(r, dict) and r.get("eventSource") == "aws:s3" for r in event["Records"]):
            return _s3_records(event, context)
    http = isinstance(event, dict) and event.get("version") == "2.0" and "requestContext" in event
    if http:  # a function URL request: the JSON body is the event, the answer an HTTP response
        raw = event.get("body") or ""
        try:
            raw = base64.b64decode(raw) if event.get("isBase64Encoded") else raw.encode()
            if len(raw) > MAX_SYNC_PAYLOAD:
                raise _BadRequest(f"request body of {len(raw)} bytes is above Lambda's 6 MB limit")
            inner = json.loads(raw or b"{}")
        except (ValueError, _BadRequest) as exc:
            return {
                "statusCode": 400,
                "headers": {"content-type": "application/json"},
                "body": json.dumps({"error": f"bad request body: {exc}", "status": 400}),
            }
        try:
            out, code = _handle(inner, context), 200
        except _BadRequest as exc:
            out, code = {"error": str(exc), "status": 400}, 400
        return {"statusCode": code, "headers": {"content-type": "application/json"}, "body": json.dumps(out)}
    try:
        return _handle(event, context)
    except _BadRequest as exc:
        return {"error": str(exc), "status": 400}


# Inside Lambda (or the emulator) the model loads during the init phase, which Lambda times as Init Duration.
if os.environ.get("AWS_LAMBDA_FUNCTION_NAME") and os.environ.get("PERFDESK_EAGER_LOAD", "1") != "0":
    _load()
