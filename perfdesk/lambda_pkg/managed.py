"""Lambda Managed Instances for the function targets: a ``managed_instances`` table on a ``lambda`` or
``local-lambda`` target runs its function on EC2 capacity that a capacity provider manages.

Why a table and not a target kind: on AWS it is the same function (code, layers, role) with a
``CapacityProviderConfig``, deployed and invoked through the same API; only where it runs, how it scales and how it
is billed change. So the table sits next to ``memory_mb`` and ``snapstart`` and everything else of the function
targets applies.

Deploy, through boto3: the network (on AWS a VPC, a subnet and a security group created through EC2, unless the
table names subnets and security groups; on the emulator the same calls go to the local moto server, or ids are
made up where none runs), the operator role (AWS's managed policy ``AWSLambdaManagedEC2ResourceOperator``; on the
emulator a stand-in ARN), the capacity provider, the function with ``CapacityProviderConfig`` (memory per vCPU,
maximum concurrency per environment), then PublishVersion, waiting until the version is Active (its environments
have run their init). Invocations name that version. Every resource is written to the session's ledger before it
is created and removed at teardown (the function first, then the capacity provider, the network and the role), or
by ``perfdesk teardown`` after a crash (:func:`sweep`).

Instances are the unit of scale and of cost: the target's facts carry the instance type, its vCPUs and price, the
environments per instance, the management fee and the minimum instances, which the verdict prices
(:mod:`perfdesk.verdict.paradigms`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

#: Lambda Managed Instances' Python runtimes.
MANAGED_PYTHON = ("3.13", "3.14")
OPERATOR_POLICY = "arn:aws:iam::aws:policy/AWSLambdaManagedEC2ResourceOperator"
#: vCPUs of the instance types the price table knows (instances are the unit of scale).
INSTANCE_VCPUS = {
    "m7i.large": 2,
    "m7i.xlarge": 4,
    "m7g.large": 2,
    "m7g.xlarge": 4,
    "c7i.large": 2,
    "c7i.xlarge": 4,
    "c7g.large": 2,
    "c7g.xlarge": 4,
    "r7i.large": 2,
    "r7g.large": 2,
}
#: AWS keeps three instances (one per Availability Zone) for a published version by default.
DEFAULT_MIN_INSTANCES = 3
LOCAL_OPERATOR_ROLE = "arn:aws:iam::123456789012:role/perfdesk-local-capacity-operator"


class ManagedInstancesSpec(BaseModel):
    """Lambda Managed Instances: the function runs on EC2 instances a capacity provider manages."""

    model_config = ConfigDict(extra="forbid")

    instance_type: str = Field(
        "m7i.large", description="EC2 instance type the capacity provider may use (the unit of scale and cost)."
    )
    max_concurrency: int | None = Field(
        None,
        ge=1,
        le=1600,
        description="Requests one execution environment serves at once (Python: that many worker processes, each "
        "with its own init); default Lambda's: 16 per vCPU.",
    )
    memory_gib_per_vcpu: float = Field(2.0, ge=2.0, le=8.0, description="Memory per vCPU of an environment (GiB).")
    max_vcpus: int | None = Field(None, ge=2, le=15000, description="Most vCPUs the capacity provider scales to.")
    target_utilisation: float | None = Field(
        None, gt=0, le=100, description="CPU utilisation the provider scales to hold, in % (default: AWS's)."
    )
    min_instances: int = Field(
        DEFAULT_MIN_INSTANCES, ge=1, description="Instances always running (AWS's default: 3, one per zone)."
    )
    subnet_ids: list[str] = Field(default_factory=list, description="Subnets (default: a VPC the session creates).")
    security_group_ids: list[str] = Field(
        default_factory=list, description="Security groups (default: one the session creates)."
    )
    operator_role_arn: str | None = Field(
        None, description="The capacity provider's operator role (default: one the session creates)."
    )


def check_python(target: str, python: str) -> None:
    from perfdesk.controllers.target import TargetError

    if python not in MANAGED_PYTHON:
        raise TargetError(
            target,
            "managed instances",
            f"Lambda Managed Instances runs Python {' and '.join(MANAGED_PYTHON)} and later, not {python}",
            'set python = "3.13" on the target',
        )


class ManagedInstances:
    """The capacity provider and network of one function target, and its published version."""

    def __init__(
        self,
        spec: ManagedInstancesSpec,
        *,
        name: str,
        session_id: str,
        lam,
        ec2=None,
        iam=None,
        ledger,
        tags: dict[str, str],
        architecture: str,
        say: Callable[[str], None],
        local: bool = False,
    ):
        self.spec, self.name, self.session_id = spec, name, session_id
        self.lam, self.ec2, self.iam = lam, ec2, iam
        self.ledger, self.tags, self.architecture, self.say, self.local = ledger, tags, architecture, say, local
        self.provider_name = f"perfdesk-{name}-{session_id}"[:140].replace(".", "-")
        self.provider_arn: str | None = None
        self.version: str | None = None
        self.created: dict[str, str] = {}  # what this session created: vpc, subnet, security_group, role
        self.facts: dict[str, Any] = {}

    # -- network and role ------------------------------------------------------------------------------------
    def _tag_spec(self, kind: str) -> list[dict]:
        return [{"ResourceType": kind, "Tags": [{"Key": k, "Value": v} for k, v in self.tags.items()]}]

    def _network(self) -> tuple[list[str], list[str]]:
        spec = self.spec
        if spec.subnet_ids:
            return list(spec.subnet_ids), list(spec.security_group_ids)
        if self.ec2 is None:  # an emulator with no local EC2: it records the ids and checks none
            return ["subnet-0perfdesk0local"], ["sg-0perfdesk0local"]
        where = {"ec2_endpoint": self.ec2.meta.endpoint_url} if self.local else {}
        self.ledger.add("ec2-vpc", name=self.provider_name, **where)
        vpc = self.ec2.create_vpc(CidrBlock="10.42.0.0/16", TagSpecifications=self._tag_spec("vpc"))["Vpc"]["VpcId"]
        self.created["vpc"] = vpc
        self.ledger.add("ec2-vpc", vpc=vpc, **where)
        subnet = self.ec2.create_subnet(VpcId=vpc, CidrBlock="10.42.0.0/20", TagSpecifications=self._tag_spec("subnet"))
        self.created["subnet"] = subnet["Subnet"]["SubnetId"]
        self.ledger.add("ec2-subnet", subnet=self.created["subnet"], vpc=vpc, **where)
        sg = self.ec2.create_security_group(
            GroupName=self.provider_name[:255],
            Description="perfdesk managed instances (no inbound)",
            VpcId=vpc,
            TagSpecifications=self._tag_spec("security-group"),
        )["GroupId"]
        self.created["security_group"] = sg
        self.ledger.add("ec2-security-group", group=sg, vpc=vpc, **where)
        self.say(f"created VPC {vpc}, subnet {self.created['subnet']} and security group {sg}")
        return [self.created["subnet"]], list(spec.security_group_ids) or [sg]

    def _operator_role(self) -> str:
        if self.spec.operator_role_arn:
            return self.spec.operator_role_arn
        if self.local or self.iam is None:
            return LOCAL_OPERATOR_ROLE
        import json

        from perfdesk.lambda_pkg.functions import ROLE_PATH

        role = f"perfdesk-cp-{self.session_id}"[:64]
        self.ledger.add("role", name=role)
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
            ],
        }
        arn = self.iam.create_role(
            RoleName=role,
            Path=ROLE_PATH,
            AssumeRolePolicyDocument=json.dumps(trust),
            Description="perfdesk capacity provider operator role",
            Tags=[{"Key": k, "Value": v} for k, v in self.tags.items()],
        )["Role"]["Arn"]
        self.iam.attach_role_policy(RoleName=role, PolicyArn=OPERATOR_POLICY)
        self.created["role"] = role
        self.say(f"created operator role {role}")
        return arn

    # -- capacity provider -----------------------------------------------------------------------------------
    def create_provider(self, wait_timeout_s: float = 600.0) -> str:
        subnets, groups = self._network()
        role = self._operator_role()
        spec = self.spec
        scaling: dict[str, Any] = {"ScalingMode": "Auto"}
        if spec.max_vcpus:
            scaling["MaxVCpuCount"] = spec.max_vcpus
        if spec.target_utilisation:
            scaling = {
                "ScalingMode": "Manual",
                **({"MaxVCpuCount": spec.max_vcpus} if spec.max_vcpus else {}),
                "ScalingPolicies": [
                    {
                        "PredefinedMetricType": "LambdaCapacityProviderAverageCPUUtilization",
                        "TargetValue": spec.target_utilisation,
                    }
                ],
            }
        self.ledger.add("capacity-provider", name=self.provider_name)
        cp = self.lam.create_capacity_provider(
            CapacityProviderName=self.provider_name,
            VpcConfig={"SubnetIds": subnets, "SecurityGroupIds": groups},
            PermissionsConfig={"CapacityProviderOperatorRoleArn": role},
            InstanceRequirements={"Architectures": [self.architecture], "AllowedInstanceTypes": [spec.instance_type]},
            CapacityProviderScalingConfig=scaling,
            Tags=self.tags,
        )["CapacityProvider"]
        self.provider_arn = cp["CapacityProviderArn"]
        deadline = time.monotonic() + wait_timeout_s
        while cp.get("State") == "Pending" and time.monotonic() < deadline:
            time.sleep(2)
            cp = self.lam.get_capacity_provider(CapacityProviderName=self.provider_name)["CapacityProvider"]
        if cp.get("State") != "Active":
            raise RuntimeError(f"capacity provider {self.provider_name} is {cp.get('State')}")
        self.say(f"created capacity provider {self.provider_name} ({spec.instance_type})")
        return self.provider_arn

    def function_config(self) -> dict[str, Any]:
        """The function's CapacityProviderConfig."""
        assert self.provider_arn is not None
        lmi: dict[str, Any] = {
            "CapacityProviderArn": self.provider_arn,
            "ExecutionEnvironmentMemoryGiBPerVCpu": self.spec.memory_gib_per_vcpu,
        }
        if self.spec.max_concurrency:
            lmi["PerExecutionEnvironmentMaxConcurrency"] = self.spec.max_concurrency
        return {"LambdaManagedInstancesCapacityProviderConfig": lmi}

    def publish(self, function: str, wait_timeout_s: float = 900.0) -> str:
        """Publish a version and wait until it is Active (its environments have run their init); returns it."""
        t0 = time.monotonic()
        cfg = self.lam.publish_version(FunctionName=function, Description=f"perfdesk session {self.session_id}")
        version = str(cfg["Version"])
        deadline = t0 + wait_timeout_s
        while cfg.get("State") == "Pending" and time.monotonic() < deadline:
            time.sleep(0.2 if self.local else 2.0)
            cfg = self.lam.get_function_configuration(FunctionName=function, Qualifier=version)
        if cfg.get("State") != "Active":
            raise RuntimeError(f"version {version} of {function} is {cfg.get('State')}: {cfg.get('StateReason', '')}")
        self.version = version
        self.facts["publish_to_active_ms"] = round((time.monotonic() - t0) * 1000.0, 1)
        self.say(f"published version {version}: Active after {self.facts['publish_to_active_ms'] / 1000:.1f} s")
        return version

    def describe(self, memory_mb: int) -> dict[str, Any]:
        """Facts for the manifest: what an environment and an instance hold (the verdict prices them)."""
        spec = self.spec
        env_vcpus = max(1.0, memory_mb / 1024.0 / spec.memory_gib_per_vcpu)
        instance_vcpus = INSTANCE_VCPUS.get(spec.instance_type)
        return {
            "capacity_provider": self.provider_name,
            "capacity_provider_arn": self.provider_arn,
            "instance_type": spec.instance_type,
            "instance_vcpus": instance_vcpus,
            "environment_vcpus": env_vcpus,
            "environments_per_instance": (max(1, math.floor(instance_vcpus / env_vcpus)) if instance_vcpus else None),
            "max_concurrency_per_environment": spec.max_concurrency or math.floor(16 * env_vcpus),
            "memory_gib_per_vcpu": spec.memory_gib_per_vcpu,
            "min_instances": spec.min_instances,
            "version": self.version,
            **self.facts,
        }

    # -- teardown --------------------------------------------------------------------------------------------
    def teardown(self) -> list[str]:
        """Delete the capacity provider (after the function), then the network and the role this session made."""
        removed = []
        if self.provider_arn is not None:
            removed += delete_provider(self.lam, self.provider_name)
            self.provider_arn = None
        removed += delete_network(self.ec2, self.created)
        if self.created.get("role") and self.iam is not None:
            from perfdesk.lambda_pkg.functions import delete_role

            delete_role(self.iam, self.created.pop("role"))
            removed.append("operator role")
        for line in removed:
            self.say(f"deleted {line}")
        return removed


