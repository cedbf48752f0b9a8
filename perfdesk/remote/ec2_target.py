"""``kind = "ec2"``: an instance launched for the session, then provisioned and served like an ``ssh`` host.

Deploy launches (key pair from your public key, a security group admitting only your address, tags with the
session id, an elastic IP when asked), waits for SSH, then does what the ssh kind does. The instance's launch is
its own figure (``launch_s``, and ``launch_to_first_answer_s`` until the agent's health answered), and its hourly
price goes into the manifest for the cost model. Teardown stops the agent and terminates the instance, then
releases the elastic IP and deletes the security group and key pair (``perfdesk teardown`` does the same by tag
after a crash).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from perfdesk.controllers.target import TargetError, TargetStatus
from perfdesk.controllers.workload import WorkloadSpec
from perfdesk.remote.ec2 import (
    UBUNTU_SSM,
    Ec2Lifecycle,
    Instance,
    LaunchSpec,
    hourly_price,
    read_public_key,
    wait_for_ssh,
)
from perfdesk.remote.ssh_target import SshSpec, SshTarget


class Ec2Spec(SshSpec):
    """``kind = "ec2"``: an EC2 instance launched for the session (then provisioned over SSH)."""

    kind: Literal["ec2"] = "ec2"  # type: ignore[assignment]  # the discriminator, narrowed from SshSpec's "ssh"
    host: str = Field("", description="Filled in with the instance's address; leave empty.")
    user: str | None = Field("ubuntu", description="Login user of the AMI (ubuntu for Ubuntu AMIs).")
    region: str = Field("us-east-1", description="AWS region.")
    instance_type: str = Field("t3.medium", description="EC2 instance type.")
    ami: str | None = Field(None, description="AMI id (default: the latest Ubuntu through ssm_parameter).")
    ssm_parameter: str = Field(UBUNTU_SSM, description="SSM public parameter naming the AMI when ami is not set.")
    public_key: str = Field("~/.ssh/id_ed25519.pub", description="Your OpenSSH public key, imported as the key pair.")
    allowed_cidr: str | None = Field(None, description="Who may connect (default: your public address /32).")
    elastic_ip: bool = Field(False, description="Attach an elastic IP (a stable address for the session).")
    volume_gb: int = Field(30, ge=8, le=16384, description="Root volume size, GB.")
    subnet_id: str | None = Field(None, description="Subnet (default: the default VPC).")
    endpoint_url: str | None = Field(None, description="EC2/SSM endpoint (tests: the moto server).")
    hourly_price: float | None = Field(None, ge=0, description="USD per hour (default: the dated price table).")
    ssh_wait_s: float = Field(300.0, gt=0, le=3600, description="Seconds to wait for SSH after launch.")
    trust_on_first_use: bool = Field(
        True,
        description="A fresh instance's host key is unknown: accepted once, fingerprint logged, kept in the "
        "session's own known_hosts file.",
    )
    known_hosts: str = Field("", description="known_hosts file (default: one in the session folder).")
    keep_cache: bool = Field(False, description="The instance is terminated anyway.")


class Ec2Target(SshTarget):
    """An ``ssh`` target on an instance this target launches. ``lifecycle`` and ``address`` may be injected:
    tests pass a lifecycle on the moto server and an address function that points at a local sshd."""

    kind = "ec2"
    spec_model = Ec2Spec

    def __init__(
        self,
        spec: Ec2Spec,
        ctx,
        lifecycle: Ec2Lifecycle | None = None,
        address: Callable[[Instance], tuple[str, int]] | None = None,
        transport=None,
    ):
        super().__init__(spec, ctx, transport=transport)
        self.spec: Ec2Spec = spec
        self.lifecycle = lifecycle
        self.address = address or (lambda inst: (inst.address, spec.port or 22))
        self.instance: Instance | None = None
        self.launch_started: float | None = None
        self.launch_to_first_answer_s: float | None = None
        self.terminated = False
        if not spec.known_hosts:
            # ephemeral addresses stay out of the user's ~/.ssh/known_hosts
            self.spec = spec = spec.model_copy(update={"known_hosts": str(Path(ctx.work_dir) / "known_hosts")})

    def _ssh_host(self) -> tuple[str, int]:
        if self.instance is None:
            raise TargetError(self.name, "connect", "no instance launched yet")
        return self.address(self.instance)

    def _lifecycle(self) -> Ec2Lifecycle:
        if self.lifecycle is None:
            self.lifecycle = Ec2Lifecycle(
                self.spec.region,
                self.ctx.session_id,
                endpoint_url=self.spec.endpoint_url,
                on_line=lambda line: self.log(line, stream="ec2"),
            )
        return self.lifecycle

    def launch(self) -> Instance:
        s = self.spec
        self.set_state(TargetStatus.DEPLOYING, f"launching {s.instance_type} in {s.region}")
        self.launch_started = time.time()
        lc = self._lifecycle()
        lc.on_line = lambda line: self.log(line, stream="ec2")
        self.instance = lc.launch(
            LaunchSpec(
                name=self.name,
                instance_type=s.instance_type,
                ami=s.ami,
                ssm_parameter=s.ssm_parameter,
                public_key=read_public_key(s.public_key),
                ssh_port=s.port or 22,
                agent_port=(s.agent_port or 8750) if s.expose else None,
                allowed_cidr=s.allowed_cidr,
                elastic_ip=s.elastic_ip,
                volume_gb=s.volume_gb,
                subnet_id=s.subnet_id,
            )
        )
        host, port = self._ssh_host()
        waited = wait_for_ssh(host, port, s.ssh_wait_s, self.ctx.cancel)
        self.log(
            f"{self.instance.instance_id} running in {self.instance.launch_s:.1f} s; SSH answered "
            f"{waited:.1f} s later at {host}:{port}",
            stream="ec2",
        )
        return self.instance

    def deploy(self, workload: WorkloadSpec) -> None:
        if self.instance is None or self.terminated:
            self.terminated = False
            try:
                self.launch()
            except TargetError:
                self.set_state(TargetStatus.FAILED)
                raise
        if self.spec.expose and not self.spec.agent_port:
            self.spec = self.spec.model_copy(update={"agent_port": 8750})  # the port the security group admits
        super().deploy(workload)
        if self.launch_to_first_answer_s is None and self.launch_started is not None:
            self.launch_to_first_answer_s = time.time() - self.launch_started
            self.log(f"launch to first answer: {self.launch_to_first_answer_s:.1f} s", stream="ec2")

    def teardown(self) -> None:
        try:
            super().teardown()
        except TargetError as exc:
            self.log(f"agent stop failed ({exc}); terminating the instance anyway", stream="ec2")
        if self.instance is not None and not self.terminated:
            try:
                removed = self._lifecycle().destroy(self.instance)
            except Exception as exc:  # noqa: BLE001 - botocore errors
                raise TargetError(
                    self.name,
                    "terminate " + self.instance.instance_id,
                    str(exc),
                    f"run `perfdesk teardown {self.ctx.session_id} --region {self.spec.region}`",
                ) from None
            self.terminated = True
            self.log("removed " + ", ".join(removed), stream="ec2")

    @classmethod
    def sweep(cls, session_id, *, session_dir, region, facts, say) -> list[str]:
        """EC2 resources of the session, by their tags, in ``region`` or the regions its targets used."""
        from perfdesk.remote.teardown import teardown_session

        regions = [region] if region else sorted({f["region"] for f in facts if f.get("region")})
        if not regions:
            import os

            import boto3

            regions = [r for r in [os.environ.get("AWS_REGION") or boto3.session.Session().region_name] if r]
        if not regions:
            raise RuntimeError("no AWS region for EC2: pass --region or set AWS_REGION")
        return [line for r in regions for line in teardown_session(session_id, r, on_line=say)]

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        price, as_of = hourly_price(self.spec.region, self.spec.instance_type)
        source = f"price table {as_of}"
        if self.spec.hourly_price is not None:
            price, as_of, source = self.spec.hourly_price, "profile", "profile"
        d.update(
            region=self.spec.region,
            instance_type=self.spec.instance_type,
            hourly_usd=price,
            price_as_of=as_of,
            price_source=source,
            launch_to_first_answer_s=self.launch_to_first_answer_s,
        )
        if self.instance is not None:
            i = self.instance
            d.update(
                instance_id=i.instance_id,
                ami=i.ami,
                public_ip=i.public_ip,
                launch_s=round(i.launch_s, 2),
                elastic_ip=bool(i.allocation_id),
            )
        return d
