"""One execution environment: a process running the handler under awslambdaric, and the Runtime API it talks to.

Lifecycle, as on Lambda: the process starts (``init``), imports the handler module (the static initialisation:
model load), then asks the Runtime API for the next invocation; that first ``GET /invocation/next`` ends the init
phase (its time is the REPORT line's ``Init Duration``). Then it is ``busy`` while it runs an invocation and
``idle`` between invocations, until the emulator retires it (idle too long, configuration changed, shutdown) or
it dies (timeout, out of memory, crash): ``dead``.

Each environment has its own Runtime API server on a loopback port, because awslambdaric finds the API only by
``AWS_LAMBDA_RUNTIME_API=host:port`` and sends no identity with its requests. The process is its own session
(process group) so the whole tree is killed at once, and it gets ``PR_SET_PDEATHSIG`` so it dies with the emulator
even when the emulator itself is killed hard.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psutil

from perfdesk.lambda_pkg.emulator.cgroups import CpuLimiter

log = logging.getLogger(__name__)

MiB = 1024 * 1024
_RUNTIME_PREFIX = "/2018-06-01/runtime/"
#: Lambda gives the init phase 10 s of its own; beyond that the function timeout applies as well.
INIT_GRACE_S = 10.0


@dataclass(frozen=True)
class FunctionSnapshot:
    """The configuration an environment was started with (environments never see later changes)."""

    name: str
    arn: str
    handler: str
    runtime: str
    memory_mb: int
    timeout_s: int
    variables: dict[str, str]
    revision: int
    task_dir: Path
    layer_dirs: tuple[Path, ...]
    region: str
    extra_pythonpath: tuple[str, ...] = ()


@dataclass
class Invocation:
    """One invoke's life inside an environment; filled by the Runtime API and the watcher."""

    request_id: str
    payload: bytes
    timeout_s: int
    done: threading.Event = field(default_factory=threading.Event)
    response: bytes | None = None
    error: dict | None = None  # {"errorType", "errorMessage", ...} for a function error
    status: str = ""  # "" (success), "error", "timeout"
    delivered: float | None = None  # monotonic time the runtime took it
    finished: float | None = None
    log_text: str = ""

    @property
    def duration_ms(self) -> float:
        if self.delivered is None:
            return 0.0
        end = self.finished if self.finished is not None else time.monotonic()
        return (end - self.delivered) * 1000.0


def _set_pdeathsig() -> None:  # runs in the child between fork and exec
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class _RuntimeApiHandler(BaseHTTPRequestHandler):
    """The Runtime API subset awslambdaric uses: next, response, error, init/error."""

    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # headers and body leave in separate writes: without TCP_NODELAY, Nagle and delayed ACKs add ~40 ms
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    server: _RuntimeApiServer

    def log_message(self, format: str, *args) -> None:  # keep stderr quiet; debug log instead
        log.debug("runtime api %s: " + format, self.server.env.env_id, *args)

    def _reply(self, code: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def do_GET(self) -> None:
        if self.path != _RUNTIME_PREFIX + "invocation/next":
            self._reply(404, b'{"errorMessage":"unknown runtime endpoint"}')
            return
        inv = self.server.env._next_invocation()
        if inv is None:  # shutting down: the process is about to be killed
            self._reply(410, b'{"errorMessage":"environment retired"}')
            return
        snap = self.server.env.snapshot
        deadline_ms = int((time.time() + inv.timeout_s) * 1000)
        self._reply(
            200,
            inv.payload,
            {
                "Lambda-Runtime-Aws-Request-Id": inv.request_id,
                "Lambda-Runtime-Deadline-Ms": str(deadline_ms),
                "Lambda-Runtime-Invoked-Function-Arn": snap.arn,
                "Lambda-Runtime-Trace-Id": f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]};Sampled=0",
            },
        )

    def do_POST(self) -> None:
        body = self._body()
        path = self.path
        env = self.server.env
        if path == _RUNTIME_PREFIX + "init/error":
            env._init_failed(_json_or_text(body))
            self._reply(202, b'{"status":"OK"}')
            return
        if path.startswith(_RUNTIME_PREFIX + "invocation/"):
            rest = path[len(_RUNTIME_PREFIX + "invocation/") :]
            request_id, _, what = rest.partition("/")
            if what == "response":
                ok = env._complete(request_id, body, None)
            elif what == "error":
                ok = env._complete(request_id, None, _json_or_text(body))
            else:
                ok = None
            if ok is None:
                self._reply(404, b'{"errorMessage":"unknown runtime endpoint"}')
            elif not ok:
                self._reply(400, b'{"errorMessage":"invalid request id"}')
            else:
                self._reply(202, b'{"status":"OK"}')
            return
        self._reply(404, b'{"errorMessage":"unknown runtime endpoint"}')


def _json_or_text(body: bytes) -> dict:
    try:
        data = json.loads(body or b"{}")
        return data if isinstance(data, dict) else {"errorMessage": str(data)}
    except ValueError:
        return {"errorMessage": body.decode("utf-8", errors="replace"), "errorType": "Runtime.Unknown"}


