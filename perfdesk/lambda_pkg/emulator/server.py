"""The local Lambda emulator: Lambda's control and invoke API for boto3, backed by real execution environments.

::

    emu = Emulator(idle_s=60, account_concurrency=4).start()
    client = boto3.client("lambda", endpoint_url=emu.url, region_name="us-east-1",
                          aws_access_key_id="local", aws_secret_access_key="local")
    ...                                   # create_function, invoke(LogType="Tail"), ... as against AWS
    emu.stop()                            # kills every environment process

Behaves like Lambda where perfdesk measures it: a cold start when no environment of the current configuration is
idle; idle environments reclaimed after ``idle_s``; reserved (per function) and account concurrency answered with
``TooManyRequestsException`` (429); the timeout enforced by killing the environment; memory above the configured
size ends the environment with ``Runtime.OutOfMemory``; CPU share proportional to memory where cgroups allow;
Lambda's ``REPORT`` line in the base64 tail log.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import shutil
import socket
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from perfdesk.lambda_pkg.emulator import images
from perfdesk.lambda_pkg.emulator.cgroups import CpuLimiter
from perfdesk.lambda_pkg.emulator.environment import ExecutionEnvironment, FunctionSnapshot, Invocation
from perfdesk.lambda_pkg.emulator.images import ImageFunctions, ImageSource
from perfdesk.lambda_pkg.emulator.store import (
    MAX_LAYERS,
    MAX_UNZIPPED,
    MEMORY_RANGE,
    TIMEOUT_RANGE,
    ApiError,
    FunctionRecord,
    LayerVersion,
    code_zip,
    dir_size,
    function_name_from,
    invalid,
    layer_name_from,
    not_found,
    unpack_zip,
)
from perfdesk.lambda_pkg.report import format_report

log = logging.getLogger(__name__)

#: Lambda's synchronous invocation payload limit (request and response).
MAX_SYNC_PAYLOAD = 6 * 1024 * 1024
TAIL_BYTES = 4096


class Emulator:
    """Lambda's API on a loopback port plus the pool of execution environments. Thread-safe."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        work_dir: str | Path | None = None,
        idle_s: float = 300.0,
        account_concurrency: int = 10,
        cpu_limits: bool = True,
        region: str = "us-east-1",
        python: str = sys.executable,
        log_sink: Callable[[str, str], None] | None = None,
        registry: str | None = None,
        s3_endpoint_url: str | None = None,
    ):
        self.host, self.port = host, port
        self.idle_s = idle_s
        self.account_concurrency = account_concurrency
        self.region = region
        self.python = python
        self.log_sink = log_sink  # (function name, log text) after each invocation
        self.s3_endpoint_url = s3_endpoint_url  # where S3Bucket/S3Key code is read (None: boto3's configuration)
        self._own_dir = work_dir is None
        self.work_dir = Path(work_dir or tempfile.mkdtemp(prefix="perfdesk-emulator-"))
        self.limiter = CpuLimiter(enabled=cpu_limits)
        self.images = ImageFunctions(ImageSource(registry))  # container-image functions (images.py)
        self.functions: dict[str, FunctionRecord] = {}
        self.layers: dict[str, dict[int, LayerVersion]] = {}
        self._layer_seq: dict[str, int] = {}
        self._envs: dict[str, list[ExecutionEnvironment]] = {}
        self._inflight: dict[str, int] = {}
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._spawner = ThreadPoolExecutor(1, thread_name_prefix="emulator-spawner")
        self._httpd: ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []
        self.stats = {"cold_starts": 0, "invocations": 0, "throttles": 0, "timeouts": 0, "oom": 0}

    # -- lifecycle -------------------------------------------------------------------------------------------
    def start(self) -> Emulator:
        self._httpd = _ControlServer((self.host, self.port), self)
        self.port = self._httpd.server_address[1]
        for target, name in ((self._httpd.serve_forever, "emulator-api"), (self._reap_loop, "emulator-reaper")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)
        log.info("Lambda emulator on %s (cpu limits: %s)", self.url, self.limiter.reason or "on")
        return self

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        """Kill every environment process, stop serving, remove the working directory. Safe to call twice."""
        self._stop.set()
        with self._lock:
            envs = [e for lst in self._envs.values() for e in lst]
        for env in envs:
            env.kill("emulator shutting down")
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        self._spawner.shutdown(wait=True)
        self.limiter.close()
        if self._own_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def __enter__(self) -> Emulator:
        return self.start() if self._httpd is None else self

    def __exit__(self, *exc) -> None:
        self.stop()

    def describe(self) -> dict[str, Any]:
        """Facts for the manifest: where it listens, the limits it applies, and what it could not emulate."""
        return {
            "endpoint": self.url,
            "python": sys.version.split()[0],
            "idle_s": self.idle_s,
            "account_concurrency": self.account_concurrency,
            "cpu_limits": self.limiter.active,
            "cpu_limits_note": self.limiter.reason or "cgroup v1 cpu quota: memory_mb / 1769 vCPU per environment",
            "memory_limit": "process tree RSS polled (psutil); above MemorySize the environment is killed",
            **self.images.describe(),
        }

    def environment_pids(self) -> list[int]:
        with self._lock:
            return [e.pid for lst in self._envs.values() for e in lst if e.pid and e.alive]

    def environments(self, function: str) -> list[ExecutionEnvironment]:
        with self._lock:
            return [e for e in self._envs.get(function, []) if e.alive]

    # -- environments ----------------------------------------------------------------------------------------
    def _spawn(self, popen: Callable[[], Any]) -> Any:
        # One long-lived thread forks every environment: PR_SET_PDEATHSIG fires when the *thread* that forked
        # a child ends, so forking from short-lived request threads would kill environments after one request.
        return self._spawner.submit(popen).result()

    def _snapshot(self, fn: FunctionRecord) -> FunctionSnapshot:
        return FunctionSnapshot(
            name=fn.name,
            arn=fn.arn,
            handler=fn.handler,
            runtime=fn.runtime,
            memory_mb=fn.memory,
            timeout_s=fn.timeout,
            variables=dict(fn.variables),
            revision=fn.revision,
            task_dir=fn.task_dir,
            layer_dirs=tuple(lv.directory for lv in fn.layers),
            region=fn.region,
        )

    def _acquire(self, name: str) -> tuple[ExecutionEnvironment, FunctionRecord, bool]:
        """A warm idle environment of the function's current revision, or a new one (cold); raise 429 when full."""
        with self._lock:
            fn = self.functions.get(name)
            if fn is None:
                raise not_found(f"Function arn:aws:lambda:{self.region}:123456789012:function:{name}")
            if fn.image is not None:
                fn.image.check_invokable()
            if fn.reserved_concurrency is not None and self._inflight.get(name, 0) >= fn.reserved_concurrency:
                self.stats["throttles"] += 1
                raise ApiError(
                    429,
                    "TooManyRequestsException",
                    "Rate Exceeded.",
                    {"Reason": "ReservedFunctionConcurrentInvocationLimitExceeded"},
                )
            if sum(self._inflight.values()) >= self.account_concurrency:
                self.stats["throttles"] += 1
                raise ApiError(
                    429, "TooManyRequestsException", "Rate Exceeded.", {"Reason": "ConcurrentInvocationLimitExceeded"}
                )
            self._inflight[name] = self._inflight.get(name, 0) + 1
            idle = [e for e in self._envs.get(name, []) if e.state == "idle" and e.snapshot.revision == fn.revision]
            if idle:
                env = max(idle, key=lambda e: e.last_used)
                env.state = "busy"
                return env, fn, False
            env = ExecutionEnvironment(
                self._snapshot(fn),
                self.work_dir / "envs",
                self.limiter,
                self._spawn,
                python=self.python,
                on_dead=self._forget,
            )
            self._envs.setdefault(name, []).append(env)
            self.stats["cold_starts"] += 1
        try:
            env.start()
        except Exception:
            self._release(name, env)
            env.kill("could not start")
            raise
        return env, fn, True

    def _release(self, name: str, env: ExecutionEnvironment) -> None:
        with self._lock:
            self._inflight[name] = max(0, self._inflight.get(name, 0) - 1)
            fn = self.functions.get(name)
            stale = fn is None or env.snapshot.revision != fn.revision
        if stale and env.alive:
            env.kill("configuration changed")

    def _forget(self, env: ExecutionEnvironment) -> None:
        with self._lock:
            lst = self._envs.get(env.snapshot.name, [])
            if env in lst:
                lst.remove(env)
        shutil.rmtree(env.dir, ignore_errors=True)

    def _retire(self, name: str, all_envs: bool = False) -> None:
        """Kill the function's idle environments of older revisions (busy ones go when their invocation ends)."""
        with self._lock:
            fn = self.functions.get(name)
            doomed = [
                e
                for e in self._envs.get(name, [])
                if all_envs or fn is None or (e.state == "idle" and e.snapshot.revision != fn.revision)
            ]
        for env in doomed:
            env.kill("configuration changed")

    def _reap_loop(self) -> None:
        while not self._stop.wait(0.25):
            now = time.monotonic()
            with self._lock:
                doomed = [
                    e
                    for lst in self._envs.values()
                    for e in lst
                    if e.state == "idle" and now - e.last_used > self.idle_s
                ]
            for env in doomed:
                env.kill("idle environment reclaimed")

    # -- invoke ----------------------------------------------------------------------------------------------
    def invoke(self, name: str, payload: bytes, tail: bool) -> tuple[int, dict[str, str], bytes]:
        """Run one synchronous invocation; return (HTTP status, headers, body) as Lambda's Invoke answers."""
        if len(payload) > MAX_SYNC_PAYLOAD:
            raise ApiError(
                413,
                "RequestTooLargeException",
                f"Request must be smaller than {MAX_SYNC_PAYLOAD} bytes for the InvokeFunction operation",
            )
        if payload:
            try:
                json.loads(payload)
            except ValueError:
                raise ApiError(
                    400, "InvalidRequestContentException", "Could not parse request body into json"
                ) from None
        env, fn, cold = self._acquire(name)
        request_id = str(uuid.uuid4())
        inv = Invocation(request_id, payload or b"{}", env.snapshot.timeout_s)
        try:
            env.invoke(inv)
        finally:
            self._release(name, env)
        self.stats["invocations"] += 1
        init_ms = env.init_ms if (cold and env.cold_pending) else None
        env.cold_pending = False
        response = inv.response if inv.error is None else json.dumps(inv.error).encode()
        if inv.error is None and response is not None and len(response) > MAX_SYNC_PAYLOAD:
            inv.status = "error"
            inv.error = {
                "errorType": "Function.ResponseSizeTooLarge",
                "errorMessage": f"Response payload size exceeded maximum allowed payload size "
                f"({MAX_SYNC_PAYLOAD} bytes).",
            }
            response = json.dumps(inv.error).encode()
        status, error_type = "", ""
        if inv.status == "timeout":
            self.stats["timeouts"] += 1
            status = "timeout"
        elif inv.error is not None and inv.error.get("errorType", "").startswith(("Runtime.", "Sandbox.")):
            status, error_type = "error", inv.error["errorType"]
            if error_type == "Runtime.OutOfMemory":
                self.stats["oom"] += 1
        report = format_report(
            request_id, inv.duration_ms, env.snapshot.memory_mb, env.peak_rss_mb(), init_ms, status, error_type
        )
        text = f"START RequestId: {request_id} Version: $LATEST\n{inv.log_text}"
        if inv.status == "timeout":
            text += (
                f"{time.strftime('%Y-%m-%dT%H:%M:%S')}Z {request_id} Task timed out after {inv.timeout_s:.2f} seconds\n"
            )
        text += f"END RequestId: {request_id}\n{report}\n"
        if self.log_sink:
            self.log_sink(name, text)
        headers = {"X-Amz-Executed-Version": "$LATEST", "X-Amzn-RequestId": request_id}
        if inv.error is not None:
            headers["X-Amz-Function-Error"] = "Unhandled"
        if tail:
            headers["X-Amz-Log-Result"] = base64.b64encode(text.encode()[-TAIL_BYTES:]).decode()
        return 200, headers, response or b"null"

    # -- control plane ---------------------------------------------------------------------------------------
    def _function(self, ref: str) -> FunctionRecord:
        name = function_name_from(ref)
        with self._lock:
            fn = self.functions.get(name)
        if fn is None:
            raise not_found(f"Function arn:aws:lambda:{self.region}:123456789012:function:{name}")
        return fn

    def _layers_for(self, arns: list[str]) -> list[LayerVersion]:
        if len(arns) > MAX_LAYERS:
            raise invalid(f"Cannot reference more than {MAX_LAYERS} layers.")
        out = []
        for arn in arns:
            parts = arn.split(":")
            if len(parts) != 8 or parts[5] != "layer":
                raise invalid(f"Layer version {arn} is not a layer version ARN.")
            lv = self.layers.get(parts[6], {}).get(int(parts[7]))
            if lv is None:
                raise invalid(f"Layer version {arn} does not exist.")
            out.append(lv)
        return out

    def _check_config(self, body: dict) -> None:
        if "MemorySize" in body and not MEMORY_RANGE[0] <= int(body["MemorySize"]) <= MEMORY_RANGE[1]:
            raise invalid(
                f"'MemorySize' value failed to satisfy constraint: Member must have value between "
                f"{MEMORY_RANGE[0]} and {MEMORY_RANGE[1]}, inclusive"
            )
        if "Timeout" in body and not TIMEOUT_RANGE[0] <= int(body["Timeout"]) <= TIMEOUT_RANGE[1]:
            raise invalid(
                f"'Timeout' value failed to satisfy constraint: Member must have value between "
                f"{TIMEOUT_RANGE[0]} and {TIMEOUT_RANGE[1]}, inclusive"
            )

    def _check_unzipped(self, task_dir: Path, layers: list[LayerVersion]) -> None:
        total = dir_size(task_dir) + sum(dir_size(lv.directory) for lv in layers)
        if total > MAX_UNZIPPED:
            raise invalid(
                f"Function code combined with layers exceeds the maximum allowed size of {MAX_UNZIPPED}"
                f" bytes. The actual size is {total} bytes."
            )

    def create_function(self, body: dict) -> dict:
        if body.get("PackageType") == "Image" or "ImageUri" in (body.get("Code") or {}):
            return images.create_image_function(self, body).configuration()
        name = body.get("FunctionName") or ""
        function_name_from(name)
        for key in ("Role", "Handler", "Runtime"):
            if not body.get(key):
                raise invalid(f"{key} is required for a zip package")
        self._check_config(body)
        code = body.get("Code") or {}
        if "ImageUri" in code:
            raise invalid("The emulator accepts zip code only (Code.ZipFile, or Code.S3Bucket/S3Key), no images.")
        with self._lock:
            if name in self.functions:
                raise ApiError(409, "ResourceConflictException", f"Function already exist: {name}")
            layers = self._layers_for(body.get("Layers") or [])
        task_dir = self.work_dir / "functions" / name / "code-1"
        data, inline = code_zip(code, self.region, self.s3_endpoint_url)
        sha, size = unpack_zip(data, task_dir, inline=inline)
        self._check_unzipped(task_dir, layers)
        fn = FunctionRecord(
            name=name,
            region=self.region,
            runtime=body["Runtime"],
            role=body["Role"],
            handler=body["Handler"],
            task_dir=task_dir,
            code_sha256=sha,
            code_size=size,
            description=body.get("Description", ""),
            timeout=int(body.get("Timeout", 3)),
            memory=int(body.get("MemorySize", 128)),
            variables=dict((body.get("Environment") or {}).get("Variables") or {}),
            layers=layers,
            architectures=body.get("Architectures") or ["x86_64"],
            tags=dict(body.get("Tags") or {}),
        )
        with self._lock:
            if name in self.functions:
                raise ApiError(409, "ResourceConflictException", f"Function already exist: {name}")
            self.functions[name] = fn
        return fn.configuration()

    def update_configuration(self, ref: str, body: dict) -> dict:
        fn = self._function(ref)
        self._check_config(body)
        with fn.lock:
            if body.get("RevisionId") and body["RevisionId"] != fn.revision_id:
                raise ApiError(
                    412,
                    "PreconditionFailedException",
                    "The Revision Id provided does not match the latest Revision Id.",
                )
            if fn.image is not None:
                images.check_image_configuration(fn, body)
            if "Layers" in body:
                fn.layers = self._layers_for(body["Layers"] or [])
            for key, attr in (("MemorySize", "memory"), ("Timeout", "timeout")):
                if key in body:
                    setattr(fn, attr, int(body[key]))
            for key, attr in (
                ("Handler", "handler"),
                ("Runtime", "runtime"),
                ("Role", "role"),
                ("Description", "description"),
            ):
                if key in body:
                    setattr(fn, attr, body[key])
            if "Environment" in body:
                fn.variables = dict((body["Environment"] or {}).get("Variables") or {})
            fn.touch()
        self._retire(fn.name)
        return fn.configuration()

    def update_code(self, ref: str, body: dict) -> dict:
        fn = self._function(ref)
        if fn.image is not None or "ImageUri" in body:
            images.update_image_code(self, fn, body)
            return fn.configuration()
        if "ImageUri" in body:
            raise invalid("The emulator accepts zip code only (ZipFile, or S3Bucket/S3Key), no images.")
        data, inline = code_zip(body, self.region, self.s3_endpoint_url)
        with fn.lock:
            task_dir = fn.task_dir.parent / f"code-{fn.revision + 1}"
            sha, size = unpack_zip(data, task_dir, inline=inline)
            self._check_unzipped(task_dir, fn.layers)
            fn.task_dir, fn.code_sha256, fn.code_size = task_dir, sha, size
            if body.get("Architectures"):
                fn.architectures = body["Architectures"]
            fn.touch()
        self._retire(fn.name)
        return fn.configuration()

    def delete_function(self, ref: str) -> None:
        fn = self._function(ref)
        with self._lock:
            self.functions.pop(fn.name, None)
        self._retire(fn.name, all_envs=True)
        shutil.rmtree(self.work_dir / "functions" / fn.name, ignore_errors=True)

    def publish_layer(self, ref: str, body: dict) -> dict:
        name = layer_name_from(ref)
        content = body.get("Content") or {}
        data, inline = code_zip(content, self.region, self.s3_endpoint_url)
        with self._lock:
            version = self._layer_seq[name] = self._layer_seq.get(name, 0) + 1
        directory = self.work_dir / "layers" / name / str(version)
        sha, size = unpack_zip(data, directory, inline=inline)
        lv = LayerVersion(
            name,
            version,
            directory,
            sha,
            size,
            body.get("Description", ""),
            body.get("CompatibleRuntimes") or [],
            body.get("CompatibleArchitectures") or [],
            body.get("LicenseInfo"),
        )
        with self._lock:
            self.layers.setdefault(name, {})[version] = lv
        return lv.to_api(self.region, self.url)

    def _layer(self, ref: str, version: str) -> LayerVersion:
        name = layer_name_from(ref)
        lv = self.layers.get(name, {}).get(int(version))
        if lv is None:
            raise not_found(f"Layer version arn:aws:lambda:{self.region}:123456789012:layer:{name}:{version}")
        return lv

    def _tag_target(self, arn: str) -> FunctionRecord:
        if ":function:" not in arn:
            raise invalid(f"The emulator tags functions only, not {arn}")
        return self._function(arn)


