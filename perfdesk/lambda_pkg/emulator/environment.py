"""One execution environment: Lambda's Python runtime in a sandbox, and the Runtime API it talks to.

Lifecycle, as on Lambda. The sandbox starts (:mod:`sandbox`: the runtime's interpreter, the code at ``/var/task``,
the layers at ``/opt``, a ``/tmp`` of the function's ephemeral storage, Lambda's sandbox user, the environment
variables Lambda sets and no others) and the runtime initialises: it imports the handler module (the static
initialisation, where a model loads), then asks the Runtime API for the next invocation. That first
``GET /invocation/next`` ends the init phase; its time from the runtime's start is the REPORT line's
``Init Duration``. The init phase has 10 s of its own. When it fails (the handler cannot be imported, the runtime
exits, it runs out of memory) or takes longer, Lambda logs ``INIT_REPORT`` and initialises again inside the
invocation, this time under the function's timeout (a "suppressed init": its time is part of the invocation's
Duration and no Init Duration is reported); if that fails too, the invocation fails with the init's error. After
init the environment is ``busy`` while it runs an invocation and ``idle`` between invocations, until the emulator
retires it (idle too long, configuration changed, shutdown) or it dies (timeout, out of memory, crash): ``dead``.

Memory is a hard limit of the environment's cgroup where the memory controller is writable (the kernel's OOM
killer ends the runtime, as in Lambda's microVM); elsewhere the process tree's RSS is polled. Each environment has
its own Runtime API server on a loopback port, because the runtime finds the API only by
``AWS_LAMBDA_RUNTIME_API=host:port`` and sends no identity with its requests. The runtime is PID 1 of a PID
namespace of its own (whatever the function starts ends with it), its supervisor and it are one process group
(killed whole), and both get ``PR_SET_PDEATHSIG``, so nothing outlives the emulator, even when it is killed hard.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from perfdesk.lambda_pkg.emulator.cgroups import CpuLimiter, MemoryLimiter
from perfdesk.lambda_pkg.emulator.images import ImageRun, image_process_env, invalid_entrypoint
from perfdesk.lambda_pkg.emulator.runtimes import PreparedRuntime
from perfdesk.lambda_pkg.report import format_init_report

log = logging.getLogger(__name__)

MiB = 1024 * 1024
#: Lambda gives the init phase 10 s of its own; an init retried inside an invocation has the function's timeout.
INIT_TIMEOUT_S = 10.0
#: The largest response a runtime may post (RAPID's limit: 6 MiB + 100 bytes).
MAX_RUNTIME_RESPONSE = 6 * 1024 * 1024 + 100
#: Lambda's sandbox user.
SANDBOX_UID, SANDBOX_GID, SANDBOX_USER = 993, 990, "sbx_user1051"
#: Lambda's limit on open files in an environment.
MAX_OPEN_FILES = 1024
_RUNTIME_PREFIX = "/2018-06-01/runtime/"
_LAUNCHER = Path(__file__).with_name("sandbox.py")
_PASSWD = (
    "root:x:0:0:root:/root:/bin/bash\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"
    f"{SANDBOX_USER}:x:{SANDBOX_UID}:{SANDBOX_GID}::/home/{SANDBOX_USER}:/sbin/nologin\n"
)
_GROUP = f"root:x:0:\nnogroup:x:65534:\n{SANDBOX_USER}:x:{SANDBOX_GID}:\n"


@dataclass(frozen=True)
class Isolation:
    """How this machine lets the emulator start environments (probed once, reported in the manifest)."""

    mode: str  # "namespace": Lambda's paths, sandbox user, read-only code; "process": a plain process (no root)
    tmp: str  # "ext4" (an image on a loop device: disk-backed, hard size limit) or "tmpfs" (counted as memory)
    reason: str = ""
    mkfs: str | None = None

    def describe(self) -> dict[str, str]:
        if self.mode == "namespace":
            iso = (
                "mount namespace per environment: /var/task and /opt read-only, /var/lang and /var/runtime the "
                f"runtime's own, uid {SANDBOX_UID} ({SANDBOX_USER}), no path of the host's Python environment"
            )
        else:
            iso = (
                f"none ({self.reason}): the runtime's own interpreter with a clean environment, but host paths, "
                "the emulator's user, and code that is not read-only"
            )
        tmp = {
            "ext4": "ext4 file system of EphemeralStorage.Size on a loop device (disk-backed, hard limit)",
            "tmpfs": "tmpfs of EphemeralStorage.Size (a hard limit, but its pages count as the function's memory)",
            "host": "a folder of the host (no size limit)",
        }[self.tmp]
        return {"isolation": iso, "tmp": tmp}


_PROBED: dict[str, Isolation] = {}


def probe_isolation(work_dir: Path) -> Isolation:
    """Find out (once per process) whether environments can have their own mount namespace and loop-mounted /tmp."""
    if "result" in _PROBED:
        return _PROBED["result"]
    mkfs = shutil.which("mkfs.ext4") or next(
        (p for p in ("/usr/sbin/mkfs.ext4", "/sbin/mkfs.ext4") if os.access(p, os.X_OK)), None
    )
    if os.geteuid() != 0:
        result = Isolation("process", "host", "the emulator does not run as root", mkfs)
    else:
        work = work_dir / "probe"
        work.mkdir(parents=True, exist_ok=True)
        if mkfs:
            make_tmp_image(mkfs, work / "probe.img", 1)
        proc = subprocess.run(
            [sys.executable, "-I", "-S", "-B", str(_LAUNCHER), "--probe", str(work)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        shutil.rmtree(work, ignore_errors=True)
        try:
            found = json.loads(proc.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            found = {"namespace": False, "reason": (proc.stderr or "the probe printed nothing").strip()[-300:]}
        if found.get("namespace"):
            result = Isolation("namespace", "ext4" if found.get("loop") and mkfs else "tmpfs", "", mkfs)
        else:
            reason = found.get("reason") or proc.stderr.strip()[-300:]
            result = Isolation("process", "host", str(reason), mkfs)
    if result.mode != "namespace":
        log.warning("Lambda emulator: environments are not isolated: %s", result.reason)
    _PROBED["result"] = result
    return result


def make_tmp_image(mkfs: str, path: Path, size_mb: int) -> None:
    """A sparse ext4 image of ``size_mb`` MiB (no journal, no reserved blocks), owned by the sandbox user."""
    with open(path, "wb") as fh:
        fh.truncate(size_mb * MiB)
    subprocess.run(
        [
            mkfs,
            "-q",
            "-F",
            "-m",
            "0",
            "-N",
            str(max(1024, size_mb * 16)),
            "-O",
            "^has_journal,^resize_inode",
            "-E",
            f"root_owner={SANDBOX_UID}:{SANDBOX_GID},lazy_itable_init=1",
            str(path),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )


@dataclass(frozen=True)
class Credentials:
    """Temporary credentials standing in for the function's execution role."""

    access_key_id: str
    secret_access_key: str
    session_token: str


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
    ephemeral_mb: int = 512
    credentials: Credentials | None = None
    image: ImageRun | None = None  # a container-image function: its root, command and Env (images.py)
    version: str = "$LATEST"


