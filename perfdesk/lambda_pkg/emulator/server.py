"""The local Lambda emulator: Lambda's control and invoke API for boto3 and the AWS CLI, backed by execution
environments that give a function what Lambda's Python runtime gives and nothing more.

::

    emu = Emulator(idle_s=60, account_concurrency=4).start()
    client = boto3.client("lambda", endpoint_url=emu.url, region_name="us-east-1",
                          aws_access_key_id="test", aws_secret_access_key="test")
    ...                                   # create_function, invoke(LogType="Tail"), ... as against AWS
    emu.stop()                            # kills every environment process

Behaves like Lambda where a function or perfdesk can tell: the runtime's own interpreter (python3.10..3.13) with
only boto3 and the runtime interface client, the code read-only at /var/task, layers read-only under /opt, a /tmp
of the function's ephemeral storage, a non-root user, Lambda's environment variables (see :mod:`environment`); a
cold start when no environment of the current configuration is idle; idle environments reclaimed after ``idle_s``;
reserved and account concurrency answered with ``TooManyRequestsException`` (429); the 10 s init phase, then the
init retried inside the invocation; the timeout enforced by killing the environment; memory above the configured
size ending the environment (``Runtime.OutOfMemory``); CPU share proportional to memory; Lambda's limits on code,
layers and payloads with AWS's errors; Lambda's ``REPORT`` (and ``INIT_REPORT``) lines in the base64 tail log;
function URLs with SigV4 (``AWS_IAM``) or the public-access policy (``NONE``); API Gateway HTTP APIs of a local
``apigatewayv2`` control plane (:mod:`apigw`); S3 event notifications from a local S3 (:mod:`s3events`).

The emulator accepts the credentials ``test``/``test`` and ``perfdesk-local``/``perfdesk-local``, those given to
it, and each function's stand-in role credentials (for function URLs signed from inside a function); it verifies
signatures on function URLs only.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import secrets
import shutil
import socket
import string
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

from perfdesk.lambda_pkg.emulator import apigw, arch, capacity, images, s3events, sigv4, snapstart, urls
from perfdesk.lambda_pkg.emulator.cgroups import MAX_VCPUS, MB_PER_VCPU, CpuLimiter, MemoryLimiter
from perfdesk.lambda_pkg.emulator.environment import (
    INIT_TIMEOUT_S,
    Credentials,
    ExecutionEnvironment,
    FunctionSnapshot,
    Invocation,
    probe_isolation,
)
from perfdesk.lambda_pkg.emulator.images import ImageFunctions, ImageSource
from perfdesk.lambda_pkg.emulator.runtimes import PYTHON_RUNTIMES, RuntimeCache, RuntimeUnavailable
from perfdesk.lambda_pkg.emulator.store import (
    ACCOUNT_ID,
    EPHEMERAL_RANGE,
    MAX_LAYERS,
    MEMORY_RANGE,
    TIMEOUT_RANGE,
    ApiError,
    FunctionRecord,
    LayerVersion,
    check_combined_size,
    check_variables,
    code_zip,
    function_name_from,
    invalid,
    layer_name_from,
    not_found,
    open_zip,
    unpack_zip,
)
from perfdesk.lambda_pkg.report import format_report

log = logging.getLogger(__name__)

#: Lambda's synchronous invocation payload limit for the request.
MAX_SYNC_PAYLOAD = 6 * 1024 * 1024
TAIL_BYTES = 4096
#: Credentials every emulator accepts (the usual dummy pairs of local AWS stand-ins, and perfdesk's own).
DEFAULT_CREDENTIALS = {"test": "test", "perfdesk-local": "perfdesk-local"}


def _role_credentials() -> Credentials:
    alphabet = string.ascii_uppercase + string.digits
    key = "ASIA" + "".join(secrets.choice(alphabet) for _ in range(16))
    return Credentials(key, secrets.token_urlsafe(30)[:40], base64.b64encode(secrets.token_bytes(96)).decode())


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
        log_sink: Callable[[str, str], None] | None = None,
        *,
        memory_limits: bool = True,
        runtime_cache: str | Path | None = None,
        credentials: dict[str, str] | None = None,
        init_timeout_s: float = INIT_TIMEOUT_S,
        s3_endpoint_url: str | None = None,
        registry: str | None = None,
        apigw_endpoint_url: str | None = None,
        managed_min_environments: int = 1,
        managed_max_environments: int = 4,
    ):
        self.host, self.port = host, port
        self.idle_s = idle_s
        self.account_concurrency = account_concurrency
        self.region = region
        self.init_timeout_s = init_timeout_s
        self.s3_endpoint_url = s3_endpoint_url  # where S3Bucket/S3Key code is read (None: boto3's configuration)
        self.log_sink = log_sink  # (function name, log text) after each invocation, as CloudWatch would get it
        self._own_dir = work_dir is None
        self.work_dir = Path(work_dir or tempfile.mkdtemp(prefix="perfdesk-emulator-"))
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.isolation = probe_isolation(self.work_dir)
        self.limiter = CpuLimiter(enabled=cpu_limits)
        self.memory_limiter = MemoryLimiter(enabled=memory_limits)
        self.runtimes = RuntimeCache(runtime_cache)
        self.images = ImageFunctions(ImageSource(registry))  # container-image functions (images.py)
        self.credentials: dict[str, tuple[str, str | None]] = {
            k: (v, None) for k, v in {**DEFAULT_CREDENTIALS, **(credentials or {})}.items()
        }
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
        # API Gateway's data plane and S3's event delivery, over the local control planes (moto) named here
        self.apigw = apigw.HttpApis(self, apigw_endpoint_url or s3_endpoint_url)
        self.s3_events = s3events.S3Events(self, s3_endpoint_url) if s3_endpoint_url else None
        # Lambda Managed Instances: capacity providers, published versions, managed environments (capacity.py)
        self.managed_min_environments, self.managed_max_environments = (
            managed_min_environments,
            managed_max_environments,
        )
        self.capacity = capacity.Capacity(self)

    # -- lifecycle -------------------------------------------------------------------------------------------
    def start(self) -> Emulator:
        self._httpd = _ControlServer((self.host, self.port), self)
        self.port = self._httpd.server_address[1]
        for target, name in ((self._httpd.serve_forever, "emulator-api"), (self._reap_loop, "emulator-reaper")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)
        log.info(
            "Lambda emulator on %s (isolation: %s; memory: %s; cpu: %s)",
            self.url,
            self.isolation.mode,
            "cgroup" if self.memory_limiter.active else "polled",
            "cgroup" if self.limiter.active else "unlimited",
        )
        return self

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        """Kill every environment process, stop serving, remove the working directory. Safe to call twice."""
        self._stop.set()
        if self.s3_events is not None:
            self.s3_events.stop()
        with self._lock:
            envs = [e for lst in self._envs.values() for e in lst]
        for env in envs:
            env.kill("emulator shutting down")
        with self._lock:
            versions = [v for fn in self.functions.values() for v in fn.versions.values()]
        for version in versions:
            snapstart.discard(version)
        self.capacity.stop()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        self._spawner.shutdown(wait=True)
        self.limiter.close()
        self.memory_limiter.close()
        if self._own_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def __enter__(self) -> Emulator:
        return self.start() if self._httpd is None else self

    def __exit__(self, *exc) -> None:
        self.stop()

    def describe(self) -> dict[str, Any]:
        """Facts for the manifest: where it listens, how faithful its environments are here, and what it could not
        emulate on this machine."""
        return {
            "endpoint": self.url,
            "idle_s": self.idle_s,
            "account_concurrency": self.account_concurrency,
            **self.isolation.describe(),
            "runtimes": {rt: self.runtimes.describe(rt) for rt in PYTHON_RUNTIMES},
            "memory_limit": (
                "cgroup v1 memory controller: a hard limit at MemorySize (the OOM killer ends the environment)"
                if self.memory_limiter.active
                else f"polled process-tree RSS every 20 ms, killed above MemorySize ({self.memory_limiter.reason})"
            ),
            "memory_limits": "cgroup" if self.memory_limiter.active else "polled",
            "cpu_limits": self.limiter.active,
            "cpu_limits_note": self.limiter.reason
            or f"cgroup v1 cpu quota: MemorySize / {MB_PER_VCPU} vCPU per environment, at most {MAX_VCPUS}",
            "init_timeout_s": self.init_timeout_s,
            "snapstart": "a SnapStart version's initialised environment kept as its snapshot; each restore forks it "
            "(own Runtime API, cgroups and log; the snapshot's /tmp and PID namespace shared)",
            "architectures": arch.describe(),
            **self.images.describe(),
            **self.capacity.describe(),
        }

    def environment_pids(self) -> list[int]:
        with self._lock:
            pids = [e.pid for lst in self._envs.values() for e in lst if e.pid and e.alive]
        return pids + self.capacity.pids()

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
            ephemeral_mb=fn.ephemeral_mb,
            credentials=fn.credentials,
            image=images.image_run(fn),
            version=fn.version,
        )

    def _record(self, key: str) -> FunctionRecord:
        """The function (``name``) or one of its published versions (``name:N``) an invoke names."""
        name, _, qualifier = key.partition(":")
        fn = self.functions.get(name)
        if fn is None:
            raise not_found(f"Function not found: arn:aws:lambda:{self.region}:{ACCOUNT_ID}:function:{key}")
        if qualifier and qualifier not in ("$LATEST", "$LATEST.PUBLISHED"):
            managed = self.capacity.versions.get(name, {}).get(qualifier)
            if managed is not None:  # a Managed Instances version (capacity.py keeps those)
                return managed.record
            version = fn.versions.get(qualifier)
            if version is None:
                raise not_found(f"Function not found: {fn.arn}:{qualifier}")
            return version
        return fn

    def _acquire(self, key: str) -> tuple[ExecutionEnvironment, FunctionRecord, bool]:
        """A warm idle environment of the function's current revision, or a new one (cold); raise 429 when full.
        ``key`` is the function's name, or ``name:N`` for its published version N (its environments apart)."""
        name, _, qualifier = key.partition(":")
        managed = self.capacity.acquire(name, qualifier or None)  # a version on a capacity provider: never cold
        if managed is not None:
            return managed, self.functions[name], False
        with self._lock:
            fn = self._record(key)
            if fn.snap_start == "PublishedVersions" and fn.version != "$LATEST":
                snapstart.check_invokable(fn)
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
            if fn.reserved_concurrency is None and self._unreserved_full():
                self.stats["throttles"] += 1
                raise ApiError(
                    429, "TooManyRequestsException", "Rate Exceeded.", {"Reason": "ConcurrentInvocationLimitExceeded"}
                )
            self._inflight[name] = self._inflight.get(name, 0) + 1
            idle = [e for e in self._envs.get(key, []) if e.state == "idle" and e.snapshot.revision == fn.revision]
            if idle:
                env = max(idle, key=lambda e: e.last_used)
                env.state = "busy"
                return env, fn, False
        try:
            runtime = None if fn.image is not None else self.runtimes.get(fn.runtime)  # an image brings its own
        except RuntimeUnavailable as exc:
            self._release(name, None)
            raise invalid(f"The emulator cannot run runtime {fn.runtime}: {exc}") from None
        with self._lock:
            if fn.snap_start == "PublishedVersions" and fn.version != "$LATEST":  # restored from its snapshot
                env = snapstart.new_environment(self, fn, self._forget)
            else:
                env = ExecutionEnvironment(
                    self._snapshot(fn),
                    self.work_dir / "envs",
                    runtime,
                    self.isolation,
                    self.limiter,
                    self.memory_limiter,
                    self._spawn,
                    on_dead=self._forget,
                    init_timeout_s=self.init_timeout_s,
                )
            self._envs.setdefault(key, []).append(env)
            self.stats["cold_starts"] += 1
        try:
            env.start()
        except Exception:
            self._release(name, env)
            env.kill("could not start")
            raise
        return env, fn, True

    def _unreserved_full(self) -> bool:
        """Whether the account's unreserved pool is in use: functions without reserved concurrency share the account
        limit less every function's reservation (as on Lambda: a reservation is taken from the pool, used or not)."""
        reserved = sum(f.reserved_concurrency or 0 for f in self.functions.values())
        shared = 0
        for fname, n in self._inflight.items():
            f = self.functions.get(fname)
            if f is None or f.reserved_concurrency is None:
                shared += n
        return shared >= self.account_concurrency - reserved

    def _release(self, key: str, env: ExecutionEnvironment | None) -> None:
        name = key.partition(":")[0]
        if self.capacity.release(env):
            return
        with self._lock:
            self._inflight[name] = max(0, self._inflight.get(name, 0) - 1)
            try:
                fn: FunctionRecord | None = self._record(key)
            except ApiError:
                fn = None
            stale = env is not None and (fn is None or env.snapshot.revision != fn.revision)
        if stale and env is not None and env.alive:
            env.kill("configuration changed")

    def _forget(self, env: ExecutionEnvironment) -> None:
        snap = env.snapshot
        with self._lock:
            lst = self._envs.get(snap.name if snap.version == "$LATEST" else f"{snap.name}:{snap.version}", [])
            if env in lst:
                lst.remove(env)
        threading.Thread(target=shutil.rmtree, args=(env.dir,), kwargs={"ignore_errors": True}, daemon=True).start()

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
    def invoke(
        self, name: str, payload: bytes, tail: bool, client_context: str | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        """Run one synchronous invocation; return (HTTP status, headers, body) as Lambda's Invoke answers. ``name``
        is the function's, or ``name:N`` for a published version (a SnapStart or a Managed Instances one)."""
        if len(payload) > MAX_SYNC_PAYLOAD:
            raise ApiError(
                413,
                "RequestEntityTooLargeException",
                f"Request must be smaller than {MAX_SYNC_PAYLOAD} bytes for the InvokeFunction operation",
            )
        if payload:
            try:
                json.loads(payload)
            except ValueError:
                raise ApiError(
                    400, "InvalidRequestContentException", "Could not parse request body into json"
                ) from None
        context = None
        if client_context:
            try:
                context = base64.b64decode(client_context, validate=True).decode()
                json.loads(context)
            except (binascii.Error, ValueError):
                raise ApiError(
                    400, "InvalidRequestContentException", "Client context must be a valid Base64-encoded JSON object."
                ) from None
        request_id = str(uuid.uuid4())
        key, name = name, name.partition(":")[0]
        with self._lock:
            record = self._record(key)
        failure = arch.init_failure(record)  # native code of another machine fails the init, as on Lambda
        if failure is not None:
            self.stats["invocations"] += 1
            status_code, headers, body, text = arch.failed_invocation(request_id, record, failure, tail)
            if self.log_sink:
                self.log_sink(name, text)
            return status_code, headers, body
        for _ in range(3):  # an environment whose runtime died before taking the invocation is not used
            env, fn, cold = self._acquire(key)
            inv = Invocation(request_id, payload or b"{}", env.snapshot.timeout_s, client_context=context)
            try:
                env.invoke(inv)
            finally:
                self._release(key, env)
            if not inv.undelivered:
                break
        self.stats["invocations"] += 1
        status, error_type = "", ""
        if inv.status == "timeout":
            self.stats["timeouts"] += 1
            status = "timeout"
        elif inv.report_error:
            status, error_type = "error", inv.report_error
            if error_type == "Runtime.OutOfMemory":
                self.stats["oom"] += 1
        report = format_report(
            request_id,
            inv.duration_ms,
            env.snapshot.memory_mb,
            env.peak_memory_mb(),
            inv.init_ms,
            status,
            error_type,
            restore_ms=inv.restore_ms,
            billed_restore_ms=inv.billed_restore_ms,
        )
        text = inv.preamble + f"START RequestId: {request_id} Version: {env.snapshot.version}\n{inv.log_text}"
        if inv.status == "timeout":
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
            text += f"{stamp}.000Z {request_id} Task timed out after {inv.timeout_s:.2f} seconds\n"
        text += f"END RequestId: {request_id}\n{report}\n"
        if self.log_sink:
            self.log_sink(name, (env.runtime_version_line() + inv.prelude if cold else inv.prelude) + text)
        headers = {"X-Amz-Executed-Version": env.snapshot.version, "X-Amzn-RequestId": request_id}
        if inv.error is not None:
            headers["X-Amz-Function-Error"] = "Unhandled"
            body = json.dumps(inv.error).encode()
        else:
            body = inv.response if inv.response is not None else b"null"
        if tail:
            headers["X-Amz-Log-Result"] = base64.b64encode(text.encode()[-TAIL_BYTES:]).decode()
        return 200, headers, body

    # -- control plane ---------------------------------------------------------------------------------------
    def _function(self, ref: str) -> FunctionRecord:
        name = function_name_from(ref)
        with self._lock:
            fn = self.functions.get(name)
        if fn is None:
            raise not_found(f"Function not found: arn:aws:lambda:{self.region}:{ACCOUNT_ID}:function:{name}")
        return fn

    def _layers_for(self, arns: list[str]) -> list[LayerVersion]:
        if len(arns) > MAX_LAYERS:
            raise invalid(f"Cannot reference more than {MAX_LAYERS} layers.")
        out = []
        for arn in arns:
            parts = arn.split(":")
            if len(parts) != 8 or parts[5] != "layer" or not parts[7].isdigit():
                raise ApiError(
                    400,
                    "ValidationException",
                    f"1 validation error detected: Value '[{arn}]' at 'layers' failed to satisfy constraint: "
                    "Member must satisfy constraint: [Member must satisfy regular expression pattern: "
                    r"(arn:[a-zA-Z0-9-]+:lambda:[a-zA-Z0-9-]+:\d{12}:layer:[a-zA-Z0-9-_]+:[0-9]+)]",
                )
            lv = self.layers.get(parts[6], {}).get(int(parts[7]))
            if lv is None:
                raise invalid(f"Layer version {arn} does not exist.")
            out.append(lv)
        return out

    def _check_runtime(self, runtime: str) -> None:
        """Refuse a runtime the emulator cannot run here, saying how to provide it; prepare it (once) if it can."""
        try:
            self.runtimes.check(runtime)
            self.runtimes.get(runtime)
        except RuntimeUnavailable as exc:
            if runtime not in PYTHON_RUNTIMES:
                raise invalid(
                    f"Value {runtime} at 'runtime' is not a runtime the emulator runs: it runs "
                    f"{', '.join(PYTHON_RUNTIMES)} (zip functions)."
                ) from None
            raise invalid(f"The emulator cannot run runtime {runtime}: {exc}") from None

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
        size = (body.get("EphemeralStorage") or {}).get("Size")
        if size is not None and not EPHEMERAL_RANGE[0] <= int(size) <= EPHEMERAL_RANGE[1]:
            raise invalid(
                f"'EphemeralStorage.Size' value failed to satisfy constraint: Member must have value between "
                f"{EPHEMERAL_RANGE[0]} and {EPHEMERAL_RANGE[1]}, inclusive"
            )
        if "Environment" in body:
            check_variables(dict((body["Environment"] or {}).get("Variables") or {}))
        if body.get("Runtime"):
            self._check_runtime(body["Runtime"])

    def _accept(self, creds: Credentials) -> None:
        with self._lock:
            self.credentials[creds.access_key_id] = (creds.secret_access_key, creds.session_token)

    def create_function(self, body: dict) -> dict:
        name = body.get("FunctionName") or ""
        function_name_from(name)
        if body.get("PackageType") == "Image" or "ImageUri" in (body.get("Code") or {}):
            if self.isolation.mode != "namespace":
                raise invalid(f"The emulator runs container images in a mount namespace only ({self.isolation.reason})")
            snapstart.check_snap_start(body, "", "Image", 512)
            fn = images.create_image_function(
                self,
                body,
                ephemeral_mb=int((body.get("EphemeralStorage") or {}).get("Size", 512)),
                credentials=_role_credentials(),
            )
            self._accept(fn.credentials)
            return fn.configuration()
        for key in ("Role", "Handler", "Runtime"):
            if not body.get(key):
                raise invalid(f"{key} is required for a zip package")
        self._check_config(body)
        arch.check_architectures(body)
        snap_start = snapstart.check_snap_start(
            body, body["Runtime"], "Zip", int((body.get("EphemeralStorage") or {}).get("Size", 512))
        )
        managed = self.capacity.check_function(body)
        code = body.get("Code") or {}
        with self._lock:
            if name in self.functions:
                raise ApiError(409, "ResourceConflictException", f"Function already exist: {name}")
            layers = self._layers_for(body.get("Layers") or [])
        data, inline = code_zip(code, self.region, self.s3_endpoint_url)
        check_combined_size(open_zip(data, inline=inline)[1], layers)
        task_dir = self.work_dir / "functions" / name / "code-1"
        sha, size, unzipped = unpack_zip(data, task_dir, inline=inline)
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
            ephemeral_mb=int((body.get("EphemeralStorage") or {}).get("Size", 512)),
            unzipped_size=unzipped,
            credentials=_role_credentials(),
            snap_start=snap_start or "None",
            capacity_provider_config=managed,
        )
        with self._lock:
            if name in self.functions:
                raise ApiError(409, "ResourceConflictException", f"Function already exist: {name}")
            self.functions[name] = fn
        self._accept(fn.credentials)
        return fn.configuration()

    def update_configuration(self, ref: str, body: dict) -> dict:
        fn = self._function(ref)
        self._check_config(body)
        snap_start = snapstart.check_snap_start(
            body,
            body.get("Runtime", fn.runtime),
            "Image" if fn.image is not None else "Zip",
            int((body.get("EphemeralStorage") or {}).get("Size", fn.ephemeral_mb)),
            current=fn.snap_start,
        )
        with fn.lock:
            if body.get("RevisionId") and body["RevisionId"] != fn.revision_id:
                raise ApiError(
                    412,
                    "PreconditionFailedException",
                    "The Revision Id provided does not match the latest Revision Id.",
                )
            if fn.image is not None:
                images.check_image_configuration(fn, body)
            managed = self.capacity.check_function(body, fn)
            if "CapacityProviderConfig" in body:
                fn.capacity_provider_config = managed
            if "Layers" in body:
                layers = self._layers_for(body["Layers"] or [])
                check_combined_size(fn.unzipped_size, layers)
                fn.layers = layers
            for key, attr in (("MemorySize", "memory"), ("Timeout", "timeout")):
                if key in body:
                    setattr(fn, attr, int(body[key]))
            if "EphemeralStorage" in body:
                fn.ephemeral_mb = int((body["EphemeralStorage"] or {}).get("Size", 512))
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
            if snap_start is not None:
                fn.snap_start = snap_start
            fn.touch()
        self._retire(fn.name)
        return fn.configuration()

    def update_code(self, ref: str, body: dict) -> dict:
        fn = self._function(ref)
        if fn.image is not None or body.get("ImageUri"):
            images.update_image_code(self, fn, body)
            return fn.configuration()
        data, inline = code_zip(body, self.region, self.s3_endpoint_url)
        arch.check_architectures(body)
        with fn.lock:
            check_combined_size(open_zip(data, inline=inline)[1], fn.layers)
            task_dir = fn.task_dir.parent / f"code-{fn.revision + 1}"
            sha, size, unzipped = unpack_zip(data, task_dir, inline=inline)
            fn.task_dir, fn.code_sha256, fn.code_size, fn.unzipped_size = task_dir, sha, size, unzipped
            if body.get("Architectures"):
                fn.architectures = body["Architectures"]
            fn.touch()
        self._retire(fn.name)
        return fn.configuration()

    def delete_function(self, ref: str) -> None:
        fn = self._function(ref)
        with self._lock:
            self.functions.pop(fn.name, None)
            if fn.credentials is not None:
                self.credentials.pop(fn.credentials.access_key_id, None)
        self._retire(fn.name, all_envs=True)
        for number, version in fn.versions.items():
            self._retire(f"{fn.name}:{number}", all_envs=True)
            snapstart.discard(version)
        self.capacity.function_deleted(fn.name)
        shutil.rmtree(self.work_dir / "functions" / fn.name, ignore_errors=True)

    def add_permission(self, ref: str, body: dict) -> dict:
        fn = self._function(ref)
        sid = body.get("StatementId") or ""
        for key in ("StatementId", "Action", "Principal"):
            if not body.get(key):
                raise invalid(f"{key} is required")
        with fn.lock:
            if any(s.get("Sid") == sid for s in fn.policy):
                raise ApiError(
                    409,
                    "ResourceConflictException",
                    f"The statement id ({sid}) provided already exists. Please provide a new statement id, or remove "
                    "the existing statement.",
                )
            principal = body["Principal"]
            statement: dict[str, Any] = {
                "Sid": sid,
                "Effect": "Allow",
                "Principal": "*" if principal == "*" else {"AWS" if principal.isdigit() else "Service": principal},
                "Action": body["Action"],
                "Resource": fn.arn,
            }
            condition: dict[str, Any] = {}
            if body.get("FunctionUrlAuthType"):
                condition.setdefault("StringEquals", {})["lambda:FunctionUrlAuthType"] = body["FunctionUrlAuthType"]
            if body.get("InvokedViaFunctionUrl"):
                condition.setdefault("Bool", {})["lambda:InvokedViaFunctionUrl"] = "true"
            if body.get("SourceArn"):
                condition.setdefault("ArnLike", {})["AWS:SourceArn"] = body["SourceArn"]
            if condition:
                statement["Condition"] = condition
            fn.policy.append(statement)
        if principal == s3events.S3_PRINCIPAL and self.s3_events is not None:
            self.s3_events.ensure_started()  # S3 may now deliver events to the function
        return {"Statement": json.dumps(statement)}

    def get_policy(self, ref: str) -> dict:
        fn = self._function(ref)
        if not fn.policy:
            raise not_found("The resource you requested does not exist.")
        policy = {"Version": "2012-10-17", "Id": "default", "Statement": list(fn.policy)}
        return {"Policy": json.dumps(policy), "RevisionId": fn.revision_id}

    def remove_permission(self, ref: str, sid: str) -> None:
        fn = self._function(ref)
        with fn.lock:
            kept = [s for s in fn.policy if s.get("Sid") != sid]
            if len(kept) == len(fn.policy):
                raise not_found("No policy is associated with the given resource.")
            fn.policy = kept

    def publish_layer(self, ref: str, body: dict) -> dict:
        name = layer_name_from(ref)
        content = body.get("Content") or {}
        data, inline = code_zip(content, self.region, self.s3_endpoint_url)
        open_zip(data, inline=inline)
        with self._lock:
            version = self._layer_seq[name] = self._layer_seq.get(name, 0) + 1
        directory = self.work_dir / "layers" / name / str(version)
        sha, size, unzipped = unpack_zip(data, directory, inline=inline)
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
            unzipped_size=unzipped,
        )
        with self._lock:
            self.layers.setdefault(name, {})[version] = lv
        return lv.to_api(self.region, self.url)

    def _layer(self, ref: str, version: str) -> LayerVersion:
        name = layer_name_from(ref)
        lv = self.layers.get(name, {}).get(int(version))
        if lv is None:
            raise not_found(f"Layer version arn:aws:lambda:{self.region}:{ACCOUNT_ID}:layer:{name}:{version}")
        return lv

    def _tag_target(self, arn: str) -> FunctionRecord:
        if ":function:" not in arn:
            raise invalid(f"The emulator tags functions only, not {arn}")
        return self._function(arn)


