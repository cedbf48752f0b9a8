"""EC2 instance lifecycle with boto3: launch from a profile, tag everything with the session, tear down by tag.

Everything perfdesk creates carries two tags, ``perfdesk:managed = true`` and ``perfdesk:session = <id>``, so that
:func:`perfdesk.remote.teardown.teardown_session` finds and removes it after a failed or interrupted session too.
The security group admits SSH (and the agent port, when the agent is exposed) only from the caller's /32.

The boto3 clients enter through the constructor (tests pass clients of the moto server), as does the function
that finds the caller's public address (tests fix it; nothing leaves the machine).
"""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from perfdesk.controllers.target import TargetError

TAG_MANAGED = "perfdesk:managed"
TAG_SESSION = "perfdesk:session"
UBUNTU_SSM = "/aws/service/canonical/ubuntu/server/24.04/stable/current/amd64/hvm/ebs-gp3/ami-id"


def tags(session_id: str, name: str) -> list[dict[str, str]]:
    return [
        {"Key": TAG_MANAGED, "Value": "true"},
        {"Key": TAG_SESSION, "Value": session_id},
        {"Key": "Name", "Value": name},
    ]


def tag_spec(resource: str, session_id: str, name: str) -> list[dict]:
    return [{"ResourceType": resource, "Tags": tags(session_id, name)}]


def session_filters(session_id: str | None) -> list[dict]:
    """Filters that select what perfdesk created (in one session, or in all with ``None``)."""
    f = [{"Name": f"tag:{TAG_MANAGED}", "Values": ["true"]}]
    if session_id:
        f.append({"Name": f"tag:{TAG_SESSION}", "Values": [session_id]})
    return f


def clients(region: str, endpoint_url: str | None = None) -> tuple[Any, Any]:
    """(ec2, ssm) boto3 clients for a region (``endpoint_url``: a local endpoint such as the moto server)."""
    import boto3

    session = boto3.session.Session(region_name=region)
    return (session.client("ec2", endpoint_url=endpoint_url), session.client("ssm", endpoint_url=endpoint_url))


def caller_address(timeout: float = 10.0) -> str:
    """This machine's public IPv4 address as AWS sees it (checkip.amazonaws.com)."""
    try:
        with urllib.request.urlopen("https://checkip.amazonaws.com", timeout=timeout) as resp:
            ip = resp.read().decode().strip()
        socket.inet_aton(ip)
        return ip
    except (OSError, ValueError) as exc:
        raise TargetError(
            "ec2",
            "find your public address",
            str(exc),
            "set allowed_cidr in the profile to your address, e.g. '203.0.113.7/32'",
        ) from None


def hourly_price(region: str, instance_type: str) -> tuple[float | None, str]:
    """(USD per hour, as-of date) from the dated table shipped in prices.json; None when not listed."""
    table = json.loads(resources.files("perfdesk.remote").joinpath("prices.json").read_text())
    return table["regions"].get(region, {}).get(instance_type), table["as_of"]


@dataclass
class LaunchSpec:
    """What to launch (the ``ec2`` target's spec says it in the profile)."""

    name: str
    instance_type: str = "t3.medium"
    ami: str | None = None
    ssm_parameter: str = UBUNTU_SSM
    public_key: str = ""  # OpenSSH public key text
    ssh_port: int = 22
    agent_port: int | None = None  # admitted too when the agent is exposed
    allowed_cidr: str | None = None  # default: the caller's address /32
    elastic_ip: bool = False
    volume_gb: int = 30
    subnet_id: str | None = None


@dataclass
class Instance:
    """A launched instance and everything created with it (for teardown and the manifest)."""

    instance_id: str
    region: str
    instance_type: str
    ami: str
    key_name: str
    security_group_id: str
    public_ip: str | None
    private_ip: str | None
    allocation_id: str | None = None
    launch_s: float = 0.0  # RunInstances until running (with the elastic IP attached)
    created: list[str] = field(default_factory=list)

    @property
    def address(self) -> str:
        return self.public_ip or self.private_ip or ""


