"""Load from many machines on an existing engine: ``[load] engine = "locust"``.

A rate trial's open-loop schedule (and a concurrency trial's closed loop) is sent by Locust workers instead of this
process: ``workers = N`` local worker processes and/or one worker on each of ``worker_hosts`` (SSH hosts, started
over SSH by :mod:`perfdesk.remote.load_workers`). A Locust master (a local process) splits each level among its
workers: an open-loop schedule round robin, each worker sending its share at the intended send times (latency from
the intended time); a closed loop's clients as evenly as they go, each sending back to back. Workers stream their
finished requests back in batches; every request becomes one row of requests.csv with the ``client`` that sent it.
Before each level the master measures each worker's clock offset with an NTP-like exchange; the offsets are stated
in the level's note (trials.csv) and the manifest (``load``), and row times are in this machine's
clock. The nodes are :mod:`perfdesk.shipped.locust_node`, a file that imports nothing of perfdesk.

The master and workers are started at the first trial that needs them and kept for the session's next trials (an
ec2 worker host is launched once). They are stopped on every exit path: the session's close (also after an error or
Ctrl-C: they run in their own process groups, so perfdesk stops them in order), interpreter exit (atexit), and,
should perfdesk be killed outright, each node ends when its standard input does.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import importlib
import json
import os
import queue
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from perfdesk.controllers.events import LoadClients
from perfdesk.controllers.results import ERROR, TIMEOUT, RequestResult
from perfdesk.controllers.target import HttpRequest, TargetError, TargetSpec

if TYPE_CHECKING:
    from perfdesk.controllers.trials import LevelRecorder, TrialRun

#: the node program, run as a file (here and on worker hosts)
NODE_FILE = Path(__file__).resolve().parents[1] / "shipped" / "locust_node.py"
#: where the SSH worker hosts are started (imported only when a profile names worker hosts)
SSH_WORKERS = "perfdesk.remote.load_workers:SshWorker"


class LoadSection(BaseModel):
    """``[load]``: which engine sends the load of rate and concurrency trials: this process, or Locust's workers."""

    model_config = ConfigDict(extra="forbid")
    engine: Literal["perfdesk", "locust"] = Field(
        "perfdesk",
        description="'perfdesk': this process sends; 'locust': Locust workers send (rate, concurrency trials).",
    )
    workers: int = Field(0, ge=0, le=256, description="Local Locust worker processes (engine 'locust').")
    worker_hosts: list[str] = Field(
        default_factory=list,
        description="Hosts that each run one Locust worker, started over SSH: the name of an ssh or ec2 target "
        "of the profile (its settings; such a target is a load machine, not measured) or an SSH host / "
        "~/.ssh/config alias. The measured target must be reachable from them.",
    )
    master_host: str | None = Field(
        None,
        description="Address the worker hosts reach the master at (the master then listens on all interfaces); "
        "default: each reaches it through a reverse SSH tunnel.",
    )
    python: str = Field(
        "python3",
        description="Interpreter on the worker hosts that has Locust (else a venv made with it in remote_dir gets it).",
    )
    remote_dir: str = Field("~/.perfdesk", description="Directory on the worker hosts for perfdesk's files.")
    install: bool = Field(
        True, description="pip install Locust into remote_dir/locust-venv on a worker host whose python lacks it."
    )
    start_timeout_s: float = Field(120.0, gt=0, le=3600, description="Seconds for every worker to connect.")
    clock_samples: int = Field(8, ge=1, le=100, description="Clock exchanges per worker before each level.")
    batch_ms: float = Field(50.0, gt=0, le=5000, description="Workers send finished requests back this often.")
    lead_s: float = Field(0.5, gt=0, le=60, description="A level starts this long after its schedule is sent.")

    _host_specs: dict[str, TargetSpec] = PrivateAttr(default_factory=dict)
    _engine: Any = PrivateAttr(None)

    @model_validator(mode="after")
    def _engine_has_workers(self):
        if self.engine == "locust" and not (self.workers or self.worker_hosts):
            raise ValueError("engine 'locust' needs workers (local processes) or worker_hosts")
        if self.engine == "perfdesk" and (self.workers or self.worker_hosts):
            raise ValueError("workers and worker_hosts are for engine = 'locust'")
        return self

    def attach_targets(self, specs: list[TargetSpec]) -> None:
        """Resolve ``worker_hosts`` names against the profile's targets (the profile loader calls this)."""
        self._host_specs = {s.name: s for s in specs if s.name in self.worker_hosts}

    def host_spec(self, name: str) -> TargetSpec | None:
        return self._host_specs.get(name)

    def engine_for(self, run: TrialRun) -> LocustEngine:
        """The session's Locust master and workers, started at the first trial that needs them (again if one of
        them is gone) and kept for the next trials (an ec2 worker host is launched once); :meth:`close` ends them."""
        engine = self._engine
        if engine is not None and not engine.usable():
            engine.log("a locust node is gone; starting the master and workers again")
            self.close()
            engine = None
        if engine is not None:
            engine.bind(run)
            engine.requests()  # a target that is not HTTP fails its trial here
            return engine
        engine = LocustEngine(self, run)
        try:
            engine.start()
        except BaseException:
            engine.close()
            raise
        self._engine = engine
        return engine

    def close(self) -> None:
        """Stop the Locust master and workers, if they run (the experiment's close; safe to call twice)."""
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.close()