@dataclass
class Invocation:
    """One invoke's life inside an environment; filled by the Runtime API, the watcher and :meth:`invoke`."""

    request_id: str
    payload: bytes
    timeout_s: int
    client_context: str | None = None
    done: threading.Event = field(default_factory=threading.Event)
    response: bytes | None = None
    error: dict | None = None  # {"errorType", "errorMessage", ...} for a function error
    status: str = ""  # "" (success), "error", "timeout"
    report_error: str = ""  # the REPORT line's Error Type (Lambda's filtered kind)
    started: float | None = None  # monotonic: where Duration begins (the handler got it, or a retried init began)
    finished: float | None = None
    init_ms: float | None = None  # Init Duration of a successful init phase (cold start), else None
    prelude: str = ""  # log lines before this invocation's START that are not part of it (the init phase)
    preamble: str = ""  # log lines of a retried init, inside the invocation (in its tail log, before START)
    log_text: str = ""  # what the handler printed
    deadline: float = 0.0  # monotonic
    undelivered: bool = False  # the environment died before its runtime took the invocation: send it elsewhere
    restore_ms: float | None = None  # Restore Duration of a cold start restored from a snapshot (SnapStart)
    billed_restore_ms: float | None = None  # its Billed Restore Duration (the after-restore hooks)

    @property
    def duration_ms(self) -> float:
        if self.started is None:
            return 0.0
        end = self.finished if self.finished is not None else time.monotonic()
        return max(0.0, (end - self.started) * 1000.0)


def _lambda_error_type(error_type: str) -> str:
    """The Error Type Lambda logs: runtime and function error kinds as they are, anything else Runtime.Unknown."""
    head, _, tail = error_type.partition(".")
    if head in ("Runtime", "Function", "Sandbox") and tail[:1].isupper():
        return error_type
    return "Function.Unknown" if head == "Function" else "Runtime.Unknown"