class Ec2Lifecycle:
    """Launch, wait for and terminate the instances of one session."""

    def __init__(
        self,
        region: str,
        session_id: str,
        *,
        endpoint_url: str | None = None,
        ec2=None,
        ssm=None,
        caller: Callable[[], str] = caller_address,
        poll_s: float = 5.0,
        on_line: Callable[[str], None] | None = None,
    ):
        if ec2 is None or ssm is None:
            ec2, ssm = clients(region, endpoint_url)
        self.region, self.session_id = region, session_id
        self.ec2, self.ssm = ec2, ssm
        self.caller = caller
        self.poll_s = poll_s
        self.on_line = on_line or (lambda line: None)

    def _err(self, step: str, exc: Exception, hint: str = "") -> TargetError:
        code = getattr(exc, "response", {}).get("Error", {}).get("Code", "") if hasattr(exc, "response") else ""
        if code in ("UnauthorizedOperation", "AuthFailure", "AccessDenied", "AccessDeniedException"):
            hint = hint or "the AWS credentials lack an EC2 permission: see docs/remote.md for the policy"
        return TargetError(f"ec2 {self.region}", step, str(exc), hint)

    def resolve_ami(self, spec: LaunchSpec) -> str:
        if spec.ami:
            return spec.ami
        try:
            return self.ssm.get_parameter(Name=spec.ssm_parameter)["Parameter"]["Value"]
        except Exception as exc:  # noqa: BLE001 - botocore raises ClientError subclasses
            raise self._err("find the AMI", exc, f"check ssm_parameter ({spec.ssm_parameter}) or set ami") from None

    def launch(self, spec: LaunchSpec) -> Instance:
        """Key pair, security group, instance (and elastic IP); waits until running. Cleans up what it made on error."""
        made: list[tuple[str, str]] = []
        name = f"perfdesk-{self.session_id}-{spec.name}"
        try:
            ami = self.resolve_ami(spec)
            key_name = name
            self.ec2.import_key_pair(
                KeyName=key_name,
                PublicKeyMaterial=spec.public_key.encode(),
                TagSpecifications=tag_spec("key-pair", self.session_id, name),
            )
            made.append(("key", key_name))
            cidr = spec.allowed_cidr or f"{self.caller()}/32"
            sg_args: dict[str, Any] = {}
            vpc_id = self._vpc(spec.subnet_id)
            if vpc_id:
                sg_args["VpcId"] = vpc_id
            sg = self.ec2.create_security_group(
                GroupName=name,
                Description=f"perfdesk session {self.session_id}: SSH and agent from {cidr}",
                TagSpecifications=tag_spec("security-group", self.session_id, name),
                **sg_args,
            )["GroupId"]
            made.append(("sg", sg))
            ports = [spec.ssh_port] + ([spec.agent_port] if spec.agent_port else [])
            self.ec2.authorize_security_group_ingress(
                GroupId=sg,
                IpPermissions=[
                    {
                        "IpProtocol": "tcp",
                        "FromPort": p,
                        "ToPort": p,
                        "IpRanges": [{"CidrIp": cidr, "Description": "perfdesk caller"}],
                    }
                    for p in ports
                ],
            )
            self.on_line(f"security group {sg} admits tcp {', '.join(map(str, ports))} from {cidr} only")
            run_args: dict[str, Any] = dict(
                ImageId=ami,
                InstanceType=spec.instance_type,
                KeyName=key_name,
                MinCount=1,
                MaxCount=1,
                SecurityGroupIds=[sg],
                TagSpecifications=tag_spec("instance", self.session_id, name)
                + tag_spec("volume", self.session_id, name),
                BlockDeviceMappings=[
                    {
                        "DeviceName": "/dev/sda1",
                        "Ebs": {"VolumeSize": spec.volume_gb, "VolumeType": "gp3", "DeleteOnTermination": True},
                    }
                ],
            )
            if spec.subnet_id:
                run_args["SubnetId"] = spec.subnet_id
            t0 = time.monotonic()
            inst = self.ec2.run_instances(**run_args)["Instances"][0]
            iid = inst["InstanceId"]
            made.append(("instance", iid))
            self.on_line(f"launched {iid} ({spec.instance_type}, {ami}); waiting for it to run")
            self.ec2.get_waiter("instance_running").wait(
                InstanceIds=[iid], WaiterConfig={"Delay": self.poll_s, "MaxAttempts": max(1, int(600 / self.poll_s))}
            )
            alloc = None
            if spec.elastic_ip:
                addr = self.ec2.allocate_address(
                    Domain="vpc", TagSpecifications=tag_spec("elastic-ip", self.session_id, name)
                )
                alloc = addr["AllocationId"]
                made.append(("eip", alloc))
                self.ec2.associate_address(AllocationId=alloc, InstanceId=iid)
                self.on_line(f"elastic IP {addr['PublicIp']} attached")
            desc = self.ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
            launch_s = time.monotonic() - t0
        except TargetError:
            self._undo(made)
            raise
        except Exception as exc:  # noqa: BLE001 - botocore's errors, waiter errors
            self._undo(made)
            raise self._err(
                "launch " + spec.instance_type, exc, "check the region, instance type, AMI and your EC2 limits"
            ) from None
        return Instance(
            instance_id=iid,
            region=self.region,
            instance_type=spec.instance_type,
            ami=ami,
            key_name=key_name,
            security_group_id=sg,
            public_ip=desc.get("PublicIpAddress"),
            private_ip=desc.get("PrivateIpAddress"),
            allocation_id=alloc,
            launch_s=launch_s,
            created=[f"{k} {v}" for k, v in made],
        )

    def _vpc(self, subnet_id: str | None) -> str | None:
        if subnet_id:
            return self.ec2.describe_subnets(SubnetIds=[subnet_id])["Subnets"][0]["VpcId"]
        vpcs = self.ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"]
        return vpcs[0]["VpcId"] if vpcs else None

    def _undo(self, made: list[tuple[str, str]]) -> None:
        """Remove what a failed launch created, newest first; errors here are reported, not raised."""
        for kind, ident in reversed(made):
            try:
                if kind == "instance":
                    self.terminate_instances([ident])
                elif kind == "eip":
                    self.ec2.release_address(AllocationId=ident)
                elif kind == "sg":
                    self.ec2.delete_security_group(GroupId=ident)
                elif kind == "key":
                    self.ec2.delete_key_pair(KeyName=ident)
            except Exception as exc:  # noqa: BLE001
                self.on_line(
                    f"could not remove {kind} {ident} after the failed launch: {exc}; "
                    f"run `perfdesk teardown {self.session_id}`"
                )

    def destroy(self, inst: Instance) -> list[str]:
        """Terminate one instance and remove what was made with it; returns what was removed."""
        removed = []
        self.terminate_instances([inst.instance_id])
        removed.append(f"instance {inst.instance_id}")
        if inst.allocation_id:
            self.ec2.release_address(AllocationId=inst.allocation_id)
            removed.append(f"elastic IP {inst.allocation_id}")
        self.ec2.delete_security_group(GroupId=inst.security_group_id)
        removed.append(f"security group {inst.security_group_id}")
        self.ec2.delete_key_pair(KeyName=inst.key_name)
        removed.append(f"key pair {inst.key_name}")
        return removed

    def terminate_instances(self, ids: list[str]) -> None:
        if not ids:
            return
        self.ec2.terminate_instances(InstanceIds=ids)
        self.ec2.get_waiter("instance_terminated").wait(
            InstanceIds=ids, WaiterConfig={"Delay": self.poll_s, "MaxAttempts": max(1, int(600 / self.poll_s))}
        )


