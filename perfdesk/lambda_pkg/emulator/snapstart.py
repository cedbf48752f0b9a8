"""SnapStart in the emulator: published versions, a snapshot per SnapStart version, and cold starts restored from it.

On Lambda, ``PublishVersion`` of a function with ``SnapStart.ApplyOn = PublishedVersions`` runs the init phase once
(the handler module's import and the runtime's before-snapshot hooks, ``snapshot_restore_py.register_before_snapshot``),
logs ``INIT_REPORT``, snapshots the microVM and makes the version Active; a cold start of that version resumes a copy
of the snapshot, runs the after-restore hooks (``register_after_restore``) and logs ``RESTORE_START`` /
``RESTORE_REPORT``; its REPORT line has ``Restore Duration`` and ``Billed Restore Duration`` and no Init Duration.

Here the snapshot is a live process: the version's **template**, an execution environment started with
``AWS_LAMBDA_INITIALIZATION_TYPE=snap-start``, initialises and blocks in the runtime's ``GET restore/next``. Each cold
start of the version asks the template to restore: the emulator's bootstrap (``bootstrap.py``) forks it, and the
child, with the template's whole initialised memory, is the new environment (:class:`RestoredEnvironment`): its own
Runtime API (where ``restore/next`` answers at once), its own log socket, its own memory and CPU cgroups (the emulator
moves it there), then the after-restore hooks and the invocation loop. Restore Duration runs from the restore request
to the clone's first ``invocation/next``; Billed Restore Duration from the clone's ``restore/next`` (it is running) to
that ``invocation/next`` (loading the runtime and the after-restore hooks, what Lambda bills).

Where it differs from Lambda (a fork, not a microVM snapshot): clones share the template's mount and PID namespaces,
so ``/tmp`` is the template's for all of them (Lambda's snapshot restores a copy of ``/tmp`` into each); memory the
template had before the fork stays charged to the template's cgroup, so a clone's memory is also its polled resident
size (Max Memory Used the larger of the two; above the memory size it is killed, as out of memory); a process a
handler starts and leaves running outlives its clone until the version goes. The snapshot lives as long as the
version (Lambda keeps its snapshots while the version is invoked).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import select
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from perfdesk.lambda_pkg.emulator.environment import ExecutionEnvironment, Invocation, _RuntimeApi
from perfdesk.lambda_pkg.emulator.store import ApiError, FunctionRecord, invalid, now_iso
from perfdesk.lambda_pkg.report import format_restore_report, format_snapstart_init_report

if TYPE_CHECKING:
    from perfdesk.lambda_pkg.emulator.server import Emulator

log = logging.getLogger(__name__)

#: Runtimes that SnapStart supports (Python 3.12 and later).
SNAPSTART_RUNTIMES = ("python3.12", "python3.13", "python3.14")
#: The init of a SnapStart version at publish may take up to 15 minutes (not the on-demand init's 10 s).
PUBLISH_INIT_TIMEOUT_S = 900.0
#: Lambda's limit: SnapStart functions have at most 512 MB of ephemeral storage.
MAX_SNAPSTART_EPHEMERAL_MB = 512
_OK = b'{"status":"OK"}'


def check_snap_start(
    body: dict, runtime: str, package_type: str, ephemeral_mb: int, current: str = "None"
) -> str | None:
    """The ``SnapStart.ApplyOn`` a CreateFunction or UpdateFunctionConfiguration sets (None: not given), refused
    with Lambda's errors where SnapStart does not apply (``current``: the function's setting, which a change of
    runtime or ephemeral storage must still satisfy)."""
    if "SnapStart" not in body:
        if current == "PublishedVersions" and ("Runtime" in body or "EphemeralStorage" in body):
            check_snap_start({"SnapStart": {"ApplyOn": current}}, runtime, package_type, ephemeral_mb)
        return None
    apply_on = (body.get("SnapStart") or {}).get("ApplyOn", "None")
    if apply_on not in ("PublishedVersions", "None"):
        raise invalid(
            f"1 validation error detected: Value '{apply_on}' at 'snapStart.applyOn' failed to satisfy constraint: "
            "Member must satisfy enum value set: [PublishedVersions, None]"
        )
    if apply_on == "None":
        return apply_on
    if package_type == "Image":
        raise invalid("SnapStart is not supported for functions with package type Image.")
    if runtime not in SNAPSTART_RUNTIMES:
        raise invalid(f"{runtime} is not supported for SnapStart enabled functions.")
    if ephemeral_mb > MAX_SNAPSTART_EPHEMERAL_MB:
        raise invalid("SnapStart is not supported for functions with ephemeral storage larger than 512 MB.")
    return apply_on


# -- versions --------------------------------------------------------------------------------------------------
def publish_version(emu: Emulator, fn: FunctionRecord, body: dict) -> dict:
    """PublishVersion: a frozen copy of $LATEST as version N. A SnapStart version is Pending while its snapshot's
    init runs in the background, then Active (or Failed); on-demand versions are Active at once."""
    if body.get("RevisionId") and body["RevisionId"] != fn.revision_id:
        raise ApiError(
            412, "PreconditionFailedException", "The Revision Id provided does not match the latest Revision Id."
        )
    if body.get("CodeSha256") and body["CodeSha256"] != fn.code_sha256:
        raise invalid(
            f"CodeSha256 ({body['CodeSha256']}) is different from current CodeSha256 in $LATEST "
            f"({fn.code_sha256}). Please try again."
        )
    with fn.lock:
        latest = max(fn.versions.values(), key=lambda v: int(v.version), default=None)
        if latest is not None and latest.code_sha256 == fn.code_sha256 and latest.revision == fn.revision:
            return latest.configuration()  # nothing changed since: Lambda returns the latest version
        fn.version_seq += 1
        number = str(fn.version_seq)
        version = replace(
            fn,
            version=number,
            variables=dict(fn.variables),
            layers=list(fn.layers),
            tags={},
            versions={},
            description=body.get("Description", fn.description),
            last_modified=now_iso(),
            lock=threading.Lock(),
        )
        version.revision = fn.revision
        fn.versions[number] = version
    if version.snap_start == "PublishedVersions":
        version.state, version.state_reason = "Pending", ("Creating", "Lambda is creating your snapshot.")
        threading.Thread(
            target=_make_snapshot, args=(emu, version), name=f"snapshot-{fn.name}:{number}", daemon=True
        ).start()
    return version.configuration()


def _make_snapshot(emu: Emulator, version: FunctionRecord) -> None:
    """The version's init, once: start its template and wait for it to reach ``restore/next``."""
    try:
        runtime = emu.runtimes.get(version.runtime)
        template = SnapshotTemplate(
            emu._snapshot(version),
            emu.work_dir / "envs",
            runtime,
            emu.isolation,
            emu.limiter,
            emu.memory_limiter,
            emu._spawn,
            init_timeout_s=PUBLISH_INIT_TIMEOUT_S,
        )
        version.snapshot_template = template
        outcome, init_ms, text = template.initialise()
    except Exception as exc:
        log.exception("snapshot of %s:%s", version.name, version.version)
        version.state, version.state_reason = "Failed", ("InternalError", str(exc))
        return
    if emu.log_sink:
        emu.log_sink(version.name, text)
    if outcome == "ok":
        version.state, version.state_reason = "Active", None
    else:
        version.state = "Failed"
        version.state_reason = ("FunctionError", f"Init {outcome}: {template.init_failure_message()}")
        template.kill("snapshot init failed")