# -- the Runtime API ---------------------------------------------------------------------------------------------
class _RuntimeApi:
    """The Runtime API subset the Python runtime uses (next, response, error, init/error), served on a loopback
    port with a minimal HTTP/1.1 reader: one thread per connection, keep-alive, ``Expect: 100-continue``."""

    def __init__(self, env: ExecutionEnvironment):
        self.env = env
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self._closed = False
        self._conns: set[socket.socket] = set()
        threading.Thread(target=self._accept, name=f"{env.env_id}-runtime-api", daemon=True).start()

    def close(self) -> None:
        self._closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        for conn in list(self._conns):
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._conns.add(conn)
            threading.Thread(target=self._serve, args=(conn,), name=f"{self.env.env_id}-rapi-conn", daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        rfile = conn.makefile("rb", buffering=65536)
        try:
            while not self._closed:
                line = rfile.readline(65537)
                if not line:
                    return
                parts = line.split()
                if len(parts) < 2:
                    return
                method, path = parts[0].decode(), parts[1].decode()
                headers: dict[str, str] = {}
                while True:
                    h = rfile.readline(65537)
                    if h in (b"\r\n", b"\n", b""):
                        break
                    k, _, v = h.decode("latin-1").partition(":")
                    headers[k.strip().lower()] = v.strip()
                if headers.get("expect", "").lower() == "100-continue":
                    conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                if headers.get("transfer-encoding", "").lower() == "chunked":
                    body = _read_chunked(rfile)
                else:
                    length = int(headers.get("content-length") or 0)
                    body = rfile.read(length) if length else b""
                status, extra, payload = self._dispatch(method, path, headers, body)
                head = [f"HTTP/1.1 {status} {_REASONS.get(status, 'OK')}"]
                head += [f"{k}: {v}" for k, v in extra.items()]
                if "Content-Type" not in extra:
                    head.append("Content-Type: application/json")
                head.append(f"Content-Length: {len(payload)}")
                conn.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + payload)
                if headers.get("connection", "").lower() == "close":
                    return
        except (OSError, ValueError):
            return
        finally:
            self._conns.discard(conn)
            try:
                conn.close()
            except OSError:
                pass

    def _dispatch(self, method: str, path: str, headers: dict, body: bytes) -> tuple[int, dict, bytes]:
        env = self.env
        if not path.startswith(_RUNTIME_PREFIX):
            return 404, {}, b'{"errorMessage":"unknown runtime endpoint","errorType":"NotFound"}'
        rest = path[len(_RUNTIME_PREFIX) :]
        if method == "GET" and rest == "invocation/next":
            inv = env._next_invocation()
            if inv is None:  # retired: the process is about to be killed
                return 410, {}, b'{"errorMessage":"environment retired","errorType":"Gone"}'
            snap = env.snapshot
            extra = {
                "Lambda-Runtime-Aws-Request-Id": inv.request_id,
                "Lambda-Runtime-Deadline-Ms": str(int((time.time() + (inv.deadline - time.monotonic())) * 1000)),
                "Lambda-Runtime-Invoked-Function-Arn": snap.arn,
                "Lambda-Runtime-Trace-Id": f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]};Sampled=0",
            }
            if inv.client_context:
                extra["Lambda-Runtime-Client-Context"] = inv.client_context
            return 200, extra, inv.payload
        if rest.startswith("restore/"):  # SnapStart (snapstart.py); an environment of no snapshot has none
            return env._restore_api(method, rest[len("restore/") :], headers, body)
        if method == "POST" and rest == "init/error":
            error = _json_or_text(body)
            env._init_failed(error, headers.get("lambda-runtime-function-error-type") or error.get("errorType", ""))
            return 202, {}, b'{"status":"OK"}'
        if method == "POST" and rest.startswith("invocation/"):
            request_id, _, what = rest[len("invocation/") :].partition("/")
            if what == "response":
                if len(body) > MAX_RUNTIME_RESPONSE:
                    env._complete(request_id, None, _oversized(len(body)))
                    return (
                        413,
                        {},
                        b'{"errorMessage":"Exceeded maximum allowed payload size (%d bytes).",'
                        b'"errorType":"RequestEntityTooLarge"}' % MAX_RUNTIME_RESPONSE,
                    )
                ok = env._complete(request_id, body, None)
            elif what == "error":
                ok = env._complete(request_id, None, _json_or_text(body))
            else:
                return 404, {}, b'{"errorMessage":"unknown runtime endpoint","errorType":"NotFound"}'
            if not ok:
                return 400, {}, b'{"errorMessage":"Invalid request ID","errorType":"InvalidRequestID"}'
            return 202, {}, b'{"status":"OK"}'
        return 404, {}, b'{"errorMessage":"unknown runtime endpoint","errorType":"NotFound"}'


_REASONS = {200: "OK", 202: "Accepted", 400: "Bad Request", 404: "Not Found", 410: "Gone", 413: "Payload Too Large"}


def _read_chunked(rfile) -> bytes:
    out = bytearray()
    while True:
        size = int(rfile.readline(65537).split(b";")[0].strip() or b"0", 16)
        if size == 0:
            while rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                pass
            return bytes(out)
        out += rfile.read(size)
        rfile.readline(65537)


def _oversized(size: int) -> dict:
    return {
        "errorType": "Function.ResponseSizeTooLarge",
        "errorMessage": f"Response payload size ({size} bytes) exceeded maximum allowed payload size "
        f"({MAX_RUNTIME_RESPONSE} bytes).",
    }