def wait_for_ssh(host: str, port: int = 22, timeout: float = 300.0, cancel=None) -> float:
    """Wait until an SSH banner answers on host:port; returns the seconds waited."""
    t0 = time.monotonic()
    last = ""
    while time.monotonic() - t0 < timeout:
        if cancel is not None and cancel.is_set():
            raise TargetError(host, "wait for SSH", "cancelled")
        try:
            with socket.create_connection((host, port), timeout=5) as s:
                s.settimeout(5)
                if s.recv(16).startswith(b"SSH-"):
                    return time.monotonic() - t0
        except OSError as exc:
            last = str(exc)
        time.sleep(1.0)
    raise TargetError(
        host,
        "wait for SSH",
        f"no SSH banner on port {port} within {timeout:.0f} s ({last})",
        "check the security group admits your address and the AMI runs sshd",
    )


def read_public_key(path: str) -> str:
    p = Path(path).expanduser()
    try:
        text = p.read_text().strip()
    except OSError as exc:
        raise TargetError(
            "ec2",
            "read the public key",
            str(exc),
            "set public_key to your OpenSSH public key file (ssh-keygen -t ed25519 makes one)",
        ) from None
    if not text.startswith(("ssh-ed25519 ", "ssh-rsa ", "ecdsa-sha2-")):
        raise TargetError(
            "ec2", "read the public key", f"{p} is not an OpenSSH public key", "give the .pub file, not the private key"
        )
    return text