def check_invokable(version: FunctionRecord) -> None:
    """Lambda's answer to an invoke of a SnapStart version whose snapshot is not ready."""
    if version.state == "Pending":
        raise ApiError(
            409,
            "SnapStartNotReadyException",
            "Lambda is initializing your function. You can invoke the function when the state of your function is "
            "Active.",
        )
    if version.state == "Failed":
        raise ApiError(
            409,
            "ResourceConflictException",
            "The operation cannot be performed at this time. The function is currently in the following state: Failed",
        )


def new_environment(emu: Emulator, version: FunctionRecord, on_dead: Callable) -> ExecutionEnvironment:
    """A restored environment of a SnapStart version (a clone of its template)."""
    template = version.snapshot_template
    if template is None or not template.alive:
        raise ApiError(502, "SnapStartException", "The snapshot of this version is not available.")
    return RestoredEnvironment(
        emu._snapshot(version),
        emu.work_dir / "envs",
        template.runtime,
        emu.isolation,
        emu.limiter,
        emu.memory_limiter,
        emu._spawn,
        template=template,
        on_dead=on_dead,
        init_timeout_s=emu.init_timeout_s,
    )


def discard(version: FunctionRecord) -> None:
    """The version is gone (deleted, or the emulator stops): its snapshot goes too."""
    template = getattr(version, "snapshot_template", None)
    if template is not None:
        template.kill("version deleted")


