"""Locust workers on other machines (``[load] worker_hosts``), started over SSH for
:mod:`perfdesk.controllers.distributed`.

A worker host is named by a profile target (an ``ssh`` target: its connection settings; an ``ec2`` target: an
instance launched for the session, as the ec2 kind launches one, and terminated at the end) or by an SSH host or
``~/.ssh/config`` alias. On the host: Locust is found for ``[load] python`` or installed into a virtual environment
under ``remote_dir``; :mod:`perfdesk.shipped.locust_node` is copied there; the worker runs in the foreground of an SSH
channel whose end (perfdesk's close, a dropped connection) is the end of the worker's standard input, so the worker
quits. It reaches the master through a reverse tunnel over the same connection (a port on the host's loopback
carried to the master's port here), unless ``[load] master_host`` names an address it can reach directly.
"""

from __future__ import annotations

import select
import shlex
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from perfdesk.controllers.target import TargetContext, TargetError, TargetSpec
from perfdesk.remote.transport import Transport

#: what a worker host needs; the same requirement as the ``locust`` extra
LOCUST_REQUIREMENT = "locust>=2.30"


class SshWorker:
    """One Locust worker on one SSH host (see the module docstring). ``transport`` and ``ec2`` may be injected."""

    def __init__(
        self,
        host: str,
        load: Any,
        spec: TargetSpec | None,
        log: Callable[[str], None],
        *,
        ctx: TargetContext | None = None,
        transport: Transport | None = None,
        ec2: Any = None,
    ):
        self.host = host
        self.load = load
        self.spec = spec
        self.log = log
        self.ctx = ctx
        self.transport = transport
        self.ec2 = ec2
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._tunnel_port: int | None = None
        self.python = load.python

    # -- connection ---------------------------------------------------------------------------------------------
    def _connect(self) -> Transport:
        if self.transport is not None:
            return self.transport
        spec = self.spec
        if spec is not None and spec.kind == "ec2":
            if self.ec2 is None:
                from perfdesk.remote.ec2_target import Ec2Target

                ctx = self.ctx or TargetContext(session_id="locust", emit=lambda e: None)
                self.ec2 = Ec2Target(spec, ctx)  # type: ignore[arg-type]  # an ec2 spec, checked above
            self.log(f"launching an instance for the worker {self.host}")
            self.ec2.launch()
            self.transport = self.ec2._transport()
            return self.transport
        from perfdesk.remote.ssh import SshTransport

        if spec is None:
            self.transport = SshTransport(self.host, on_log=self.log)
            return self.transport
        if spec.kind != "ssh":
            raise TargetError(
                self.host,
                "locust worker",
                f"worker_hosts names the {spec.kind} target {spec.name!r}",
                "name an ssh or ec2 target, or an SSH host",
            )
        s: Any = spec
        self.transport = SshTransport(
            s.host,
            port=s.port,
            user=s.user,
            identity_file=s.identity_file,
            known_hosts=s.known_hosts,
            trust_on_first_use=s.trust_on_first_use,
            allow_agent=s.use_ssh_agent,
            ssh_config=s.ssh_config or None,
            connect_timeout_s=s.connect_timeout_s,
            command_timeout_s=s.command_timeout_s,
            on_log=self.log,
        )
        return self.transport

    # -- provisioning -------------------------------------------------------------------------------------------
    def _has_locust(self, t: Transport, python: str) -> bool:
        res = t.run(f"{python} -c 'import locust' 2>/dev/null", timeout=120, check=False, step="look for Locust")
        return res.rc == 0

    def _provision(self, t: Transport, node_file: Path) -> str:
        """Locust for the worker's interpreter and the node file on the host; returns the node file's path there."""
        remote_dir = self.load.remote_dir.rstrip("/")
        if remote_dir.startswith("~/"):
            remote_dir = t.home() + remote_dir[1:]
        venv = f"{remote_dir}/locust-venv"
        python = shlex.quote(self.load.python)
        if not self._has_locust(t, python):
            venv_python = shlex.quote(f"{venv}/bin/python")
            if t.run(f"[ -x {venv_python} ]", timeout=30, check=False).rc == 0 and self._has_locust(t, venv_python):
                python = venv_python
            elif not self.load.install:
                raise t.error(
                    "locust worker", f"{self.load.python} has no Locust", "install it there, or set [load] install"
                )
            else:
                self.log(f"{self.host}: installing Locust into {venv}")
                t.run(
                    f"mkdir -p {shlex.quote(remote_dir)} && {python} -m venv {shlex.quote(venv)} && "
                    f"{venv_python} -m pip install -q {shlex.quote(LOCUST_REQUIREMENT)}",
                    timeout=1800,
                    on_line=lambda line: self.log(f"{self.host}: {line}"),
                    step="install Locust",
                )
                python = venv_python
        self.python = python
        t.run(f"mkdir -p {shlex.quote(remote_dir)}", timeout=30, step="make " + remote_dir)
        remote_node = f"{remote_dir}/locust_node.py"
        t.put(node_file, remote_node, mode=0o644)
        return remote_node

    def _reverse_tunnel(self, t: Transport, master_port: int) -> int:
        """A port on the host's loopback whose connections are carried to the master's port here."""
        transport = t._transport()  # type: ignore[attr-defined]  # an SshTransport's paramiko transport

        def handler(chan, origin, server) -> None:
            threading.Thread(target=_pipe, args=(chan, master_port), name="locust-tunnel", daemon=True).start()

        port = transport.request_port_forward("127.0.0.1", 0, handler=handler)
        self._tunnel_port = port
        return port

    # -- the worker ----------------------------------------------------------------------------------------------
    def start(self, *, master_port: int, master_host: str | None, name: str, node_file: Path) -> None:
        t = self._connect()
        remote_node = self._provision(t, node_file)
        if master_host is None:
            host, port = "127.0.0.1", self._reverse_tunnel(t, master_port)
        else:
            host, port = master_host, master_port
        cmd = (
            f"exec {self.python} {shlex.quote(remote_node)} worker --master-host {shlex.quote(host)} "
            f"--master-port {port} --name {shlex.quote(name)}"
        )
        self.log(f"starting the locust worker on {t.host}: {cmd}")

        def run() -> None:
            try:
                t.run(
                    cmd,
                    timeout=10**7,
                    check=False,
                    on_line=lambda line: self.log(f"[{name}] {line}"),
                    stop_event=self._stop,
                    step="locust worker",
                )
            except TargetError as exc:
                self.log(f"[{name}] {exc}")

        self._thread = threading.Thread(target=run, name=f"locust-worker-{name}", daemon=True)
        self._thread.start()

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def close(self) -> None:
        """End the worker (its channel closes: end of its input), the tunnel and the connection; terminate an
        instance launched for it. Safe to call twice."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)
        t = self.transport
        if t is not None and self._tunnel_port is not None:
            try:
                t._transport().cancel_port_forward("127.0.0.1", self._tunnel_port)  # type: ignore[attr-defined]
            except Exception:  # noqa: BLE001 - the connection may be gone already; closing it ends the tunnel
                pass
            self._tunnel_port = None
        if self.ec2 is not None:
            ec2, self.ec2, self.transport = self.ec2, None, None
            ec2.teardown()  # closes its transport and terminates the instance
            return
        if t is not None:
            t.close()
            self.transport = None


def _pipe(chan, port: int) -> None:
    """Carry one tunnelled connection to 127.0.0.1:``port`` here, both ways, until either side closes."""
    try:
        conn = socket.create_connection(("127.0.0.1", port), timeout=10)
    except OSError:
        chan.close()
        return
    conn.settimeout(None)
    try:
        while True:
            ready, _, _ = select.select([conn, chan], [], [], 1.0)
            if conn in ready:
                data = conn.recv(65536)
                if not data:
                    break
                chan.sendall(data)
            if chan in ready:
                data = chan.recv(65536)
                if not data:
                    break
                conn.sendall(data)
            if chan.closed:
                break
    except OSError:
        pass
    finally:
        chan.close()
        conn.close()