def _json_or_text(body: bytes) -> dict:
    try:
        data = json.loads(body or b"{}")
        return data if isinstance(data, dict) else {"errorMessage": str(data)}
    except ValueError:
        return {"errorMessage": body.decode("utf-8", errors="replace"), "errorType": "Runtime.Unknown"}


#: How Lambda (its Go runtime manager) names the signal that ended a runtime.
_SIGNAL_NAMES = {
    signal.SIGKILL: "killed",
    signal.SIGTERM: "terminated",
    signal.SIGSEGV: "segmentation fault",
    signal.SIGABRT: "aborted",
    signal.SIGBUS: "bus error",
    signal.SIGFPE: "floating point exception",
    signal.SIGILL: "illegal instruction",
    signal.SIGINT: "interrupt",
    signal.SIGHUP: "hangup",
    signal.SIGQUIT: "quit",
    signal.SIGPIPE: "broken pipe",
}


def _exit_reason(code: int) -> str:
    if code >= 0:
        return f"Runtime exited with error: exit status {code}"
    try:
        name = _SIGNAL_NAMES.get(signal.Signals(-code)) or f"signal {-code}"
    except ValueError:
        name = f"signal {-code}"
    return f"Runtime exited with error: signal: {name}"


# -- the environment ---------------------------------------------------------------------------------------------
class ExecutionEnvironment:
    """A sandboxed runtime and its Runtime API. One invocation at a time: the emulator's pool serialises use."""

    def __init__(
        self,
        snapshot: FunctionSnapshot,
        work_dir: Path,
        runtime: PreparedRuntime | None,  # None: a container image, which brings its own
        isolation: Isolation,
        cpu: CpuLimiter,
        memory: MemoryLimiter,
        spawn: Callable[[Callable[[], subprocess.Popen]], subprocess.Popen],
        on_dead: Callable[[ExecutionEnvironment], None] | None = None,
        init_timeout_s: float = INIT_TIMEOUT_S,
        poll_s: float = 0.02,
    ):
        self.snapshot = snapshot
        self.env_id = f"env-{uuid.uuid4().hex[:10]}"
        #: taken from a Managed Instances pool for an invocation that has not reached it yet (capacity.py)
        self.claimed = False
        self.dir = work_dir / self.env_id
        self.runtime = runtime
        self.isolation = isolation
        self.cpu = cpu
        self.memory = memory
        self._spawn = spawn
        self.on_dead = on_dead
        self.init_timeout_s = init_timeout_s
        self.poll_s = poll_s
        self.state = "init"  # init -> idle <-> busy -> dead
        self.cold_pending = True  # the next invocation is this environment's first
        self.log_stream = time.strftime("%Y/%m/%d/", time.gmtime()) + f"[{snapshot.version}]" + uuid.uuid4().hex
        self.init_type = "on-demand"  # AWS_LAMBDA_INITIALIZATION_TYPE (capacity.py: lambda-managed-instances)
        self.extra_env: dict[str, str] = {}  # variables Lambda sets for this kind of environment (capacity.py)
        self.init_ms: float | None = None
        self.pid: int | None = None
        self.cpu_limited = False
        self.memory_limited = False
        self.tmp_kind = ""
        self.death_reason = ""
        self.oom = False
        self.peak_rss = 0
        self.last_used = time.monotonic()
        self._queue: queue.Queue[Invocation | None] = queue.Queue()
        self._current: Invocation | None = None
        self._lock = threading.Lock()
        self._init_done = threading.Event()  # the runtime asked for work, reported an init error, or died
        self._launched = threading.Event()  # the launcher reported: the runtime started, or the sandbox failed
        self._init_error: dict | None = None
        self._init_error_type = ""
        self._closed = threading.Event()
        self._proc: subprocess.Popen | None = None
        self._generation = 0
        self._exec_at: float | None = None  # monotonic: the runtime's start
        self._process_dead = False
        self._started = 0.0
        self._launch_error = ""
        self._log_offset = 0
        self._api = _RuntimeApi(self)

    # -- the process environment -----------------------------------------------------------------------------
    @property
    def isolated(self) -> bool:
        return self.isolation.mode == "namespace"

    def paths(self) -> dict[str, str]:
        """Task root, runtime dir and interpreter as the runtime sees them."""
        if self.snapshot.image is not None:
            argv0 = self.snapshot.image.argv[0] if self.snapshot.image.argv else ""
            return {"task": "/var/task", "runtime": "/var/runtime", "python": argv0, "lang_lib": "/var/lang/lib"}
        assert self.runtime is not None
        if self.isolated:
            return {
                "task": "/var/task",
                "runtime": "/var/runtime",
                "python": self.runtime.executable,
                "lang_lib": "/var/lang/lib",
            }
        return {
            "task": str(self.snapshot.task_dir),
            "runtime": str(self.runtime.runtime_dir),
            "python": self.runtime.host_path(self.runtime.executable),
            "lang_lib": str(self.runtime.lang / "lib"),
        }

    def process_env(self) -> dict[str, str]:
        """The runtime's environment variables: those Lambda sets, then the function's own (reserved keys were
        refused at CreateFunction). Nothing comes from the emulator's own environment."""
        snap, p = self.snapshot, self.paths()
        env = {
            "PATH": "/var/lang/bin:/usr/local/bin:/usr/bin/:/bin:/opt/bin",
            "LD_LIBRARY_PATH": f"{p['lang_lib']}:/lib64:/usr/lib64:{p['runtime']}:{p['runtime']}/lib:"
            f"{p['task']}:{p['task']}/lib:/opt/lib",
            "LANG": "en_US.UTF-8",
            "TZ": ":UTC",
            "PYTHONPATH": p["runtime"],
            "LAMBDA_TASK_ROOT": p["task"],
            "LAMBDA_RUNTIME_DIR": p["runtime"],
            "_HANDLER": snap.handler,
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{snap.runtime}",
            "AWS_LAMBDA_FUNCTION_NAME": snap.name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(snap.memory_mb),
            "AWS_LAMBDA_FUNCTION_VERSION": snap.version,
            "AWS_LAMBDA_INITIALIZATION_TYPE": self.init_type,
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{snap.name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": self.log_stream,
            "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{self._api.port}",
            "AWS_REGION": snap.region,
            "AWS_DEFAULT_REGION": snap.region,
            "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
            "AWS_XRAY_DAEMON_ADDRESS": "169.254.79.129:2000",
            "_AWS_XRAY_DAEMON_ADDRESS": "169.254.79.129",
            "_AWS_XRAY_DAEMON_PORT": "2000",
            "SHLVL": "0",
            "PWD": p["task"],
            **self.extra_env,
        }
        if snap.credentials is not None:
            env["AWS_ACCESS_KEY_ID"] = snap.credentials.access_key_id
            env["AWS_SECRET_ACCESS_KEY"] = snap.credentials.secret_access_key
            env["AWS_SESSION_TOKEN"] = snap.credentials.session_token
        if snap.image is not None:  # the image's Env first, the function's variables last
            return image_process_env(snap.image, env, snap.variables)
        env.update(snap.variables)
        if not self.isolated and snap.layer_dirs:  # no /opt here: the layers' paths go on PYTHONPATH instead
            assert self.runtime is not None, "prepared before the first start"
            minor = self.runtime.minor
            extra = []
            for layer in snap.layer_dirs:
                extra += [str(layer / "python" / "lib" / f"python{minor}" / "site-packages"), str(layer / "python")]
            env["PYTHONPATH"] = os.pathsep.join([env["PYTHONPATH"], *extra])
        return env

    def _launch_config(self, status_fd: int) -> dict:
        snap, p = self.snapshot, self.paths()
        cfg: dict = {
            "mode": self.isolation.mode,
            "parent": os.getpid(),
            "status_fd": status_fd,
            "cgroups": [
                f
                for f in (
                    self.memory.procs_file(self.env_id) if self.memory_limited else None,
                    self.cpu.procs_file(self.env_id) if self.cpu_limited else None,
                )
                if f
            ],
            "rlimits": {"NOFILE": [MAX_OPEN_FILES, MAX_OPEN_FILES]},
            "cwd": p["task"],
            "argv": [p["python"], f"{p['runtime']}/bootstrap.py"],
            "env": self.process_env(),
        }
        if snap.image is not None:
            cfg["argv"], cfg["cwd"] = list(snap.image.argv), snap.image.working_dir
        if self.isolated:
            image = None
            if self.isolation.tmp == "ext4" and self.isolation.mkfs:
                image = str(self.dir / "tmp.img")
                try:
                    make_tmp_image(self.isolation.mkfs, Path(image), snap.ephemeral_mb)
                except (OSError, subprocess.SubprocessError) as exc:
                    log.warning("environment %s: no ext4 /tmp (%s); a tmpfs instead", self.env_id, exc)
                    image = None
            cfg.update(
                {
                    "root": str(self.dir / "root"),
                    "uid": SANDBOX_UID,
                    "gid": SANDBOX_GID,
                    "tmp": {"image": image, "size_mb": snap.ephemeral_mb},
                }
            )
            if snap.image is not None:  # the image's own root, read-only: nothing of this machine's
                cfg["image_root"] = str(snap.image.rootfs)
            else:
                assert self.runtime is not None
                cfg.update(
                    {
                        "binds": [
                            [str(self.runtime.lang), "/var/lang"],
                            [str(self.runtime.runtime_dir), "/var/runtime"],
                            [str(snap.task_dir), "/var/task"],
                        ],
                        "layers": [str(d) for d in snap.layer_dirs],
                        "etc_files": {"passwd": _PASSWD, "group": _GROUP},
                    }
                )
        return cfg

    # -- start -----------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the runtime (returns at once; the init phase runs in the background)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self._launch()

    def _launch(self) -> None:
        self._generation += 1
        generation = self._generation
        self.cpu_limited = self.cpu.create(self.env_id, self.snapshot.memory_mb)
        self.memory_limited = self.memory.create(self.env_id, self.snapshot.memory_mb)
        self._init_done.clear()
        self._launched.clear()
        self._init_error, self._init_error_type, self._launch_error = None, "", ""
        self._exec_at, self.oom, self.death_reason, self._process_dead = None, False, "", False
        read_fd, write_fd = os.pipe()
        config = self.dir / "launch.json"
        config.write_text(json.dumps(self._launch_config(write_fd)))
        os.chmod(config, 0o600)
        log_path = self.dir / "output.log"

        def popen() -> subprocess.Popen:
            with open(log_path, "ab") as out:
                return subprocess.Popen(
                    [sys.executable, "-I", "-S", "-B", str(_LAUNCHER), str(config)],
                    cwd="/",
                    env={},
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    pass_fds=(write_fd,),
                )

        self._started = time.monotonic()
        try:
            self._proc = self._spawn(popen)
        finally:
            os.close(write_fd)
        self.pid = self._proc.pid
        threading.Thread(
            target=self._watch, args=(self._proc, read_fd, generation), name=f"{self.env_id}-watch", daemon=True
        ).start()

    # -- watcher: the launcher's status, memory, exit ----------------------------------------------------------
    def _watch(self, proc: subprocess.Popen, status_fd: int, generation: int) -> None:
        with os.fdopen(status_fd, "rb") as fh:
            line = fh.readline()
        status: dict[str, Any]
        try:
            status = json.loads(line) if line else {"ok": False, "error": "the launcher exited"}
        except ValueError:
            status = {"ok": False, "error": line.decode(errors="replace")[:300]}
        if status.get("ok"):
            self._exec_at = status["exec_ns"] / 1e9
            self.pid = int(status.get("pid") or proc.pid)  # the runtime's pid (its supervisor's is proc.pid)
            self.tmp_kind = status.get("tmp", "")
            if status.get("loop_error"):
                log.warning("environment %s: /tmp is a tmpfs: %s", self.env_id, status["loop_error"])
        else:
            self._launch_error = str(status.get("error", "the launcher failed"))
            log.error("environment %s could not start: %s", self.env_id, self._launch_error)
        self._launched.set()
        if self.memory_limited:
            code = proc.wait()
        else:
            code = self._poll_until_exit(proc)
        if generation != self._generation:
            return
        self._capture_peak()
        if self.memory_limited and self.memory.oom_kills(self.env_id) > 0:
            self.oom = True
        self._exited(code)

    def _poll_until_exit(self, proc: subprocess.Popen) -> int:
        """Without a memory cgroup: poll the process tree's RSS; above the memory size, kill it (OOM)."""
        limit = self.snapshot.memory_mb * MiB
        while True:
            code = proc.poll()
            if code is not None:
                return code
            rss = self.rss_bytes()
            self.peak_rss = max(self.peak_rss, rss)
            if rss > limit:
                self.oom = True
                self._killpg(proc)
            time.sleep(self.poll_s if self.state != "idle" else max(self.poll_s, 0.2))

    def rss_bytes(self) -> int:
        """Resident memory of the whole process tree (the handler may start helpers)."""
        import psutil

        if self.pid is None:
            return 0
        try:
            root = psutil.Process(self.pid)
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

    def _capture_peak(self) -> None:
        if self.memory_limited:
            self.peak_rss = max(self.peak_rss, self.memory.peak_bytes(self.env_id))

    def peak_memory_mb(self) -> int:
        """Max Memory Used: the environment's peak (its cgroup's, page cache included, or the polled RSS peak)."""
        self._capture_peak()
        return max(1, min(self.snapshot.memory_mb, -(-self.peak_rss // MiB)))

    def _exited(self, code: int) -> None:
        """The runtime process ended (by itself, by the OOM killer, or killed by the emulator)."""
        reason = f"the sandbox could not start: {self._launch_error}" if self._launch_error else _exit_reason(code)
        with self._lock:
            self.death_reason = self.death_reason or reason
            self._process_dead = True
            inv = self._current
        self._init_done.set()
        if inv is not None and not inv.done.is_set():
            self._fail_exited(inv)
        if self.state == "idle":  # died between invocations: gone for good
            self._retire()

    def _fail_exited(self, inv: Invocation) -> None:
        if inv.started is None:  # the runtime died before it took the invocation: Lambda sends it elsewhere
            inv.undelivered = True
            inv.done.set()
            return
        now = time.monotonic()
        inv.finished = now
        inv.status = "error"
        inv.report_error = "Runtime.OutOfMemory" if self.oom else "Runtime.ExitError"
        inv.error = {
            "errorType": "Runtime.ExitError",
            "errorMessage": f"RequestId: {inv.request_id} Error: {self.death_reason or 'Runtime exited'}",
        }
        inv.done.set()

    def _killpg(self, proc: subprocess.Popen | None) -> None:
        if proc is not None and proc.poll() is None:
            if self.pid and self.pid != proc.pid:
                # the runtime first: its supervisor (the launcher) reaps it and exits. Killed together, the runtime
                # would be orphaned to the machine's init, which may never reap it (a zombie per environment).
                try:
                    os.kill(self.pid, signal.SIGKILL)
                    proc.wait(timeout=2)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    pass
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                log.error("environment %s (pid %s) did not die after SIGKILL", self.env_id, proc.pid)

    def _stop_process(self) -> None:
        """Kill the current runtime and wait for its cgroups to be free (the environment itself lives on)."""
        self._generation += 1  # its watcher's report is stale from now on
        self._killpg(self._proc)
        self._capture_peak()
        self.cpu.release(self.env_id)
        self.memory.release(self.env_id)
        try:
            (self.dir / "tmp.img").unlink()
        except OSError:
            pass

    def kill(self, reason: str) -> None:
        """Kill the process tree (SIGKILL to its process group) and retire the environment."""
        with self._lock:
            self.death_reason = self.death_reason or reason
        self._stop_process()
        self._retire()

    def _retire(self) -> None:
        with self._lock:
            if self.state == "dead":
                return
            self.state = "dead"
        self._closed.set()
        self._queue.put(None)
        self._init_done.set()
        threading.Thread(target=self._cleanup, daemon=True).start()
        if self.on_dead:
            self.on_dead(self)

    def _cleanup(self) -> None:
        self._killpg(self._proc)
        self._capture_peak()
        self._api.close()
        self.cpu.release(self.env_id)
        self.memory.release(self.env_id)

    # -- Runtime API callbacks -------------------------------------------------------------------------------
    def _restore_api(self, method: str, what: str, headers: dict, body: bytes) -> tuple[int, dict, bytes]:
        """``/runtime/restore/...``: only an environment of a SnapStart version has it (snapstart.py)."""
        return 404, {}, b'{"errorMessage":"unknown runtime endpoint","errorType":"NotFound"}'

    def _next_invocation(self) -> Invocation | None:
        if not self._init_done.is_set():
            start = self._exec_at if self._exec_at is not None else self._started
            self.init_ms = (time.monotonic() - start) * 1000.0
            self._init_done.set()
        while not self._closed.is_set():
            inv = self._queue.get()
            if inv is None:
                return None
            if inv.done.is_set():  # given up on (timed out) before the runtime took it
                continue
            if inv.started is None:
                inv.started = time.monotonic()
            return inv
        return None

    def _complete(self, request_id: str, response: bytes | None, error: dict | None) -> bool:
        with self._lock:
            inv = self._current
            if inv is None or inv.request_id != request_id or inv.done.is_set():
                return False
            inv.finished = time.monotonic()
            inv.response, inv.error = response, error
            if error is not None:
                inv.status = "error"
                if error.get("errorType") == "Function.ResponseSizeTooLarge":
                    inv.report_error = "Function.ResponseSizeTooLarge"
        inv.done.set()
        return True

    def _init_failed(self, error: dict, error_type: str) -> None:
        start = self._exec_at if self._exec_at is not None else self._started
        self.init_ms = (time.monotonic() - start) * 1000.0
        self._init_error = error
        self._init_error_type = _lambda_error_type(error_type or "Runtime.Unknown")
        self._init_done.set()

    # -- invoke ----------------------------------------------------------------------------------------------
    def _await_init(self, deadline: float) -> tuple[str, float]:
        """Wait for the init phase to end by ``deadline`` (monotonic): ("ok"|"error"|"timeout", duration ms)."""
        self._init_done.wait(max(0.0, deadline - time.monotonic()))
        start = self._exec_at if self._exec_at is not None else self._started
        if not self._init_done.is_set():
            return "timeout", (time.monotonic() - start) * 1000.0
        if self._init_error is not None or self.death_reason or self._launch_error:
            return "error", (self.init_ms if self.init_ms is not None else (time.monotonic() - start) * 1000.0)
        return "ok", self.init_ms or 0.0

    def _init_failure(self, request_id: str = "") -> tuple[str, dict]:
        """(Error Type, error payload) of a failed init: the runtime's own init error, else how it ended."""
        if self._init_error is not None:
            return self._init_error_type, self._init_error
        if self._launch_error:
            return "Sandbox.Failure", {"errorType": "Sandbox.Failure", "errorMessage": self._launch_error}
        bad = invalid_entrypoint(self.snapshot.image) if self.snapshot.image is not None else None
        if bad:  # the image's command could not be executed
            message = f"RequestId: {request_id} Error: {bad}"
            return "Runtime.InvalidEntrypoint", {"errorType": "Runtime.InvalidEntrypoint", "errorMessage": message}
        etype = "Runtime.OutOfMemory" if self.oom else "Runtime.ExitError"
        message = f"RequestId: {request_id} Error: {self.death_reason or 'Runtime exited without providing a reason'}"
        return etype, {"errorType": "Runtime.ExitError", "errorMessage": message}

    def prewarm(self, timeout_s: float) -> tuple[str, float, str]:
        """Start the runtime and run its init phase now, before any invocation (a managed-instances environment):
        ("ok"|"error"|"timeout", Init Duration ms, what the init printed). After "ok" the next invocation is warm."""
        self.start()
        self._launched.wait(60.0)
        start = self._exec_at if self._exec_at is not None else self._started
        outcome, init_ms = self._await_init(start + timeout_s)
        self.cold_pending = False
        if outcome == "ok":
            with self._lock:
                if self.state == "init":
                    self.state = "idle"
        return outcome, init_ms, self._read_new_output()

    def invoke(self, inv: Invocation) -> Invocation:
        """Run one invocation (blocking) and return it filled: response or error, status, timings, log text."""
        timeout = inv.timeout_s
        begun = time.monotonic()
        if self.cold_pending:
            self.cold_pending = False
            self._launched.wait(60.0)  # the sandbox's setup is not part of the init phase
            start = self._exec_at if self._exec_at is not None else self._started
            outcome, init_ms = self._await_init(start + self.init_timeout_s)
            inv.prelude = self._read_new_output()
            if outcome == "ok":
                inv.init_ms = init_ms
                inv.deadline = time.monotonic() + timeout
            else:  # INIT_REPORT, then the init again, inside this invocation, under the function's timeout
                etype = self._init_failure()[0] if outcome == "error" else ""
                inv.prelude += format_init_report("init", init_ms, outcome, etype)
                self._stop_process()
                retry_at = time.monotonic()
                inv.started, inv.deadline = retry_at, retry_at + timeout
                self.state = "init"
                self._launch()
                outcome, init_ms = self._await_init(inv.deadline)
                inv.preamble = self._read_new_output()
                if outcome != "ok":
                    etype = self._init_failure()[0] if outcome == "error" else ""
                    inv.preamble += format_init_report("invoke", init_ms, outcome, etype)
                    inv.finished = time.monotonic()
                    if outcome == "timeout":
                        self._timed_out(inv, timeout)
                    else:
                        inv.status = "error"
                        inv.report_error, inv.error = self._init_failure(inv.request_id)
                    self.kill("init failed")
                    return inv
        else:
            inv.deadline = begun + timeout
        with self._lock:
            dead = self._process_dead or self.state == "dead"
            if not dead:
                self.state = "busy"
                self._current = inv
        if dead:  # died while idle, between the pool's choice and now
            self._fail_exited(inv)
            self._retire()
            inv.log_text = self._read_new_output()
            return inv
        self._queue.put(inv)
        if not inv.done.wait(max(0.0, inv.deadline - time.monotonic())):
            with self._lock:
                timed_out = not inv.done.is_set()
                if timed_out:
                    self._timed_out(inv, timeout)
                    inv.done.set()
            if timed_out:
                self.kill(f"Task timed out after {timeout:.2f} seconds")
        with self._lock:
            self._current = None
            dead = self._process_dead
            if self.state == "busy" and not dead:
                self.state = "idle"
                self.last_used = time.monotonic()
        if dead:
            self._retire()
        inv.log_text = self._read_new_output()
        return inv

    @staticmethod
    def _timed_out(inv: Invocation, timeout: float) -> None:
        inv.status = "timeout"
        if inv.started is None:
            inv.started = inv.deadline - timeout
        inv.finished = inv.deadline
        inv.error = {
            "errorType": "Sandbox.Timedout",
            "errorMessage": f"RequestId: {inv.request_id} Error: Task timed out after {timeout:.2f} seconds",
        }

    def _read_new_output(self) -> str:
        """What the runtime printed since the last read (its stdout and stderr go to one file)."""
        try:
            with open(self.dir / "output.log", "rb") as fh:
                fh.seek(self._log_offset)
                data = fh.read()
        except OSError:
            return ""
        self._log_offset += len(data)
        return data.decode("utf-8", errors="replace")

    @property
    def alive(self) -> bool:
        return self.state != "dead"

    def runtime_version_line(self) -> str:
        """Lambda's INIT_START line for this runtime (none for a container image: it brings its own)."""
        rt = self.runtime
        if rt is None:
            return ""
        digest = hashlib.sha256(f"{rt.runtime}:{rt.python_version}".encode()).hexdigest()
        micro = rt.python_version.rsplit(".", 1)[-1]
        return (
            f"INIT_START Runtime Version: python:{rt.minor}.v{micro}\tRuntime Version ARN: "
            f"arn:aws:lambda:{self.snapshot.region}::runtime:{digest}\n"
        )