_LIVE: weakref.WeakSet[LocustEngine] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for engine in list(_LIVE):
        engine.close()


def _node_env() -> dict[str, str]:
    return dict(os.environ, PYTHONUNBUFFERED="1")


class LocustEngine:
    """A Locust master and its workers (a session's: :meth:`LoadSection.engine_for`); :meth:`bind` points them at
    a trial's target, :meth:`open_loop` and :meth:`closed_loop` send one level."""

    def __init__(self, load: LoadSection, run: TrialRun, *, remote_worker: Callable[..., Any] | None = None):
        #: makes the worker of one of ``worker_hosts``: (host, load, its target spec or None, log, ctx=...);
        #: default :class:`perfdesk.remote.load_workers.SshWorker` (tests inject one with an injected ec2 target)
        self.remote_worker = remote_worker
        self.load = load
        self.run = run
        self.target = run.target
        self.master: subprocess.Popen | None = None
        self.local: list[subprocess.Popen] = []
        self.remote: list[Any] = []
        self.clients: list[str] = []
        self.events: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._level_id = 0
        self.closed = False

    def bind(self, run: TrialRun) -> None:
        """Send the next levels for ``run`` (its target, payloads and events); the nodes stay as they are."""
        self.run = run
        self.target = run.target

    def usable(self) -> bool:
        """The master and every worker still run."""
        if self.closed or self.master is None or self.master.poll() is not None:
            return False
        return all(p.poll() is None for p in self.local) and all(w.alive() for w in self.remote)

    def log(self, line: str, stream: str = "locust") -> None:
        self.target.log(line, stream=stream)

    # -- start ------------------------------------------------------------------------------------------------
    def requests(self) -> list[HttpRequest]:
        out = []
        for payload in self.run.payloads:
            req = self.target.http_endpoint(payload)
            if req is None:
                raise TargetError(
                    self.target.name,
                    "locust load",
                    f"Locust needs an HTTP target; {self.target.kind} targets are not sent plain HTTP requests",
                    "use [load] engine = 'perfdesk' for this trial, or an HTTP target (http, local-server, ssh, ec2)",
                )
            out.append(req)
        return out

    def start(self) -> None:
        from perfdesk.controllers.extras import MissingExtra, require

        self.requests()  # a target that is not HTTP fails here, before any process starts
        try:
            require("locust", what="[load] engine = 'locust'")
        except MissingExtra as exc:
            raise TargetError(self.target.name, "locust load", str(exc)) from None
        load = self.load
        expect = load.workers + len(load.worker_hosts)
        remote_direct = bool(load.worker_hosts) and load.master_host is not None
        cmd = [
            sys.executable,
            str(NODE_FILE),
            "master",
            "--bind",
            "*" if remote_direct else "127.0.0.1",
            "--expect",
            str(expect),
            "--start-timeout-s",
            str(load.start_timeout_s),
            "--clock-samples",
            str(load.clock_samples),
        ]
        _LIVE.add(self)
        self.master = self._spawn(cmd, "master", stdout=True)
        port = self._wait_event("listening", 30.0)["port"]
        self.log(f"locust master listening on port {port}; starting {expect} workers")
        for i in range(load.workers):
            name = f"local-{i + 1}"
            wcmd = [sys.executable, str(NODE_FILE), "worker", "--master-host", "127.0.0.1"]
            self.local.append(self._spawn([*wcmd, "--master-port", str(port), "--name", name], name))
        if load.worker_hosts:
            make = self.remote_worker
            if make is None:
                module, _, attr = SSH_WORKERS.partition(":")
                make = getattr(importlib.import_module(module), attr)
            for host in load.worker_hosts:
                w = make(host, load, load.host_spec(host), self.log, ctx=self.target.ctx)
                self.remote.append(w)
                w.start(master_port=port, master_host=load.master_host, name=host, node_file=NODE_FILE)
        ready = self._wait_event("ready", load.start_timeout_s + 30.0)
        self.clients = list(ready["clients"])
        self.log(f"locust workers ready: {', '.join(self.clients)}")

    def _spawn(self, cmd: list[str], name: str, stdout: bool = False) -> subprocess.Popen:
        try:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE if stdout else subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                env=_node_env(),
                start_new_session=True,  # Ctrl-C reaches perfdesk only, which stops the nodes in order
            )
        except OSError as exc:
            raise TargetError(self.target.name, f"start locust {name}", str(exc)) from exc
        threading.Thread(target=self._pump_log, args=(proc, name), name=f"locust-{name}-log", daemon=True).start()
        if stdout:
            threading.Thread(target=self._pump_events, args=(proc,), name="locust-events", daemon=True).start()
        return proc

    def _pump_log(self, proc: subprocess.Popen, name: str) -> None:
        assert proc.stderr is not None
        for raw in proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip()
            if line:
                self.log(f"[{name}] {line}")

    def _pump_events(self, proc: subprocess.Popen) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            try:
                event = json.loads(raw)
            except ValueError:
                self.log(f"[master] {raw.decode('utf-8', 'replace').rstrip()}")
                continue
            self.events.put(event)
        self.events.put({"ev": "exit", "rc": proc.wait()})

    def _wait_event(self, kind: str, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            if self.run.cancel.is_set():
                raise TargetError(self.target.name, "start locust", "cancelled while the workers started")
            dead = [w.host for w in self.remote if not w.alive()]
            dead += [f"local-{i + 1}" for i, p in enumerate(self.local) if p.poll() is not None]
            if dead:
                raise TargetError(
                    self.target.name,
                    "start locust",
                    f"the worker {dead[0]} exited during start-up",
                    "the session's log.txt has its output",
                )
            try:
                event = self.events.get(timeout=min(0.5, max(0.01, deadline - time.monotonic())))
            except queue.Empty:
                if time.monotonic() > deadline:
                    raise TargetError(self.target.name, "start locust", f"no {kind} within {timeout:g} s") from None
                continue
            if event["ev"] == kind:
                return event
            if event["ev"] in ("error", "exit"):
                why = event.get("message") or f"the master exited with status {event.get('rc')}"
                raise TargetError(self.target.name, "start locust", why, "the session's log.txt has their output")

    def _send(self, **command: Any) -> None:
        master = self.master
        if master is None or master.stdin is None or master.poll() is not None:
            return
        with self._lock:
            try:
                master.stdin.write((json.dumps(command) + "\n").encode())
                master.stdin.flush()
            except (BrokenPipeError, OSError, ValueError):
                pass

    # -- one level ------------------------------------------------------------------------------------------
    def open_loop(self, rec: LevelRecorder, offsets: np.ndarray, *, max_in_flight: int) -> dict:
        """Send one level's open-loop schedule from the workers (round robin); every finished request is recorded
        as it comes back, its latency from the intended send time."""
        last = float(offsets[-1]) if len(offsets) else 0.0
        return self._level(
            rec, {"mode": "open", "offsets": [float(x) for x in offsets], "max_in_flight": max_in_flight}, last
        )

    def closed_loop(self, rec: LevelRecorder, *, concurrency: int, duration_s: float | None, count: int | None) -> dict:
        """Send one closed-loop level: ``concurrency`` clients shared among the workers, each back to back, for
        ``duration_s`` or ``count`` requests in all (latency with the closed-loop caveat)."""
        command = {"mode": "closed", "concurrency": concurrency, "duration_s": duration_s, "count": count}
        return self._level(rec, command, duration_s or 0.0, closed_loop=True)

    def _level(self, rec: LevelRecorder, command: dict, last: float, closed_loop: bool = False) -> dict:
        requests = self.requests()
        timeout = float(self.target.spec.request_timeout_s)
        self._level_id += 1
        level_id = self._level_id
        self._send(
            op="level",
            id=level_id,
            url=requests[0].url,
            method=requests[0].method,
            verify_tls=requests[0].verify_tls,
            requests=[{"headers": r.headers, "body": base64.b64encode(r.body).decode("ascii")} for r in requests],
            timeout_s=timeout,
            batch_ms=self.load.batch_ms,
            lead_s=self.load.lead_s,
            **command,
        )
        # a count-bound closed loop has no known end: bounded by the request timeout per request at worst
        wait_s = last + self.load.lead_s + timeout + 120.0
        if closed_loop and command.get("count"):
            wait_s += float(command["count"]) * timeout
        payloads = self.run.payloads
        index = {name: i for i, name in enumerate(self.clients)}
        clock: dict[str, dict] = {}
        stopped = False
        deadline = time.monotonic() + wait_s
        done: dict = {}
        while True:
            if rec.stop.is_set() and not stopped:
                stopped = True
                self._send(op="stop")
                deadline = min(deadline, time.monotonic() + timeout + 60.0)
            try:
                event = self.events.get(timeout=0.1)
            except queue.Empty:
                if time.monotonic() > deadline:
                    rec.note = "the locust master did not finish the level in time"
                    break
                continue
            kind = event["ev"]
            if kind == "rows" and event.get("id") == level_id:
                client = event["client"]
                for row in event["rows"]:
                    seq = int(row[0])
                    rec.record(
                        _result(row, requests[seq % len(requests)]),
                        payloads[seq % len(payloads)],
                        seq=seq,
                        worker=index.get(client, 0),
                        intended=float(row[1]),
                        closed_loop=closed_loop,
                        client=client,
                    )
            elif kind == "clock":
                clock = event["clients"]
            elif kind == "done" and event["id"] == level_id:
                done = event
                break
            elif kind in ("exit", "error"):
                raise TargetError(
                    self.target.name, "locust load", event.get("message") or "the locust master exited mid-level"
                )
        facts = {
            "engine": "locust",
            "clients": {
                name: {**clock.get(name, {}), **{k: v for k, v in done.get("clients", {}).get(name, {}).items()}}
                for name in self.clients
            },
            "lost": done.get("lost", []),
            "clock": "offset = worker clock minus master clock (NTP-like exchange, least-delay sample); "
            "row times are in the master's (this machine's) clock",
        }
        for info in facts["clients"].values():
            info.pop("id", None)
        rec.note = rec.note or clock_note(self.clients, clock, facts["lost"])
        r = self.run
        r.emit(LoadClients(r.workload.name, r.spec.name, r.target.name, rec.level_value, facts))
        return facts

    # -- stop -------------------------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop the master and every worker (quit, then TERM, then KILL); safe to call twice."""
        if self.closed:
            return
        self.closed = True
        _LIVE.discard(self)
        self._send(op="quit")
        procs = ([self.master] if self.master is not None else []) + self.local
        for proc in procs:
            with contextlib.suppress(OSError, ValueError):
                if proc.stdin is not None:
                    proc.stdin.close()  # end of input: the node quits
        deadline = time.monotonic() + 10.0
        for proc in procs:
            _stop(proc, max(0.1, deadline - time.monotonic()))
        for w in self.remote:
            try:
                w.close()
            except Exception as exc:  # noqa: BLE001 - each worker host is stopped whatever the others do
                self.log(f"stopping the worker on {w.host}: {exc}")
        self.log("locust master and workers stopped")


def _stop(proc: subprocess.Popen, timeout: float) -> None:
    try:
        proc.wait(timeout=timeout)
        return
    except subprocess.TimeoutExpired:
        pass
    import signal

    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


class _Headers(dict):
    """Response headers, looked up without regard to case (as urllib3's are)."""

    def __init__(self, headers: dict[str, str]):
        super().__init__({k.lower(): v for k, v in headers.items()})

    def get(self, key, default=None):
        return super().get(key.lower(), default)

    def __getitem__(self, key):
        return super().__getitem__(key.lower())

    def __contains__(self, key):
        return super().__contains__(str(key).lower())


def _result(row: list, request: HttpRequest) -> RequestResult:
    _seq, _intended, sent, received, outcome, http_status, error, body, nbytes, headers = row
    if outcome == "http":
        data = base64.b64decode(body) if body else b""
        result = request.parse(int(http_status), data, _Headers(headers or {}), sent, received)
        result.response_bytes = int(nbytes)
        return result
    return RequestResult(
        actual_send=sent, receive=received, status=TIMEOUT if outcome == "timeout" else ERROR, error=error
    )


def clock_note(clients: list[str], clock: dict[str, dict], lost: list[str]) -> str:
    """The level's note: who sent, and each worker's clock offset to the master."""

    def one(name: str) -> str:
        c = clock.get(name) or {}
        if c.get("offset_ms") is None:
            return f"{name} offset unknown"
        return f"{name} {c['offset_ms']:+.3f} ms (rtt {c['rtt_ms']:.3f} ms)"

    note = f"locust, {len(clients)} workers; clock offsets to the master: {', '.join(one(n) for n in clients)}"
    if lost:
        note += f"; lost before the level ended: {', '.join(lost)}"
    return note


@contextlib.contextmanager
def load_engine(run: TrialRun) -> Iterator[LocustEngine | None]:
    """The trial's load engine (None: this process sends): the session's Locust master and workers, started at
    the first trial that needs them and stopped by the experiment's close (:meth:`LoadSection.close`), interpreter
    exit (atexit) or, should perfdesk be killed, the end of each node's standard input."""
    load: LoadSection | None = getattr(run, "load", None)
    if load is None or load.engine == "perfdesk":
        yield None
        return
    yield load.engine_for(run)
