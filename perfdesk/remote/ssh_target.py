"""``kind = "ssh"``: the agent on a host you can reach over SSH, provisioned by perfdesk.

Deploy connects (known_hosts verified), provisions the host (venv, dependencies, code, weights; skipping what is in
place), writes a fresh token to a 0600 file, starts the agent detached under gunicorn, streams its log as ``agent``
log lines and reaches it through an SSH port forward (the agent listens on the host's loopback only), unless
``expose = true`` (an EC2 security group admitting only the caller). Teardown stops the agent's process group,
removes the token and run files and, unless ``keep_cache``, everything perfdesk put on the host.
"""

from __future__ import annotations

import secrets
import shlex
import threading
import time
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from perfdesk.controllers.target import TargetError, TargetSpec, TargetStatus
from perfdesk.controllers.workload import WorkloadSpec
from perfdesk.remote.agent_target import AgentEndpoint, AgentTarget, server_price_facts
from perfdesk.remote.provision import (
    Provisioner,
    ProvisionOptions,
    ProvisionReport,
    agent_command,
    free_port_command,
    start_agent,
    stop_agent,
)
from perfdesk.remote.transport import Transport

if TYPE_CHECKING:
    from perfdesk.remote.ssh import LocalForward


class InstallSpec(BaseModel):
    """How dependencies are installed into the host's virtual environment."""

    model_config = ConfigDict(extra="forbid")

    packages: list[str] | None = Field(
        None,
        description="Packages to install instead of the runtime's defaults (torch+torchvision, onnxruntime, "
        "tensorflow-cpu; CUDA builds where nvidia-smi is present) plus flask gunicorn psutil pillow numpy.",
    )
    index_url: str | None = Field(None, description="pip --index-url (a mirror).")
    extra_index_url: str | None = Field(None, description="pip --extra-index-url.")
    pip_args: list[str] = Field(default_factory=list, description="Further pip install arguments.")
    timeout_s: float = Field(1800.0, gt=0, le=7200, description="Seconds allowed for the install step.")


class SshSpec(TargetSpec):
    """``kind = "ssh"``: an existing host reached over SSH."""

    kind: Literal["ssh"] = "ssh"
    host: str = Field(min_length=1, description="Host name, address or ~/.ssh/config alias.")
    port: int | None = Field(None, ge=1, le=65535, description="SSH port (default: ssh config, else 22).")
    user: str | None = Field(None, description="Login user (default: ssh config, else the local user).")
    identity_file: str | None = Field(
        None, description="Private key file (default: ssh config, ssh-agent, ~/.ssh/id_*)."
    )
    use_ssh_agent: bool = Field(True, description="Offer the keys held by ssh-agent.")
    known_hosts: str = Field("~/.ssh/known_hosts", description="known_hosts file the host key is verified against.")
    trust_on_first_use: bool = Field(
        False,
        description="Accept an unknown host key once (fingerprint logged, key saved to known_hosts).",
    )
    ssh_config: str | None = Field("~/.ssh/config", description="OpenSSH client config for aliases ('' for none).")
    python: str = Field("python3", description="Interpreter on the host that creates the venv (or runs the agent).")
    remote_dir: str = Field("~/.perfdesk", description="Directory on the host for perfdesk's files.")
    venv: str = Field(
        "venv",
        description="'venv': a virtual environment in remote_dir; 'system': run `python` as is; or the path "
        "of an interpreter that already has the packages.",
    )
    system_site_packages: bool = Field(False, description="Create the venv with --system-site-packages.")
    install: InstallSpec = Field(default_factory=InstallSpec)
    keep_cache: bool = Field(True, description="Keep venv, code and weights on the host after teardown (fast re-runs).")
    connect_timeout_s: float = Field(15.0, gt=0, le=600, description="Seconds to connect and authenticate.")
    command_timeout_s: float = Field(600.0, gt=0, le=7200, description="Seconds allowed for one command.")
    startup_timeout_s: float = Field(300.0, gt=0, le=3600, description="Seconds to wait for the agent's health.")
    agent_port: int = Field(0, ge=0, le=65535, description="Agent port on the host (0: a free one).")
    expose: bool = Field(
        False,
        description="Listen on all interfaces and connect directly instead of an SSH forward "
        "(only behind a firewall that admits just you, e.g. the ec2 security group).",
    )
    workers: int = Field(1, ge=1, le=64, description="gunicorn worker processes (each loads the model).")
    wsgi_threads: int = Field(4, ge=1, le=256, description="Request threads per worker.")
    pool_size: int = Field(64, ge=1, le=4096, description="Client connections kept open to the agent.")
    instance_type: str | None = Field(
        None, description="Price this host as this EC2 instance type (break-even, cost per 1k), e.g. 'c5.xlarge'."
    )
    hourly_price: float | None = Field(None, ge=0, description="USD per hour of this host (wins over instance_type).")