class _RuntimeApiServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address) -> None:
        # a killed environment drops its connection mid-request: expected, not worth a traceback
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)

    def __init__(self, env: ExecutionEnvironment):
        self.env = env
        super().__init__(("127.0.0.1", 0), _RuntimeApiHandler)


class ExecutionEnvironment:
    """A handler process and its Runtime API. Not thread-safe by itself: the emulator's pool serialises use."""

    def __init__(
        self,
        snapshot: FunctionSnapshot,
        work_dir: Path,
        limiter: CpuLimiter,
        spawn: Callable[[Callable[[], subprocess.Popen]], subprocess.Popen],
        python: str = sys.executable,
        on_dead: Callable[[ExecutionEnvironment], None] | None = None,
        poll_s: float = 0.02,
    ):
        self.snapshot = snapshot
        self.env_id = f"env-{uuid.uuid4().hex[:10]}"
        self.dir = work_dir / self.env_id
        self.limiter = limiter
        self._spawn = spawn
        self.python = python
        self.on_dead = on_dead
        self.poll_s = poll_s
        self.state = "init"
        self.cold_pending = True  # the next invocation is this environment's first: it reports Init Duration
        self.init_ms: float | None = None
        self.init_error: dict | None = None
        self.peak_rss = 0
        self.cpu_limited = False
        self.last_used = time.monotonic()
        self.pid: int | None = None
        self.death_reason = ""
        self.oom = False
        self._queue: queue.Queue[Invocation] = queue.Queue()
        self._current: Invocation | None = None
        self._lock = threading.Lock()
        self._ready = threading.Event()  # set when init ended (well or not) or the process died
        self._closed = threading.Event()
        self._proc: subprocess.Popen | None = None
        self._log_offset = 0
        self._server = _RuntimeApiServer(self)
        self._started = 0.0

    # -- start -----------------------------------------------------------------------------------------------
    def process_env(self) -> dict[str, str]:
        """The environment variables of the handler process: Lambda's reserved ones plus the function's own.

        Nothing is inherited from the emulator's own environment (no credentials, no tokens leak in)."""
        snap = self.snapshot
        tmp = self.dir / "tmp"
        pythonpath = [str(snap.task_dir)]
        for layer in snap.layer_dirs:
            pythonpath += [str(layer / "python"), str(layer / "python" / "lib" / "python3.11" / "site-packages")]
        pythonpath += list(snap.extra_pythonpath)
        env = {
            "PATH": os.pathsep.join([str(Path(self.python).parent), "/usr/local/bin", "/usr/bin", "/bin"]),
            "LANG": "en_US.UTF-8",
            "TZ": ":UTC",
            "HOME": str(tmp),
            "TMPDIR": str(tmp),
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "LAMBDA_TASK_ROOT": str(snap.task_dir),
            "_HANDLER": snap.handler,
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{snap.runtime}",
            "AWS_LAMBDA_FUNCTION_NAME": snap.name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(snap.memory_mb),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{snap.name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": self.env_id,
            "AWS_REGION": snap.region,
            "AWS_DEFAULT_REGION": snap.region,
        }
        env.update({k: v for k, v in snap.variables.items() if k not in ("AWS_LAMBDA_RUNTIME_API", "_HANDLER")})
        env["PYTHONPATH"] = os.pathsep.join(
            pythonpath + ([env["PYTHONPATH"]] if "PYTHONPATH" in snap.variables else [])
        )
        env["AWS_LAMBDA_RUNTIME_API"] = f"127.0.0.1:{self._server.server_address[1]}"
        return env

    def start(self) -> None:
        """Start the Runtime API and the handler process (returns at once; init runs in the background)."""
        (self.dir / "tmp").mkdir(parents=True, exist_ok=True)
        threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name=f"{self.env_id}-runtime-api",
            daemon=True,
        ).start()
        env = self.process_env()
        log_path = self.dir / "output.log"
        cmd = [self.python, "-m", "awslambdaric", self.snapshot.handler]

        def popen() -> subprocess.Popen:
            with open(log_path, "wb") as out:
                return subprocess.Popen(
                    cmd,
                    cwd=str(self.snapshot.task_dir),
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=_set_pdeathsig,
                )

        self._started = time.monotonic()
        self._proc = self._spawn(popen)
        self.pid = self._proc.pid
        self.cpu_limited = self.limiter.attach(self.env_id, self._proc.pid, self.snapshot.memory_mb)
        threading.Thread(target=self._watch, name=f"{self.env_id}-watch", daemon=True).start()

    # -- watcher: memory and exit ----------------------------------------------------------------------------
    def rss_bytes(self) -> int:
        """Resident memory of the whole process tree (the handler may start helpers)."""
        if self._proc is None:
            return 0
        try:
            root = psutil.Process(self._proc.pid)
            procs = [root] + root.children(recursive=True)
        except psutil.Error:
            return 0
        total = 0
        for p in procs:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        return total

    def _watch(self) -> None:
        limit = self.snapshot.memory_mb * MiB
        while not self._closed.is_set():
            proc = self._proc
            if proc is None:
                return
            code = proc.poll()
            if code is not None:
                self._died(
                    f"Runtime exited with error: exit status {code}"
                    if code >= 0
                    else f"Runtime exited with error: signal: {signal.Signals(-code).name[3:].lower()}"
                )
                return
            rss = self.rss_bytes()
            self.peak_rss = max(self.peak_rss, rss)
            if rss > limit:
                self.oom = True
                self.kill("Runtime exited with error: signal: killed")
                return
            time.sleep(self.poll_s if self.state != "idle" else max(self.poll_s, 0.2))

    def _died(self, reason: str) -> None:
        with self._lock:
            if self.state == "dead":
                return
            self.state = "dead"
            self.death_reason = self.death_reason or reason
            inv = self._current
        self._ready.set()
        if inv is not None and not inv.done.is_set():
            inv.finished = time.monotonic()
            inv.status = "error"
            etype = "Runtime.OutOfMemory" if self.oom else "Runtime.ExitError"
            inv.error = {"errorType": etype, "errorMessage": f"RequestId: {inv.request_id} Error: {self.death_reason}"}
            inv.done.set()
        self._cleanup()
        if self.on_dead:
            self.on_dead(self)

    def kill(self, reason: str) -> None:
        """Kill the process tree (SIGKILL to its process group) and retire the environment."""
        with self._lock:
            self.death_reason = self.death_reason or reason
        proc = self._proc
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                log.error("environment %s (pid %s) did not die after SIGKILL", self.env_id, proc.pid)
        self._died(reason)

    def _cleanup(self) -> None:
        self._closed.set()
        threading.Thread(target=self._server.shutdown, daemon=True).start()
        self.limiter.release(self.env_id)

    # -- Runtime API callbacks -------------------------------------------------------------------------------
    def _next_invocation(self) -> Invocation | None:
        if not self._ready.is_set():
            self.init_ms = (time.monotonic() - self._started) * 1000.0
            self._ready.set()
        while not self._closed.is_set():
            try:
                inv = self._queue.get(timeout=0.25)
            except queue.Empty:
                continue
            inv.delivered = time.monotonic()
            return inv
        return None

    def _complete(self, request_id: str, response: bytes | None, error: dict | None) -> bool:
        with self._lock:
            inv = self._current
            if inv is None or inv.request_id != request_id or inv.done.is_set():
                return False
            inv.finished = time.monotonic()
            inv.response, inv.error = response, error
            inv.status = "error" if error is not None else ""
        self.peak_rss = max(self.peak_rss, self.rss_bytes())
        inv.done.set()
        return True

    def _init_failed(self, error: dict) -> None:
        self.init_ms = (time.monotonic() - self._started) * 1000.0
        self.init_error = error
        self._ready.set()

    # -- invoke ----------------------------------------------------------------------------------------------
    def invoke(self, inv: Invocation) -> Invocation:
        """Run one invocation (blocking) and return it filled: response or error, status, duration, log text."""
        timeout = inv.timeout_s
        if not self._ready.wait(INIT_GRACE_S + timeout):
            self.kill("init timed out")
            inv.status, inv.error = (
                "timeout",
                {
                    "errorType": "Sandbox.Timedout",
                    "errorMessage": f"RequestId: {inv.request_id} Error: Task timed out after {timeout:.2f} seconds",
                },
            )
            inv.delivered = inv.finished = time.monotonic()
        elif self.init_error is not None or self.state == "dead":
            inv.status = "error"
            inv.error = self.init_error or {
                "errorType": "Runtime.OutOfMemory" if self.oom else "Runtime.ExitError",
                "errorMessage": f"RequestId: {inv.request_id} Error: {self.death_reason or 'Runtime exited'}",
            }
            inv.delivered = inv.finished = time.monotonic()
            self.kill("init failed")
        else:
            with self._lock:
                self.state = "busy"
                self._current = inv
            self._queue.put(inv)
            if not inv.done.wait(timeout):
                with self._lock:
                    timed_out = not inv.done.is_set()
                    if timed_out:
                        inv.status = "timeout"
                        inv.finished = (inv.delivered or time.monotonic()) + timeout
                        inv.error = {
                            "errorType": "Sandbox.Timedout",
                            "errorMessage": f"RequestId: {inv.request_id} Error: Task timed out after "
                            f"{timeout:.2f} seconds",
                        }
                        inv.done.set()
                if timed_out:
                    self.kill(f"Task timed out after {timeout:.2f} seconds")
            with self._lock:
                self._current = None
                if self.state == "busy":
                    self.state = "idle"
                    self.last_used = time.monotonic()
        inv.log_text = self._read_new_output()
        return inv

    def _read_new_output(self) -> str:
        """What the process printed since the last invocation (its stdout and stderr go to one file)."""
        path = self.dir / "output.log"
        try:
            with open(path, "rb") as fh:
                fh.seek(self._log_offset)
                data = fh.read()
        except OSError:
            return ""
        self._log_offset += len(data)
        return data.decode("utf-8", errors="replace")

    @property
    def alive(self) -> bool:
        return self.state != "dead"

    def peak_rss_mb(self) -> int:
        return max(1, int(round(self.peak_rss / MiB)))