# -- HTTP ------------------------------------------------------------------------------------------------------
_ROUTES: list[tuple[str, re.Pattern, str]] = [
    (m, re.compile("^" + p + "$"), h)
    for m, p, h in [
        *capacity.ROUTES,
        ("POST", r"/2015-03-31/functions/?", "create_function"),
        ("GET", r"/2015-03-31/functions/?", "list_functions"),
        ("GET", r"/2015-03-31/functions/(?P<fn>[^/]+)", "get_function"),
        ("DELETE", r"/2015-03-31/functions/(?P<fn>[^/]+)", "delete_function"),
        ("GET", r"/2015-03-31/functions/(?P<fn>[^/]+)/configuration", "get_configuration"),
        ("PUT", r"/2015-03-31/functions/(?P<fn>[^/]+)/configuration", "update_configuration"),
        ("PUT", r"/2015-03-31/functions/(?P<fn>[^/]+)/code", "update_code"),
        ("POST", r"/2015-03-31/functions/(?P<fn>[^/]+)/versions", "publish_version"),
        ("GET", r"/2015-03-31/functions/(?P<fn>[^/]+)/versions", "list_versions"),
        ("POST", r"/2015-03-31/functions/(?P<fn>[^/]+)/invocations", "invoke"),
        ("POST", r"/2015-03-31/functions/(?P<fn>[^/]+)/policy", "add_permission"),
        ("GET", r"/2015-03-31/functions/(?P<fn>[^/]+)/policy", "get_policy"),
        ("DELETE", r"/2015-03-31/functions/(?P<fn>[^/]+)/policy/(?P<sid>[^/]+)", "remove_permission"),
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
        *(
            (m, r"/lambda-url/(?P<fn>[^/]+)(?P<rest>/.*)?", "url_invoke")
            for m in ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
        ),
        *(
            (m, re.escape(apigw.PREFIX) + r"(?P<api>[^/]+)(?P<rest>/.*)?", "apigw_invoke")
            for m in ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
        ),
    ]
]


