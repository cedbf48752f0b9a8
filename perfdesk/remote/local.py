"""The local server target: the inference agent as a subprocess on 127.0.0.1, on a free port, with a fresh token.

Its output is streamed line by line as log events. It is stopped on every exit path: teardown, an error, Ctrl-C
(the experiment tears targets down), interpreter exit (atexit), and, should perfdesk be killed outright, the agent
notices its parent is gone and stops itself (``--parent-pid``).
"""

from __future__ import annotations

import atexit
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from perfdesk.controllers.extras import MissingExtra, require_agent
from perfdesk.controllers.target import TargetError, TargetSpec, TargetStatus
from perfdesk.controllers.workload import WorkloadSpec
from perfdesk.remote.agent_target import AgentEndpoint, AgentTarget, server_price_facts

_LIVE: weakref.WeakSet[LocalServerTarget] = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    for target in list(_LIVE):
        target._stop_agent()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class LocalServerSpec(TargetSpec):
    """``kind = "local-server"``: the agent as a local process."""

    kind: Literal["local-server"] = "local-server"
    workers: int = Field(1, ge=1, le=64, description="gunicorn worker processes (each loads the model).")
    wsgi_threads: int = Field(4, ge=1, le=256, description="Request threads per worker.")
    port: int = Field(0, ge=0, le=65535, description="Port on 127.0.0.1 (0: a free port).")
    python: str = Field("", description="Python interpreter for the agent (default: the one running perfdesk).")
    startup_timeout_s: float = Field(300.0, gt=0, le=3600, description="Seconds to wait for the agent's health.")
    pool_size: int = Field(64, ge=1, le=4096, description="Client connections kept open to the agent.")
    instance_type: str | None = Field(
        None, description="Price this server as this EC2 instance type (break-even, cost per 1k), e.g. 'c5.xlarge'."
    )
    hourly_price: float | None = Field(None, ge=0, description="USD per hour of this server (wins over instance_type).")


class LocalServerTarget(AgentTarget):
    kind = "local-server"
    spec_model = LocalServerSpec
    emulation = "a local server on this machine, priced as the instance it stands in for"

    def __init__(self, spec: LocalServerSpec, ctx):
        super().__init__(spec, ctx)
        self.spec: LocalServerSpec = spec
        self.proc: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None
        self._tail: list[str] = []

    def _command(self, workload: WorkloadSpec, port: int) -> list[str]:
        return [
            self.spec.python or sys.executable,
            "-m",
            "perfdesk.shipped.agent",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            *workload.engine_config().to_argv(),
            "--workers",
            str(self.spec.workers),
            "--wsgi-threads",
            str(self.spec.wsgi_threads),
            "--parent-pid",
            str(os.getpid()),
        ]

    def deploy(self, workload: WorkloadSpec) -> None:
        if self.spec.python in ("", sys.executable):
            # the agent runs on this interpreter: a runtime that is not installed is said here, naming its extra,
            # rather than by an agent dying at start-up (another interpreter is the user's to provide)
            try:
                require_agent(workload.runtime, f"the agent for workload {workload.name!r}")
            except MissingExtra as exc:
                self.set_state(TargetStatus.FAILED)
                raise TargetError(self.name, "deploy", str(exc)) from None
        super().deploy(workload)

    def _start_agent(self, workload: WorkloadSpec) -> AgentEndpoint:
        port = self.spec.port or free_port()
        token = secrets.token_urlsafe(32)
        env = dict(os.environ)
        env["PERFDESK_AGENT_TOKEN"] = token
        env["PYTHONUNBUFFERED"] = "1"
        # the agent imports the same perfdesk package as this process, wherever it is installed or checked out
        pkg_root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join([pkg_root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
        cmd = self._command(workload, port)
        self.log(f"starting agent: {' '.join(cmd)}")
        started = time.time()
        try:
            self.proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # its own process group: Ctrl-C reaches perfdesk, which stops it in order
            )
        except OSError as exc:
            raise TargetError(self.name, "start agent", str(exc), "check the python setting") from exc
        _LIVE.add(self)
        self._tail = []
        self._reader = threading.Thread(
            target=self._read_output, args=(self.proc,), name=f"{self.name}-log", daemon=True
        )
        self._reader.start()
        return AgentEndpoint("127.0.0.1", port, token, started)

    def _read_output(self, proc: subprocess.Popen) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip()
            if not line:
                continue
            self._tail = (self._tail + [line])[-20:]
            self.log(line, stream="agent")

    def _startup_output(self) -> str:
        if self._reader is not None:
            self._reader.join(timeout=2)  # the process exited: let the reader drain its output
        errors = [line for line in self._tail if "Error" in line or "error" in line]
        return " | ".join((errors or self._tail)[-3:])

    def _agent_alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _stop_agent(self) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            try:
                # gunicorn's quick shutdown (SIGTERM waits up to graceful_timeout for requests in flight; by the time
                # a target is stopped its trial is over, or it is being restarted for a cold start)
                os.killpg(proc.pid, signal.SIGINT)
                os.killpg(proc.pid, signal.SIGCONT)  # a stopped (hung) agent handles the signal only once continued
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=5)
        # workers left in the group (should not happen) go too
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if self._reader is not None:
            self._reader.join(timeout=2)
        if proc.stdout:
            proc.stdout.close()
        self.proc = None
        _LIVE.discard(self)

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        if self.client is not None:
            d["port"] = self.client.endpoint.port
        d.update(
            host="127.0.0.1",
            workers=self.spec.workers,
            wsgi_threads=self.spec.wsgi_threads,
            python=self.spec.python or sys.executable,
            **server_price_facts(self.spec.instance_type, self.spec.hourly_price),
        )
        return d