# -- HTTP ------------------------------------------------------------------------------------------------------
_ROUTES: list[tuple[str, re.Pattern, str]] = [
    (m, re.compile("^" + p + "$"), h)
    for m, p, h in [
        ("POST", r"/2015-03-31/functions/?", "create_function"),
        ("GET", r"/2015-03-31/functions/?", "list_functions"),
        ("GET", r"/2015-03-31/functions/(?P<fn>[^/]+)", "get_function"),
        ("DELETE", r"/2015-03-31/functions/(?P<fn>[^/]+)", "delete_function"),
        ("GET", r"/2015-03-31/functions/(?P<fn>[^/]+)/configuration", "get_configuration"),
        ("PUT", r"/2015-03-31/functions/(?P<fn>[^/]+)/configuration", "update_configuration"),
        ("PUT", r"/2015-03-31/functions/(?P<fn>[^/]+)/code", "update_code"),
        ("POST", r"/2015-03-31/functions/(?P<fn>[^/]+)/invocations", "invoke"),
        ("POST", r"/2015-03-31/functions/(?P<fn>[^/]+)/policy", "add_permission"),
        ("PUT", r"/2017-10-31/functions/(?P<fn>[^/]+)/concurrency", "put_concurrency"),
        ("DELETE", r"/2017-10-31/functions/(?P<fn>[^/]+)/concurrency", "delete_concurrency"),
        ("GET", r"/2019-09-30/functions/(?P<fn>[^/]+)/concurrency", "get_concurrency"),
        ("POST", r"/2021-10-31/functions/(?P<fn>[^/]+)/url", "create_url"),
        ("GET", r"/2021-10-31/functions/(?P<fn>[^/]+)/url", "get_url"),
        ("DELETE", r"/2021-10-31/functions/(?P<fn>[^/]+)/url", "delete_url"),
        ("POST", r"/2018-10-31/layers/(?P<layer>[^/]+)/versions", "publish_layer"),
        ("GET", r"/2018-10-31/layers/(?P<layer>[^/]+)/versions", "list_layer_versions"),
        ("GET", r"/2018-10-31/layers/(?P<layer>[^/]+)/versions/(?P<ver>\d+)", "get_layer_version"),
        ("DELETE", r"/2018-10-31/layers/(?P<layer>[^/]+)/versions/(?P<ver>\d+)", "delete_layer_version"),
        ("POST", r"/2017-03-31/tags/(?P<arn>.+)", "tag_resource"),
        ("GET", r"/2017-03-31/tags/(?P<arn>.+)", "list_tags"),
        ("DELETE", r"/2017-03-31/tags/(?P<arn>.+)", "untag_resource"),
        ("POST", r"/lambda-url/(?P<fn>[^/]+)(?P<rest>/.*)?", "url_invoke"),
        ("GET", r"/lambda-url/(?P<fn>[^/]+)(?P<rest>/.*)?", "url_invoke"),
    ]
]