# -- the snapshot ----------------------------------------------------------------------------------------------
class SnapshotTemplate(ExecutionEnvironment):
    """A SnapStart version's initialised environment, kept blocked in ``restore/next``: each restore forks it."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._restores: queue.Queue[RestoredEnvironment | None] = queue.Queue()
        #: the clones by their pid in the template's PID namespace, with the generation each was forked for
        self._clones: dict[int, tuple[RestoredEnvironment, int]] = {}
        self._by_port: dict[int, RestoredEnvironment] = {}
        self._clone_lock = threading.Lock()
        self.on_dead = self._template_dead
        self._api.close()
        self._api = _TemplateApi(self)

    def process_env(self) -> dict[str, str]:
        env = super().process_env()
        env["AWS_LAMBDA_INITIALIZATION_TYPE"] = "snap-start"
        # Lambda does not set these for SnapStart functions (a snapshot serves many log streams)
        env.pop("AWS_LAMBDA_LOG_GROUP_NAME", None)
        env.pop("AWS_LAMBDA_LOG_STREAM_NAME", None)
        return env

    def initialise(self) -> tuple[str, float, str]:
        """Run the init (blocking): ("ok"|"error"|"timeout", Init Duration ms, the log Lambda writes for it)."""
        self.start()
        self._launched.wait(60.0)
        start = self._exec_at if self._exec_at is not None else self._started
        outcome, init_ms = self._await_init(start + self.init_timeout_s)
        text = self.runtime_version_line() + self._read_new_output()
        if outcome == "ok":
            text += format_snapstart_init_report(init_ms)
            self.state = "idle"
        else:
            from perfdesk.lambda_pkg.report import format_init_report

            etype = self._init_failure()[0] if outcome == "error" else ""
            text += format_init_report("init", init_ms, outcome, etype)
        return outcome, init_ms, text

    def init_failure_message(self) -> str:
        return str(self._init_failure()[1].get("errorMessage", ""))

    def request_restore(self, clone: RestoredEnvironment) -> None:
        with self._clone_lock:
            self._by_port[clone.api_port] = clone
        self._restores.put(clone)

    def _restore_api(self, method: str, what: str, headers: dict, body: bytes) -> tuple[int, dict, bytes]:
        if method == "GET" and what == "next":
            if not self._init_done.is_set():  # the init and the before-snapshot hooks are done: snapshot taken
                start = self._exec_at if self._exec_at is not None else self._started
                self.init_ms = (time.monotonic() - start) * 1000.0
                self._init_done.set()
            while not self._closed.is_set():
                clone = self._restores.get()
                if clone is None:
                    break
                if clone.abandoned:
                    continue
                clone.restore_requested = time.monotonic()
                return (
                    200,
                    {
                        "Perfdesk-Restore-Runtime-Api": f"127.0.0.1:{clone.api_port}",
                        "Perfdesk-Restore-Log": f"127.0.0.1:{clone.log_port}",
                    },
                    b"{}",
                )
            return 410, {}, b'{"errorMessage":"snapshot discarded","errorType":"Gone"}'
        data = _json(body)
        if method == "POST" and what == "forked":
            port = int(str(data.get("api", "")).rpartition(":")[2] or 0)
            with self._clone_lock:
                clone = self._by_port.pop(port, None)
                if clone is not None:
                    self._clones[int(data["pid"])] = (clone, clone._generation)
            if clone is not None:
                clone._forked(self._host_pid_of(int(data["pid"])))
            return 202, {}, _OK
        if method == "POST" and what == "exited":
            with self._clone_lock:
                found = self._clones.pop(int(data.get("pid", 0)), None)
            if found is not None and found[1] == found[0]._generation:  # not a clone already replaced
                found[0]._exited(int(data.get("code", -9)))
            return 202, {}, _OK
        return super()._restore_api(method, what, headers, body)

    def clone_owning(self, peer_port: int) -> RestoredEnvironment | None:
        """The clone whose socket (from 127.0.0.1:``peer_port``) connected to this template's Runtime API."""
        inode = _socket_inode(peer_port, self._api.port)
        if inode is None:
            return None
        target = f"socket:[{inode}]"
        deadline = time.monotonic() + 5.0  # the clone may connect before the template has reported its fork
        while True:
            with self._clone_lock:
                clones = [c for c, gen in self._clones.values() if gen == c._generation and c.pid]
            for clone in clones:
                try:
                    fds = os.listdir(f"/proc/{clone.pid}/fd")
                except OSError:
                    continue
                for fd in fds:
                    try:
                        if os.readlink(f"/proc/{clone.pid}/fd/{fd}") == target:
                            return clone
                    except OSError:
                        continue
            if time.monotonic() > deadline or self._closed.is_set():
                return None
            time.sleep(0.005)

    def _host_pid_of(self, ns_pid: int) -> int | None:
        """The host pid of a child of the template known by its pid in the template's PID namespace."""
        import psutil

        try:
            children = psutil.Process(self.pid).children() if self.pid else []
        except psutil.Error:
            return None
        for child in children:
            try:
                with open(f"/proc/{child.pid}/status") as fh:
                    for line in fh:
                        if line.startswith("NSpid:"):
                            if int(line.split()[-1]) == ns_pid:
                                return child.pid
                            break
            except OSError:
                continue
        return ns_pid if not self.isolated else None

    def _template_dead(self, env: ExecutionEnvironment) -> None:
        """The template ended: every clone in its PID namespace ended with it."""
        self._restores.put(None)
        with self._clone_lock:
            clones = [c for c, gen in self._clones.values() if gen == c._generation] + list(self._by_port.values())
            self._clones.clear()
            self._by_port.clear()
        for clone in clones:
            clone._exited(-signal.SIGKILL)