def delete_provider(lam, name: str, wait_s: float = 120.0) -> list[str]:
    """Delete a capacity provider, retrying while AWS still counts the deleted function's versions on it."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            lam.delete_capacity_provider(CapacityProviderName=name)
            return [f"capacity provider {name}"]
        except lam.exceptions.ResourceNotFoundException:
            return []
        except lam.exceptions.ResourceConflictException:
            if time.monotonic() > deadline:
                raise
            time.sleep(3)


def delete_network(ec2, created: dict[str, str]) -> list[str]:
    removed: list[str] = []
    if ec2 is None:
        return removed
    for key, call, arg in (
        ("security_group", "delete_security_group", "GroupId"),
        ("subnet", "delete_subnet", "SubnetId"),
        ("vpc", "delete_vpc", "VpcId"),
    ):
        ident = created.pop(key, None)
        if ident:
            getattr(ec2, call)(**{arg: ident})
            removed.append(f"{key.replace('_', ' ')} {ident}")
    return removed


def sweep(lam, ec2_for: Callable[[str | None], Any], entries: list[dict], session_id: str | None) -> list[str]:
    """``perfdesk teardown``: the capacity providers and network the ledger names (after the functions went).
    ``ec2_for(endpoint)``: an EC2 client for the endpoint a local target recorded (None: AWS's configuration), or
    None where EC2 must not be reached."""
    removed = []
    for e in entries:
        if e.get("type") == "capacity-provider" and lam is not None:
            removed += delete_provider(lam, e["name"])
    network = [e for e in entries if str(e.get("type", "")).startswith("ec2-")]
    ec2 = ec2_for(next((e.get("ec2_endpoint") for e in network if e.get("ec2_endpoint")), None)) if network else None
    if ec2 is not None:
        for kind, key, call, arg in (
            ("ec2-security-group", "group", "delete_security_group", "GroupId"),
            ("ec2-subnet", "subnet", "delete_subnet", "SubnetId"),
            ("ec2-vpc", "vpc", "delete_vpc", "VpcId"),
        ):
            for e in entries:
                if e.get("type") == kind and e.get(key):
                    try:
                        getattr(ec2, call)(**{arg: e[key]})
                        removed.append(f"{kind[4:]} {e[key]}")
                    except Exception as exc:  # gone already is fine
                        if "NotFound" not in str(exc):
                            raise
    return removed