class SshTarget(AgentTarget):
    """The agent on an SSH host. ``transport`` may be injected (tests); otherwise it is built from the spec."""

    kind = "ssh"
    spec_model = SshSpec

    def __init__(self, spec: SshSpec, ctx, transport: Transport | None = None):
        super().__init__(spec, ctx)
        self.spec: SshSpec = spec
        self.transport = transport
        self.provisioner: Provisioner | None = None
        self.report: ProvisionReport | None = None
        self._report_key: tuple | None = None
        self._forward: LocalForward | None = None
        self._follow_stop: threading.Event | None = None
        self._started = False
        self._token = ""
        self.provision_s: float | None = None

    # -- connection and provisioning ---------------------------------------------------------------------------
    def _ssh_host(self) -> tuple[str, int | None]:
        """Where to connect (the ec2 kind overrides this with the instance's address)."""
        return self.spec.host, self.spec.port

    def _transport(self) -> Transport:
        if self.transport is None:
            from perfdesk.remote.ssh import SshTransport

            host, port = self._ssh_host()
            s = self.spec
            self.transport = SshTransport(
                host,
                port=port,
                user=s.user,
                identity_file=s.identity_file,
                known_hosts=s.known_hosts,
                trust_on_first_use=s.trust_on_first_use,
                allow_agent=s.use_ssh_agent,
                ssh_config=s.ssh_config or None,
                connect_timeout_s=s.connect_timeout_s,
                command_timeout_s=s.command_timeout_s,
                on_log=lambda line: self.log(line, stream="ssh"),
            )
        return self.transport

    def _options(self) -> ProvisionOptions:
        s = self.spec
        return ProvisionOptions(
            remote_dir=s.remote_dir,
            python=s.python,
            venv=s.venv,
            system_site_packages=s.system_site_packages,
            packages=s.install.packages,
            index_url=s.install.index_url,
            extra_index_url=s.install.extra_index_url,
            pip_args=list(s.install.pip_args),
            keep_cache=s.keep_cache,
            install_timeout_s=s.install.timeout_s,
        )

    def provision(self, workload: WorkloadSpec) -> ProvisionReport:
        """Bring the host to the state ``workload`` needs (skipping what is in place); cached per workload."""
        key = (workload.runtime, workload.weights)
        if self.report is not None and self._report_key == key:
            return self.report
        self.set_state(TargetStatus.DEPLOYING, f"provisioning {self._transport().host}")
        if self.provisioner is None:
            self.provisioner = Provisioner(
                self._transport(), self._options(), on_line=lambda line: self.log(line, "ssh")
            )
        t0 = time.monotonic()
        self.report = self.provisioner.provision(workload.runtime, workload.weights)
        self.provision_s = time.monotonic() - t0
        self._report_key = key
        return self.report

    # -- the agent -----------------------------------------------------------------------------------------------
    def _start_agent(self, workload: WorkloadSpec) -> AgentEndpoint:
        t = self._transport()
        report = self.provision(workload)
        layout = report.layout
        port = self.spec.agent_port
        if not port:
            port = int(t.run(free_port_command(report.python), timeout=60, step="pick a free port").stdout.strip())
        engine = workload.engine_config()
        if report.weights != workload.weights:  # uploaded into the host's cache (its sha256 checked at upload)
            engine.weights, engine.weights_sha256 = report.weights, None
        engine.cache_dir = layout.cache
        cmd = agent_command(
            report.python,
            layout,
            host="0.0.0.0" if self.spec.expose else "127.0.0.1",
            port=port,
            engine=engine,
            workers=self.spec.workers,
            wsgi_threads=self.spec.wsgi_threads,
        )
        self.log(f"starting agent on {t.host}: {cmd}")
        started = time.time()
        start_agent(t, layout, cmd, self._new_token())
        self._started = True
        self._follow_stop = threading.Event()
        t.follow(layout.log, lambda line: self.log(line, stream="agent"), self._follow_stop, pid_path=layout.pid)
        if self.spec.expose:
            host = getattr(t, "endpoint", None)
            return AgentEndpoint(host.hostname if host else "127.0.0.1", port, self._token, started)
        if not hasattr(t, "forward"):  # a LocalTransport: the "host" is this machine
            return AgentEndpoint("127.0.0.1", port, self._token, started)
        self._forward = t.forward(port)
        return AgentEndpoint("127.0.0.1", self._forward.port, self._token, started)

    def _new_token(self) -> str:
        self._token = secrets.token_urlsafe(32)
        return self._token

    def _agent_alive(self) -> bool:
        if self.report is None:
            return False
        try:
            return self._transport().is_running(self.report.layout.pid)
        except TargetError:
            return True  # a transient SSH problem: let the health wait decide

    def check_alive(self) -> str | None:
        """The agent's process through the transport; a host SSH cannot reach again is lost too (requests go
        through SSH's port forward), unless the agent is reached directly (``expose``)."""
        if self.client is None or not self._started or self.report is None or not self.state.serving:
            return None
        q = shlex.quote(self.report.layout.pid)
        try:
            # an answer either way, so that a command cut short by a dropped link (no output) proves nothing
            out = (
                self._transport()
                .run(
                    f'p=$(cat {q} 2>/dev/null); if [ -n "$p" ] && kill -0 "$p" 2>/dev/null; then echo alive; '
                    "else echo gone; fi",
                    timeout=10,
                    check=False,
                    step="check the agent",
                )
                .stdout.split()
            )
        except TargetError as exc:
            return None if self.spec.expose else f"SSH: {exc}"
        return f"the agent's process on {self._transport().host} exited" if out == ["gone"] else None

    def _stop_agent(self) -> None:
        if self._forward is not None:
            self._forward.close()
            self._forward = None
        if self._follow_stop is not None:
            self._follow_stop.set()
            self._follow_stop = None
        if not self._started or self.report is None or self.transport is None:
            return
        self._started = False
        if stop_agent(self.transport, self.report.layout):
            self.log(f"agent stopped on {self.transport.host}")

    def teardown(self) -> None:
        try:
            super().teardown()
            if self.provisioner is not None and self.report is not None and self.transport is not None:
                removed = self.provisioner.clean()
                self.log(f"removed {', '.join(removed)} on {self.transport.host}")
        except TargetError as exc:
            self.log(f"teardown: {exc}")
            raise
        finally:
            if self.transport is not None:
                self.transport.close()
                self.transport = None
                self.provisioner = None

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        try:
            host, port = self._ssh_host()
        except TargetError:  # an EC2 instance not launched yet (the manifest is first written before deploys)
            host, port = self.spec.host or None, self.spec.port
        d.update(
            host=host,
            port=port,
            user=self.spec.user,
            workers=self.spec.workers,
            wsgi_threads=self.spec.wsgi_threads,
            expose=self.spec.expose,
            **server_price_facts(self.spec.instance_type, self.spec.hourly_price),
        )
        if self.report is not None:
            f = self.report.facts
            d.update(
                python=self.report.python,
                python_version=f.python_version,
                system=f.system,
                gpu=f.gpu,
                remote_dir=self.report.layout.root,
                provision_steps=self.report.steps,
                provision_s=round(self.provision_s or 0.0, 2),
            )
        return d