class _ControlServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024  # a burst of a thousand simultaneous invocations connects at once

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
                    if handler.startswith("capacity_"):  # capacity providers and versions (capacity.py)
                        status, out = self.emu.capacity.api(handler, self._body(raw), query, args)
                        self._json(status, out)
                        return
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

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _dispatch

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
        rec = self.emu._record(self._qualified(query, fn))
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
        key = self._qualified(query, fn)
        name, _, number = key.partition(":")
        if number and self.emu.capacity.has_version(name, number):  # a managed version (capacity.py)
            self.emu.capacity.delete_version(fn, number)
        elif number:  # one published version: its environments and its snapshot go, the function stays
            version = self.emu._record(key)
            with self.emu._lock:
                self.emu.functions[name].versions.pop(number, None)
            self.emu._retire(key, all_envs=True)
            snapstart.discard(version)
        else:
            self.emu.delete_function(fn)
        self._send(204)

    def _qualified(self, query, fn) -> str:
        """``name`` or ``name:N`` from a function reference and its ``Qualifier`` parameter."""
        name = self.emu._function(fn).name
        qualifier = (query.get("Qualifier") or [""])[0] or (fn.split(":")[-1] if fn.count(":") in (1, 7) else "")
        return f"{name}:{qualifier}" if qualifier and qualifier != "$LATEST" else name

    def h_get_configuration(self, raw, query, fn):
        key = self._qualified(query, fn)
        name, _, number = key.partition(":")
        if number and self.emu.capacity.has_version(name, number):  # a managed version (capacity.py keeps them)
            self._json(200, dict(self.emu.capacity.version(fn, number).config))
            return
        self._json(200, self.emu._record(key).configuration())

    def h_publish_version(self, raw, query, fn):
        rec = self.emu._function(fn)
        if rec.capacity_provider_config:  # Managed Instances: the version starts its environments (capacity.py)
            self._json(201, self.emu.capacity.publish(fn, self._body(raw)))
            return
        self._json(201, snapstart.publish_version(self.emu, rec, self._body(raw)))

    def h_list_versions(self, raw, query, fn):
        rec = self.emu._function(fn)
        if self.emu.capacity.versions.get(rec.name):
            self._json(200, self.emu.capacity.list_versions(fn))
            return
        versions = [rec] + sorted(rec.versions.values(), key=lambda v: int(v.version))
        self._json(200, {"Versions": [v.configuration() for v in versions]})

    def h_update_configuration(self, raw, query, fn):
        self._json(200, self.emu.update_configuration(fn, self._body(raw)))

    def h_update_code(self, raw, query, fn):
        self._json(200, self.emu.update_code(fn, self._body(raw)))

    def h_invoke(self, raw, query, fn):
        name = self._qualified(query, fn)
        explicit = (query.get("Qualifier") or [""])[0] or (fn.split(":")[-1] if fn.count(":") in (1, 7) else "")
        if explicit == "$LATEST":  # a function on a capacity provider has no $LATEST to invoke (capacity.py)
            self.emu.capacity.refuse_latest(name)
        kind = self.headers.get("X-Amz-Invocation-Type", "RequestResponse")
        tail = self.headers.get("X-Amz-Log-Type", "None") == "Tail"
        if kind == "DryRun":
            self._send(204)
            return
        if kind == "Event":
            threading.Thread(target=self._invoke_quietly, args=(name, raw), daemon=True).start()
            self._send(202)
            return
        status, headers, body = self.emu.invoke(name, raw, tail, self.headers.get("X-Amz-Client-Context"))
        self._send(status, body, headers)

    def _invoke_quietly(self, name: str, raw: bytes) -> None:
        try:
            self.emu.invoke(name, raw, False)
        except ApiError as exc:
            log.warning("async invocation of %s: %s", name, exc.message)

    def h_add_permission(self, raw, query, fn):
        self._json(201, self.emu.add_permission(fn, self._body(raw)))

    def h_get_policy(self, raw, query, fn):
        self._json(200, self.emu.get_policy(fn))

    def h_remove_permission(self, raw, query, fn, sid):
        self.emu.remove_permission(fn, sid)
        self._send(204)

    # concurrency
    def h_put_concurrency(self, raw, query, fn):
        rec = self.emu._function(fn)
        value = self._body(raw).get("ReservedConcurrentExecutions")
        if value is None or int(value) < 0:
            raise invalid("ReservedConcurrentExecutions must be a number >= 0")
        with self.emu._lock:  # reservations come out of the account's pool, every function's together
            others = sum(f.reserved_concurrency or 0 for f in self.emu.functions.values() if f is not rec)
        if int(value) + others > self.emu.account_concurrency:
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
        """A function URL request: authorised as Lambda does (SigV4 for AWS_IAM, the public-access policy for
        NONE), the HTTP request as a payload-format-2.0 event, the function's result as the HTTP answer."""
        rec = self.emu._function(fn)
        if rec.url_config is None:
            self._send(404, b'{"Message":null}', {"x-amzn-ErrorType": "ResourceNotFoundException"})
            return
        parts = urlsplit(self.path)
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            with self.emu._lock:
                accepted = dict(self.emu.credentials)
            authorizer = urls.authorize(rec, self.command, parts.path, parts.query, headers, raw, accepted)
        except sigv4.Denied as denied:
            key = "Message" if denied.error_type == "AccessDeniedException" else "message"
            self._send(403, json.dumps({key: denied.message}).encode(), {"x-amzn-ErrorType": denied.error_type})
            return
        event = urls.build_event(
            rec,
            self.command,
            rest or "/",
            parts.query,
            list(self.headers.items()),
            raw,
            self.client_address[0],
            authorizer,
        )
        try:
            _, headers_out, body = self.emu.invoke(rec.name, json.dumps(event).encode(), False)
        except ApiError as exc:
            self._send(exc.status, json.dumps({"Message": exc.message}).encode(), {"x-amzn-ErrorType": exc.code})
            return
        if "X-Amz-Function-Error" in headers_out:
            self._send(
                502, b"Internal Server Error", {"X-Amzn-RequestId": headers_out["X-Amzn-RequestId"]}, "text/plain"
            )
            return
        status, out_headers, data = urls.http_answer(body)
        content_type = next((v for k, v in out_headers.items() if k.lower() == "content-type"), "application/json")
        out_headers = {k: v for k, v in out_headers.items() if k.lower() not in ("content-type", "content-length")}
        self._send(status, data, out_headers, content_type)

    def h_apigw_invoke(self, raw, query, api, rest=None):
        """A request to an API Gateway HTTP API (:mod:`apigw`)."""
        parts = urlsplit(self.path)
        status, headers, body = self.emu.apigw.handle(
            self.command, api, rest or "/", parts.query, list(self.headers.items()), raw, self.client_address[0]
        )
        content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), "application/json")
        headers = {k: v for k, v in headers.items() if k.lower() not in ("content-type", "content-length")}
        self._send(status, body, headers, content_type)

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