class RestoredEnvironment(ExecutionEnvironment):
    """An environment restored from a SnapStart version's snapshot: a fork of the version's template."""

    def __init__(self, *args: Any, template: SnapshotTemplate, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.template = template
        self.abandoned = False
        self.restore_requested: float | None = None
        self.restored_at: float | None = None
        self._log_sock = socket.socket()
        self._log_sock.bind(("127.0.0.1", 0))
        self._log_sock.listen(4)
        self.log_port = self._log_sock.getsockname()[1]
        self._log_conn: socket.socket | None = None
        self._log_lock = threading.Lock()
        threading.Thread(target=self._accept_logs, name=f"{self.env_id}-logs", daemon=True).start()

    @property
    def api_port(self) -> int:
        return self._api.port

    # -- restore: the template forks, the emulator moves the clone into this environment's cgroups ----------------
    def _launch(self) -> None:
        self._generation += 1
        self.dir.mkdir(parents=True, exist_ok=True)
        self.cpu_limited = self.cpu.create(self.env_id, self.snapshot.memory_mb)
        self.memory_limited = self.memory.create(self.env_id, self.snapshot.memory_mb)
        self._init_done.clear()
        self._launched.clear()
        self._init_error, self._init_error_type, self._launch_error = None, "", ""
        self.oom, self.death_reason, self._process_dead = False, "", False
        self.pid, self.restored_at = None, None
        self._started = time.monotonic()
        self._exec_at = self._started  # Restore Duration begins with the request to restore
        self.template.request_restore(self)

    def _forked(self, host_pid: int | None) -> None:
        if host_pid is None:
            self._launch_error = "the restored environment's process could not be found"
        else:
            self.pid = host_pid
            if self.memory_limited and not self.memory.attach(self.env_id, host_pid):
                self.memory_limited = False
            if self.cpu_limited and not self.cpu.attach(self.env_id, host_pid):
                self.cpu_limited = False
            # always polled too: pages the clone shares with the snapshot stay charged to the template's cgroup, but
            # they are the environment's memory as on Lambda (its resident size counts them)
            threading.Thread(target=self._poll_memory, args=(self._generation,), daemon=True).start()
        self._launched.set()

    def _poll_memory(self, generation: int) -> None:
        limit = self.snapshot.memory_mb * 1024 * 1024
        while generation == self._generation and not self._process_dead and self.state != "dead":
            rss = self.rss_bytes()
            self.peak_rss = max(self.peak_rss, rss)
            if rss > limit:
                self.oom = True
                self._killpg(None)
                return
            time.sleep(self.poll_s if self.state != "idle" else max(self.poll_s, 0.2))

    def _exited(self, code: int) -> None:
        if self.memory_limited and self.memory.oom_kills(self.env_id) > 0:
            self.oom = True
        self._capture_peak()
        super()._exited(code)

    def _killpg(self, proc: Any) -> None:
        if self.pid:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and _alive(self.pid):
                time.sleep(0.01)

    def _stop_process(self) -> None:
        self._generation += 1
        self._killpg(None)
        self._capture_peak()
        self.cpu.release(self.env_id)
        self.memory.release(self.env_id)

    def _cleanup(self) -> None:
        self.abandoned = True
        super()._cleanup()
        for s in (self._log_conn, self._log_sock):
            if s is not None:
                try:
                    s.close()
                except OSError:
                    pass

    def peak_memory_mb(self) -> int:
        self.peak_rss = max(self.peak_rss, self.rss_bytes())
        return super().peak_memory_mb()

    # -- the clone's own Runtime API and log --------------------------------------------------------------------
    def _restore_api(self, method: str, what: str, headers: dict, body: bytes) -> tuple[int, dict, bytes]:
        if method == "GET" and what == "next":  # the clone runs: the restored part begins
            self.restored_at = time.monotonic()
            return 200, {}, b"{}"
        if method == "POST" and what == "error":  # an after-restore hook raised
            self._init_failed(
                _json(body), headers.get("lambda-runtime-function-error-type") or "Runtime.AfterRestoreError"
            )
            return 202, {}, _OK
        return super()._restore_api(method, what, headers, body)

    def _accept_logs(self) -> None:
        while True:
            try:
                conn, _ = self._log_sock.accept()
            except OSError:
                return
            self._log_conn = conn
            path = self.dir / "output.log"
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    break
                with self._log_lock, open(path, "ab") as fh:
                    fh.write(data)

    def _read_new_output(self) -> str:
        conn = self._log_conn
        deadline = time.monotonic() + 0.5
        while conn is not None and time.monotonic() < deadline:  # let the reader take what is in flight
            try:
                readable = select.select([conn], [], [], 0)[0]
            except (OSError, ValueError):
                break
            if not readable:
                break
            time.sleep(0.001)
        with self._log_lock:
            return super()._read_new_output()

    # -- invoke --------------------------------------------------------------------------------------------------
    def invoke(self, inv: Invocation) -> Invocation:
        inv = super().invoke(inv)
        if inv.init_ms is not None:  # restored: Lambda reports a restore, not an init
            inv.restore_ms = inv.init_ms
            end = (self.restore_requested or self._started) + inv.init_ms / 1000.0
            inv.billed_restore_ms = max(0.0, (end - (self.restored_at or end)) * 1000.0)
            inv.init_ms = None
            inv.prelude += format_restore_report(inv.restore_ms)
        return inv

    def runtime_version_line(self) -> str:
        return super().runtime_version_line().replace("INIT_START", "RESTORE_START", 1)


class _TemplateApi(_RuntimeApi):
    """The template's Runtime API. The runtime client's native part in a clone still talks to the template's
    address (it read it once, at the template's start): each such connection is handed to the clone that owns it."""

    def __init__(self, env: SnapshotTemplate):
        self._local = threading.local()
        self._owners: dict[int, RestoredEnvironment | None] = {}
        super().__init__(env)

    def _serve(self, conn: socket.socket) -> None:
        self._local.peer = conn.getpeername()[1]
        try:
            super()._serve(conn)
        finally:
            self._owners.pop(self._local.peer, None)

    def _dispatch(self, method: str, path: str, headers: dict, body: bytes) -> tuple[int, dict, bytes]:
        if path.startswith("/2018-06-01/runtime/invocation/"):
            peer = self._local.peer
            if peer not in self._owners:
                self._owners[peer] = self.env.clone_owning(peer)  # type: ignore[attr-defined]
            clone = self._owners[peer]
            if clone is None:
                return 403, {}, b'{"errorMessage":"no environment of this snapshot","errorType":"Forbidden"}'
            return clone._api._dispatch(method, path, headers, body)
        return super()._dispatch(method, path, headers, body)


def _socket_inode(local_port: int, remote_port: int) -> int | None:
    """The inode of the loopback TCP socket 127.0.0.1:local_port -> 127.0.0.1:remote_port (/proc/net/tcp)."""
    want_local, want_remote = f"0100007F:{local_port:04X}", f"0100007F:{remote_port:04X}"
    try:
        with open("/proc/net/tcp") as fh:
            next(fh)
            for line in fh:
                f = line.split()
                if f[1] == want_local and f[2] == want_remote:
                    return int(f[9])
    except (OSError, StopIteration, IndexError, ValueError):
        pass
    return None


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _json(body: bytes) -> dict:
    try:
        data = json.loads(body or b"{}")
        return data if isinstance(data, dict) else {}
    except ValueError:
        return {}


def version_configuration(version: FunctionRecord, out: dict[str, Any]) -> dict[str, Any]:
    """A published version's configuration: its ARN and number, its SnapStart state."""
    out["FunctionArn"] = f"{version.arn}:{version.version}"
    out["Version"] = version.version
    if version.snap_start == "PublishedVersions":
        out["SnapStart"] = {"ApplyOn": "PublishedVersions", "OptimizationStatus": "On"}
        out["State"] = version.state
        if version.state_reason:
            out["StateReasonCode"], out["StateReason"] = version.state_reason
    return out


__all__ = [
    "SNAPSTART_RUNTIMES",
    "RestoredEnvironment",
    "SnapshotTemplate",
    "check_invokable",
    "check_snap_start",
    "discard",
    "new_environment",
    "publish_version",
    "version_configuration",
]