class _ControlServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def handle_error(self, request, client_address) -> None:
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):  # client went away
            super().handle_error(request, client_address)

    def __init__(self, address: tuple[str, int], emulator: Emulator):
        self.emulator = emulator
        super().__init__(address, _ControlHandler)


class _ControlHandler(BaseHTTPRequestHandler):
    """Routes Lambda's REST API (the URIs of botocore's lambda service model) to the emulator."""

    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # headers and body leave in separate writes: without TCP_NODELAY, Nagle and delayed ACKs add ~40 ms
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    server: _ControlServer

    def log_message(self, format: str, *args) -> None:
        log.debug("emulator api: " + format, *args)

    def _send(
        self,
        status: int,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if "X-Amzn-RequestId" not in (headers or {}):
            self.send_header("X-Amzn-RequestId", str(uuid.uuid4()))
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, data: Any) -> None:
        self._send(status, json.dumps(data).encode())

    def _dispatch(self) -> None:
        parts = urlsplit(self.path)
        path = parts.path
        query = {k: v for k, v in parse_qs(parts.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        for method, rx, handler in _ROUTES:
            if method != self.command:
                continue
            m = rx.match(path)
            if m:
                args = {k: unquote(v) if v else v for k, v in m.groupdict().items()}
                try:
                    getattr(self, "h_" + handler)(raw, query, **args)
                except ApiError as exc:
                    body = {"Type": "User", "Message": exc.message, "message": exc.message, **exc.extra}
                    self._send(exc.status, json.dumps(body).encode(), {"x-amzn-ErrorType": exc.code})
                except Exception as exc:  # a bug in the emulator: say so, in Lambda's shape
                    log.exception("emulator: %s %s failed", self.command, path)
                    body = {"Type": "Service", "Message": f"emulator internal error: {exc!r}"}
                    self._send(500, json.dumps(body).encode(), {"x-amzn-ErrorType": "ServiceException"})
                return
        self._send(
            404,
            json.dumps({"Type": "User", "Message": f"no such API: {self.command} {path}"}).encode(),
            {"x-amzn-ErrorType": "ResourceNotFoundException"},
        )

    do_GET = do_POST = do_PUT = do_DELETE = _dispatch

    @property
    def emu(self) -> Emulator:
        return self.server.emulator

    @staticmethod
    def _body(raw: bytes) -> dict:
        try:
            return json.loads(raw or b"{}")
        except ValueError:
            raise invalid("request body is not JSON") from None

    # functions
    def h_create_function(self, raw, query):
        self._json(201, self.emu.create_function(self._body(raw)))

    def h_list_functions(self, raw, query):
        with self.emu._lock:
            fns = sorted(self.emu.functions.values(), key=lambda f: f.name)
        start = int(query.get("Marker", ["0"])[0] or 0)
        size = int(query.get("MaxItems", ["50"])[0] or 50)
        page = fns[start : start + size]
        out: dict[str, Any] = {"Functions": [f.configuration() for f in page]}
        if start + size < len(fns):
            out["NextMarker"] = str(start + size)
        self._json(200, out)

    def h_get_function(self, raw, query, fn):
        rec = self.emu._function(fn)
        out = {
            "Configuration": rec.configuration(),
            "Code": rec.image.code()
            if rec.image is not None
            else {"RepositoryType": "S3", "Location": f"{self.emu.url}/code/{rec.name}"},
            "Tags": dict(rec.tags),
        }
        if rec.reserved_concurrency is not None:
            out["Concurrency"] = {"ReservedConcurrentExecutions": rec.reserved_concurrency}
        self._json(200, out)

    def h_delete_function(self, raw, query, fn):
        self.emu.delete_function(fn)
        self._send(204)

    def h_get_configuration(self, raw, query, fn):
        self._json(200, self.emu._function(fn).configuration())

    def h_update_configuration(self, raw, query, fn):
        self._json(200, self.emu.update_configuration(fn, self._body(raw)))

    def h_update_code(self, raw, query, fn):
        self._json(200, self.emu.update_code(fn, self._body(raw)))

    def h_invoke(self, raw, query, fn):
        name = self.emu._function(fn).name
        kind = self.headers.get("X-Amz-Invocation-Type", "RequestResponse")
        tail = self.headers.get("X-Amz-Log-Type", "None") == "Tail"
        if kind == "DryRun":
            self._send(204)
            return
        if kind == "Event":
            threading.Thread(target=self._invoke_quietly, args=(name, raw), daemon=True).start()
            self._send(202)
            return
        status, headers, body = self.emu.invoke(name, raw, tail)
        self._send(status, body, headers)

    def _invoke_quietly(self, name: str, raw: bytes) -> None:
        try:
            self.emu.invoke(name, raw, False)
        except ApiError as exc:
            log.warning("async invocation of %s: %s", name, exc.message)

    def h_add_permission(self, raw, query, fn):
        body = self._body(raw)
        rec = self.emu._function(fn)
        statement = {
            "Sid": body.get("StatementId", "perm"),
            "Effect": "Allow",
            "Principal": body.get("Principal", "*"),
            "Action": body.get("Action", ""),
            "Resource": rec.arn,
        }
        self._json(201, {"Statement": json.dumps(statement)})

    # concurrency
    def h_put_concurrency(self, raw, query, fn):
        rec = self.emu._function(fn)
        value = self._body(raw).get("ReservedConcurrentExecutions")
        if value is None or int(value) < 0:
            raise invalid("ReservedConcurrentExecutions must be a number >= 0")
        if int(value) > self.emu.account_concurrency:
            raise invalid(
                f"Specified ReservedConcurrentExecutions for function exceeds the account's "
                f"concurrency limit ({self.emu.account_concurrency})."
            )
        rec.reserved_concurrency = int(value)
        self._json(200, {"ReservedConcurrentExecutions": rec.reserved_concurrency})

    def h_delete_concurrency(self, raw, query, fn):
        self.emu._function(fn).reserved_concurrency = None
        self._send(204)

    def h_get_concurrency(self, raw, query, fn):
        rec = self.emu._function(fn)
        out = {} if rec.reserved_concurrency is None else {"ReservedConcurrentExecutions": rec.reserved_concurrency}
        self._json(200, out)

    # function URLs: the emulator serves them itself under /lambda-url/<function>/
    def h_create_url(self, raw, query, fn):
        rec = self.emu._function(fn)
        if rec.url_config is not None:
            raise ApiError(409, "ResourceConflictException", f"Function URL already exists for {rec.name}")
        body = self._body(raw)
        rec.url_config = {
            "FunctionUrl": f"{self.emu.url}/lambda-url/{rec.name}/",
            "FunctionArn": rec.arn,
            "AuthType": body.get("AuthType", "NONE"),
            "InvokeMode": body.get("InvokeMode", "BUFFERED"),
            "CreationTime": rec.last_modified,
            "LastModifiedTime": rec.last_modified,
        }
        self._json(201, rec.url_config)

    def h_get_url(self, raw, query, fn):
        rec = self.emu._function(fn)
        if rec.url_config is None:
            raise not_found(f"Function URL for {rec.name}")
        self._json(200, rec.url_config)

    def h_delete_url(self, raw, query, fn):
        rec = self.emu._function(fn)
        if rec.url_config is None:
            raise not_found(f"Function URL for {rec.name}")
        rec.url_config = None
        self._send(204)

    def h_url_invoke(self, raw, query, fn, rest=None):
        """A function URL request: the HTTP request becomes a payload-format-2.0 event, the result the answer."""
        rec = self.emu._function(fn)
        if rec.url_config is None:
            self._send(404, b'{"Message":"Function URL not found"}')
            return
        event = {
            "version": "2.0",
            "rawPath": rest or "/",
            "rawQueryString": urlsplit(self.path).query,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "requestContext": {"http": {"method": self.command, "path": rest or "/"}},
            "body": base64.b64encode(raw).decode(),
            "isBase64Encoded": True,
        }
        try:
            _, headers, body = self.emu.invoke(rec.name, json.dumps(event).encode(), False)
        except ApiError as exc:
            self._send(exc.status, json.dumps({"Message": exc.message}).encode())
            return
        if "X-Amz-Function-Error" in headers:
            self._send(502, b'{"Message":"Internal Server Error"}')
            return
        try:
            result = json.loads(body)
        except ValueError:
            result = body.decode(errors="replace")
        if isinstance(result, dict) and "statusCode" in result:
            out = result.get("body") or ""
            data = base64.b64decode(out) if result.get("isBase64Encoded") else str(out).encode()
            self._send(
                int(result["statusCode"]),
                data,
                result.get("headers") or {},
                (result.get("headers") or {}).get("content-type", "application/json"),
            )
        else:
            self._send(200, json.dumps(result).encode())

    # layers
    def h_publish_layer(self, raw, query, layer):
        self._json(201, self.emu.publish_layer(layer, self._body(raw)))

    def h_list_layer_versions(self, raw, query, layer):
        name = layer_name_from(layer)
        with self.emu._lock:
            versions = sorted(self.emu.layers.get(name, {}).values(), key=lambda v: -v.version)
        items = []
        for lv in versions:
            api = lv.to_api(self.emu.region, self.emu.url)
            api.pop("Content")
            api.pop("LayerArn")
            items.append(api)
        self._json(200, {"LayerVersions": items})

    def h_get_layer_version(self, raw, query, layer, ver):
        self._json(200, self.emu._layer(layer, ver).to_api(self.emu.region, self.emu.url))

    def h_delete_layer_version(self, raw, query, layer, ver):
        name = layer_name_from(layer)
        with self.emu._lock:
            self.emu.layers.get(name, {}).pop(int(ver), None)
        # like Lambda: functions that use it keep their copy; deleting a missing version is not an error
        self._send(204)

    # tags
    def h_tag_resource(self, raw, query, arn):
        self.emu._tag_target(arn).tags.update(self._body(raw).get("Tags") or {})
        self._send(204)

    def h_list_tags(self, raw, query, arn):
        self._json(200, {"Tags": dict(self.emu._tag_target(arn).tags)})

    def h_untag_resource(self, raw, query, arn):
        rec = self.emu._tag_target(arn)
        for key in query.get("tagKeys", []):
            rec.tags.pop(key, None)
        self._send(204)
