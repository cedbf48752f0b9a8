"""Lambda Managed Instances on the emulator: capacity providers, a function's ``CapacityProviderConfig``, published
versions, and managed execution environments that serve many requests at once.

The API is Lambda's (botocore's ``2025-11-30`` operations): CreateCapacityProvider, GetCapacityProvider,
ListCapacityProviders, UpdateCapacityProvider, DeleteCapacityProvider, ListFunctionVersionsByCapacityProvider, with
AWS's shapes and errors; CreateFunction / UpdateFunctionConfiguration take ``CapacityProviderConfig``; PublishVersion
publishes a version (of any function) and, for a function on a capacity provider, starts its environments: the
version is ``Pending`` until they have run their init, then ``Active``.

A managed environment runs Python as Lambda does on Managed Instances: ``PerExecutionEnvironmentMaxConcurrency``
worker processes (default 16 per vCPU), each with its own init, each serving one request at a time; the environment
takes that many requests at once. Every init runs when the environment starts, so no request has a cold start
(REPORT lines carry no Init Duration). Scaling is on utilisation and asynchronous: when the share of busy workers
reaches the scaling policy's target (50 % by default) another environment starts in the background, up to the
provider's ``MaxVCpuCount``; a request that finds every worker busy is throttled (429), as on AWS when traffic
outgrows the capacity faster than it scales. Environments idle longer than the emulator's ``idle_s`` are reclaimed
down to the minimum (the emulator's ``managed_min_environments``: 1, where AWS keeps 3 across Availability Zones).

Where this differs from AWS, on purpose: no EC2 instances are started (the VPC, subnets and security groups are
recorded, not checked); each worker may use up to the function's memory (AWS limits the environment's total), and
the workers of one environment do not share a /tmp.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from perfdesk.lambda_pkg.emulator.environment import ExecutionEnvironment
from perfdesk.lambda_pkg.emulator.store import ACCOUNT_ID, ApiError, FunctionRecord, invalid, not_found, now_iso

if TYPE_CHECKING:
    from perfdesk.lambda_pkg.emulator.server import Emulator

log = logging.getLogger(__name__)

#: Runtimes Lambda Managed Instances runs (Python 3.13 and later).
MANAGED_RUNTIMES = ("python3.13", "python3.14")
#: Python's default PerExecutionEnvironmentMaxConcurrency: 16 per vCPU.
PYTHON_CONCURRENCY_PER_VCPU = 16
DEFAULT_GIB_PER_VCPU = 2.0
MIN_MEMORY_MB = 2048
DEFAULT_TARGET_UTILISATION = 50.0
#: Init phase limit of a managed environment: the longer of 130 s and the function's timeout.
MIN_INIT_TIMEOUT_S = 130.0
_NAME_RX = re.compile(r"^[a-zA-Z0-9-_]{1,140}$")

#: botocore's request URIs of the capacity-provider operations and PublishVersion (method, path, handler).
ROUTES = [
    ("POST", r"/2025-11-30/capacity-providers/?", "capacity_create"),
    ("GET", r"/2025-11-30/capacity-providers/?", "capacity_list"),
    ("GET", r"/2025-11-30/capacity-providers/(?P<cp>[^/]+)/function-versions", "capacity_versions"),
    ("GET", r"/2025-11-30/capacity-providers/(?P<cp>[^/]+)", "capacity_get"),
    ("PUT", r"/2025-11-30/capacity-providers/(?P<cp>[^/]+)", "capacity_update"),
    ("DELETE", r"/2025-11-30/capacity-providers/(?P<cp>[^/]+)", "capacity_delete"),
]


def _validation(field_name: str, value: Any, constraint: str) -> ApiError:
    return ApiError(
        400,
        "ValidationException",
        f"1 validation error detected: Value '{value}' at '{field_name}' failed to satisfy constraint: {constraint}",
    )


@dataclass
class CapacityProvider:
    name: str
    arn: str
    vpc: dict
    permissions: dict
    instance_requirements: dict = field(default_factory=dict)
    scaling: dict = field(default_factory=dict)
    kms_key_arn: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    propagate_tags: dict | None = None
    telemetry: dict | None = None
    state: str = "Active"
    last_modified: str = field(default_factory=now_iso)

    def to_api(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "CapacityProviderArn": self.arn,
            "State": self.state,
            "VpcConfig": self.vpc,
            "PermissionsConfig": self.permissions,
            "InstanceRequirements": self.instance_requirements
            or {"Architectures": ["x86_64"], "AllowedInstanceTypes": [], "ExcludedInstanceTypes": []},
            "CapacityProviderScalingConfig": self.scaling or {"ScalingMode": "Auto"},
            "LastModified": self.last_modified,
        }
        if self.kms_key_arn:
            out["KmsKeyArn"] = self.kms_key_arn
        if self.propagate_tags:
            out["PropagateTags"] = self.propagate_tags
        if self.telemetry:
            out["TelemetryConfig"] = self.telemetry
        return out

    @property
    def max_vcpus(self) -> int | None:
        value = self.scaling.get("MaxVCpuCount")
        return int(value) if value else None

    @property
    def target_utilisation(self) -> float:
        for policy in self.scaling.get("ScalingPolicies") or []:
            if policy.get("PredefinedMetricType") == "LambdaCapacityProviderAverageCPUUtilization":
                return float(policy.get("TargetValue") or DEFAULT_TARGET_UTILISATION)
        return DEFAULT_TARGET_UTILISATION


@dataclass
class PublishedVersion:
    function: str
    version: str
    config: dict  # GetFunctionConfiguration's answer for the version
    record: FunctionRecord  # the function's record as it was when published
    pool: ManagedPool | None = None


def managed_settings(cfg: dict) -> tuple[float, int, float]:
    """(GiB per vCPU, worker processes per environment, vCPUs per environment) of a CapacityProviderConfig and the
    function's memory (``cfg`` holds ``MemorySize`` and ``LambdaManagedInstancesCapacityProviderConfig``)."""
    lmi = cfg["LambdaManagedInstancesCapacityProviderConfig"]
    ratio = float(lmi.get("ExecutionEnvironmentMemoryGiBPerVCpu") or DEFAULT_GIB_PER_VCPU)
    vcpus = max(1.0, cfg["MemorySize"] / 1024.0 / ratio)
    workers = int(lmi.get("PerExecutionEnvironmentMaxConcurrency") or math.floor(PYTHON_CONCURRENCY_PER_VCPU * vcpus))
    return ratio, workers, vcpus


class ManagedEnvironment:
    """One execution environment of a managed function version: its worker processes (one request each)."""

    def __init__(self, pool: ManagedPool):
        self.pool = pool
        self.env_id = f"env-{uuid.uuid4().hex[:10]}"
        self.log_stream = time.strftime("%Y/%m/%d/", time.gmtime()) + f"[{pool.version}]" + uuid.uuid4().hex
        self.workers: list[ExecutionEnvironment] = []
        self.init_ms: list[float] = []
        self.last_busy = time.monotonic()
        self.ready = False

    @property
    def busy(self) -> int:
        return sum(1 for w in self.workers if w.state == "busy" or w.claimed)


class ManagedPool:
    """The environments of one published version on a capacity provider; thread-safe under the emulator's lock."""

    def __init__(self, capacity: Capacity, published: PublishedVersion, provider: CapacityProvider):
        self.capacity = capacity
        self.emu = capacity.emu
        self.published = published
        self.provider = provider
        self.version = published.version
        fn = published.record
        cfg = {"MemorySize": fn.memory, **(fn.capacity_provider_config or {})}
        self.gib_per_vcpu, self.workers_per_env, self.vcpus_per_env = managed_settings(cfg)
        self.max_envs = self.emu.managed_max_environments
        if provider.max_vcpus:
            self.max_envs = max(1, min(self.max_envs, int(provider.max_vcpus // self.vcpus_per_env)))
        self.min_envs = min(self.emu.managed_min_environments, self.max_envs)
        self.environments: list[ManagedEnvironment] = []
        self.starting = 0
        self.stopped = False
        self.stats = {"environments_started": 0, "throttles": 0, "scale_ups": 0, "scale_downs": 0}
        self.init_timeout_s = max(MIN_INIT_TIMEOUT_S, float(fn.timeout))

    # -- environments ----------------------------------------------------------------------------------------
    def _worker(self, env: ManagedEnvironment) -> ExecutionEnvironment:
        fn = self.published.record
        runtime = self.emu.runtimes.get(fn.runtime)
        snap = replace(self.emu._snapshot(fn), version=self.version, revision=-1)
        worker = ExecutionEnvironment(
            snap,
            self.emu.work_dir / "envs",
            runtime,
            self.emu.isolation,
            self.emu.limiter,
            self.emu.memory_limiter,
            self.emu._spawn,
            on_dead=lambda w: self._worker_dead(env, w),
            init_timeout_s=self.init_timeout_s,
        )
        worker.log_stream = env.log_stream
        worker.init_type = "lambda-managed-instances"
        worker.extra_env = {"AWS_LAMBDA_MAX_CONCURRENCY": str(self.workers_per_env)}
        worker.managed_env = env  # type: ignore[attr-defined]
        worker.claimed = False
        return worker

    def start_environment(self) -> ManagedEnvironment:
        """Start one environment and run every worker's init (blocking); raise ApiError if the init fails."""
        env = ManagedEnvironment(self)
        workers = [self._worker(env) for _ in range(self.workers_per_env)]
        env.workers = list(workers)
        results: list[tuple[str, float, str]] = [("", 0.0, "")] * len(workers)

        def boot(i: int) -> None:
            results[i] = workers[i].prewarm(self.init_timeout_s)

        threads = [threading.Thread(target=boot, args=(i,), daemon=True) for i in range(len(workers))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if self.stopped or self.capacity.stopping:  # deleted while it started
            for w in workers:
                w.kill("version deleted")
            return env
        failed = [(r, w) for r, w in zip(results, workers, strict=True) if r[0] != "ok"]
        if self.emu.log_sink:
            text = workers[0].runtime_version_line() + "".join(r[2] for r in results)
            self.emu.log_sink(self.published.function, text)
        if failed:
            for w in workers:
                w.kill("init failed")
            (outcome, _, output), _ = failed[0]
            detail = output.strip().splitlines()[-1] if output.strip() else outcome
            raise ApiError(502, "ServiceException", f"the environment's init phase ended in {outcome}: {detail}")
        env.init_ms = [r[1] for r in results]
        env.ready = True
        with self.emu._lock:
            self.environments.append(env)
            self.stats["environments_started"] += 1
        return env

    def _worker_dead(self, env: ManagedEnvironment, worker: ExecutionEnvironment) -> None:
        """A worker ended (timeout, out of memory, a crash): Lambda replaces it; so does the emulator, in the
        background, with its own init."""
        with self.emu._lock:
            if worker in env.workers:
                env.workers.remove(worker)
            retired = env not in self.environments or self.capacity.stopping
        if retired:
            return

        def replace_worker() -> None:
            fresh = self._worker(env)
            outcome, _, _ = fresh.prewarm(self.init_timeout_s)
            with self.emu._lock:
                if outcome == "ok" and env in self.environments and not self.capacity.stopping:
                    env.workers.append(fresh)
                    return
            fresh.kill("environment retired")

        threading.Thread(target=replace_worker, name="managed-replace", daemon=True).start()

    def _scale_up_async(self) -> None:
        with self.emu._lock:
            if len(self.environments) + self.starting >= self.max_envs:
                return
            self.starting += 1
            self.stats["scale_ups"] += 1

        def run() -> None:
            try:
                self.start_environment()
            except ApiError as exc:
                if self.stopped:
                    return
                log.warning("managed scale-up of %s:%s failed: %s", self.published.function, self.version, exc.message)
            finally:
                with self.emu._lock:
                    self.starting -= 1

        threading.Thread(target=run, name="managed-scale-up", daemon=True).start()

    # -- requests --------------------------------------------------------------------------------------------
    def acquire(self) -> ExecutionEnvironment:
        """An idle worker of the least busy environment; 429 when every worker is busy. Scales up asynchronously
        when the busy share reaches the provider's target utilisation."""
        with self.emu._lock:
            envs = [e for e in self.environments if e.ready]
            capacity = sum(len(e.workers) for e in envs)
            chosen = None
            for env in sorted(envs, key=lambda e: e.busy):
                idle = [w for w in env.workers if w.state == "idle" and not w.claimed]
                if idle:
                    chosen = idle[0]
                    chosen.claimed = True
                    env.last_busy = time.monotonic()
                    break
            busy = sum(e.busy for e in envs)
            utilisation = 100.0 * busy / capacity if capacity else 100.0
            if chosen is None:
                self.stats["throttles"] += 1
                self.emu.stats["throttles"] += 1
        if utilisation > self.provider.target_utilisation:
            self._scale_up_async()
        if chosen is None:
            raise ApiError(
                429,
                "TooManyRequestsException",
                "Rate Exceeded.",
                {"Reason": "ConcurrentInvocationLimitExceeded"},
            )
        return chosen

    def release(self, worker: ExecutionEnvironment) -> None:
        with self.emu._lock:
            worker.claimed = False
            worker.managed_env.last_busy = time.monotonic()  # type: ignore[attr-defined]

    def reap(self, idle_s: float) -> None:
        """Retire environments idle longer than ``idle_s``, keeping the minimum."""
        now = time.monotonic()
        with self.emu._lock:
            idle = [e for e in self.environments if e.busy == 0 and now - e.last_busy > idle_s]
            doomed = idle[: max(0, len(self.environments) - self.min_envs)]
            for env in doomed:
                self.environments.remove(env)
                self.stats["scale_downs"] += 1
        for env in doomed:
            for w in list(env.workers):
                w.kill("idle environment reclaimed")

    def stop(self) -> None:
        self.stopped = True
        with self.emu._lock:
            envs, self.environments = list(self.environments), []
        for env in envs:
            for w in list(env.workers):
                w.kill("version deleted")

    def pids(self) -> list[int]:
        with self.emu._lock:
            return [w.pid for e in self.environments for w in e.workers if w.pid and w.alive]

    def describe(self) -> dict[str, Any]:
        with self.emu._lock:
            return {
                "environments": len(self.environments),
                "workers_per_environment": self.workers_per_env,
                "vcpus_per_environment": self.vcpus_per_env,
                "memory_gib_per_vcpu": self.gib_per_vcpu,
                "min_environments": self.min_envs,
                "max_environments": self.max_envs,
                "target_utilisation": self.provider.target_utilisation,
                "init_ms": [round(ms, 2) for e in self.environments for ms in e.init_ms],
                **self.stats,
            }


class Capacity:
    """The emulator's capacity providers, published versions and managed pools."""

    def __init__(self, emu: Emulator):
        self.emu = emu
        self.providers: dict[str, CapacityProvider] = {}
        self.versions: dict[str, dict[str, PublishedVersion]] = {}
        self.stopping = False
        self._reaper: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------------------
    def _ensure_reaper(self) -> None:
        if self._reaper is None:
            self._reaper = threading.Thread(target=self._reap_loop, name="emulator-managed-reaper", daemon=True)
            self._reaper.start()

    def _reap_loop(self) -> None:
        while not self.emu._stop.wait(0.5):
            for pool in self.pools():
                pool.reap(self.emu.idle_s)

    def pools(self) -> list[ManagedPool]:
        with self.emu._lock:
            return [v.pool for vs in self.versions.values() for v in vs.values() if v.pool is not None]

    def stop(self) -> None:
        self.stopping = True
        for pool in self.pools():
            pool.stop()

    def pids(self) -> list[int]:
        return [pid for pool in self.pools() for pid in pool.pids()]

    def describe(self) -> dict[str, Any]:
        with self.emu._lock:
            return {
                "capacity_providers": sorted(self.providers),
                "managed_versions": {
                    f"{fn}:{ver}": pv.pool.describe()
                    for fn, vs in self.versions.items()
                    for ver, pv in vs.items()
                    if pv.pool is not None
                },
            }

    # -- capacity providers ----------------------------------------------------------------------------------
    def _arn(self, name: str) -> str:
        return f"arn:aws:lambda:{self.emu.region}:{ACCOUNT_ID}:capacity-provider:{name}"

    def _name(self, ref: str) -> str:
        name = ref.rsplit(":", 1)[-1] if ref.startswith("arn:") else ref
        if not _NAME_RX.match(name):
            raise _validation("capacityProviderName", ref, "Member must satisfy regular expression pattern")
        return name

    def provider(self, ref: str) -> CapacityProvider:
        name = self._name(ref)
        with self.emu._lock:
            cp = self.providers.get(name)
        if cp is None:
            raise ApiError(
                404, "ResourceNotFoundException", f"Capacity provider not found: {self._arn(name)}", {"Type": "User"}
            )
        return cp

    def create(self, body: dict) -> dict:
        name = body.get("CapacityProviderName") or ""
        if not name:
            raise invalid("CapacityProviderName is required")
        name = self._name(name)
        vpc = body.get("VpcConfig") or {}
        subnets, groups = vpc.get("SubnetIds") or [], vpc.get("SecurityGroupIds") or []
        if not subnets:
            raise invalid("VpcConfig.SubnetIds must name at least one subnet")
        for s in subnets:
            if not re.fullmatch(r"subnet-[0-9a-z]*", s):
                raise _validation("vpcConfig.subnetIds", s, "Member must satisfy regular expression pattern: subnet-")
        for g in groups:
            if not re.fullmatch(r"sg-[0-9a-zA-Z]*", g):
                raise _validation(
                    "vpcConfig.securityGroupIds", g, "Member must satisfy regular expression pattern: sg-"
                )
        perms = body.get("PermissionsConfig") or {}
        if not perms.get("CapacityProviderOperatorRoleArn"):
            raise invalid("PermissionsConfig.CapacityProviderOperatorRoleArn is required")
        req = dict(body.get("InstanceRequirements") or {})
        if req.get("AllowedInstanceTypes") and req.get("ExcludedInstanceTypes"):
            raise invalid("InstanceRequirements may name AllowedInstanceTypes or ExcludedInstanceTypes, not both.")
        scaling = dict(body.get("CapacityProviderScalingConfig") or {})
        self._check_scaling(scaling)
        cp = CapacityProvider(
            name=name,
            arn=self._arn(name),
            vpc={"SubnetIds": list(subnets), "SecurityGroupIds": list(groups)},
            permissions={"CapacityProviderOperatorRoleArn": perms["CapacityProviderOperatorRoleArn"]},
            instance_requirements={
                "Architectures": req.get("Architectures") or ["x86_64"],
                "AllowedInstanceTypes": req.get("AllowedInstanceTypes") or [],
                "ExcludedInstanceTypes": req.get("ExcludedInstanceTypes") or [],
            },
            scaling={"ScalingMode": scaling.get("ScalingMode", "Auto"), **scaling},
            kms_key_arn=body.get("KmsKeyArn"),
            tags=dict(body.get("Tags") or {}),
            propagate_tags=body.get("PropagateTags"),
            telemetry=body.get("TelemetryConfig"),
        )
        with self.emu._lock:
            if name in self.providers:
                raise ApiError(409, "ResourceConflictException", f"Capacity provider already exists: {cp.arn}")
            self.providers[name] = cp
        return {"CapacityProvider": cp.to_api()}

    @staticmethod
    def _check_scaling(scaling: dict) -> None:
        if scaling.get("ScalingMode") not in (None, "Auto", "Manual"):
            raise _validation(
                "capacityProviderScalingConfig.scalingMode",
                scaling["ScalingMode"],
                "Member must satisfy enum value set: [Auto, Manual]",
            )
        value = scaling.get("MaxVCpuCount")
        if value is not None and not 2 <= int(value) <= 15000:
            raise _validation(
                "capacityProviderScalingConfig.maxVCpuCount",
                value,
                "Member must have value between 2 and 15000, inclusive",
            )
        if scaling.get("ScalingMode") == "Manual" and not scaling.get("ScalingPolicies"):
            raise invalid("ScalingPolicies are required when ScalingMode is Manual.")

    def update(self, ref: str, body: dict) -> dict:
        cp = self.provider(ref)
        if "CapacityProviderScalingConfig" in body:
            scaling = dict(body["CapacityProviderScalingConfig"] or {})
            self._check_scaling(scaling)
            cp.scaling = {"ScalingMode": scaling.get("ScalingMode", "Auto"), **scaling}
        if "PropagateTags" in body:
            cp.propagate_tags = body["PropagateTags"]
        if "TelemetryConfig" in body:
            cp.telemetry = body["TelemetryConfig"]
        cp.last_modified = now_iso()
        return {"CapacityProvider": cp.to_api()}

    def _versions_on(self, cp: CapacityProvider) -> list[PublishedVersion]:
        with self.emu._lock:
            return [
                pv
                for vs in self.versions.values()
                for pv in vs.values()
                if (pv.record.capacity_provider_config or {})
                .get("LambdaManagedInstancesCapacityProviderConfig", {})
                .get("CapacityProviderArn")
                == cp.arn
            ]

    def _functions_on(self, cp: CapacityProvider) -> list[str]:
        with self.emu._lock:
            return [
                fn.name
                for fn in self.emu.functions.values()
                if (fn.capacity_provider_config or {})
                .get("LambdaManagedInstancesCapacityProviderConfig", {})
                .get("CapacityProviderArn")
                == cp.arn
            ]

    def delete(self, ref: str) -> dict:
        cp = self.provider(ref)
        users = self._functions_on(cp)
        if users:
            raise ApiError(
                409,
                "ResourceConflictException",
                f"Capacity provider {cp.arn} is in use by function(s) {', '.join(sorted(users))}; delete them first.",
            )
        with self.emu._lock:
            self.providers.pop(cp.name, None)
        cp.state = "Deleting"
        return {"CapacityProvider": cp.to_api()}

    def list(self, query: dict) -> dict:
        state = (query.get("State") or [None])[0]
        with self.emu._lock:
            cps = sorted(self.providers.values(), key=lambda c: c.name)
        if state:
            cps = [c for c in cps if c.state == state]
        start = int((query.get("Marker") or ["0"])[0] or 0)
        size = int((query.get("MaxItems") or ["50"])[0] or 50)
        out: dict[str, Any] = {"CapacityProviders": [c.to_api() for c in cps[start : start + size]]}
        if start + size < len(cps):
            out["NextMarker"] = str(start + size)
        return out

    def function_versions(self, ref: str) -> dict:
        cp = self.provider(ref)
        items = [{"FunctionArn": pv.config["FunctionArn"], "State": pv.config["State"]} for pv in self._versions_on(cp)]
        return {"CapacityProviderArn": cp.arn, "FunctionVersions": items}

    # -- functions -------------------------------------------------------------------------------------------
    def check_function(self, body: dict, fn: FunctionRecord | None = None) -> dict | None:
        """Validate a CreateFunction / UpdateFunctionConfiguration body's CapacityProviderConfig against the
        function's runtime and memory; returns the config to store (None: the body does not set one)."""
        if "CapacityProviderConfig" not in body and (fn is None or fn.capacity_provider_config is None):
            return None
        cfg = body.get("CapacityProviderConfig", fn.capacity_provider_config if fn else None)
        if not cfg:
            return None
        lmi = (cfg or {}).get("LambdaManagedInstancesCapacityProviderConfig") or {}
        arn = lmi.get("CapacityProviderArn")
        if not arn:
            raise invalid(
                "CapacityProviderConfig.LambdaManagedInstancesCapacityProviderConfig.CapacityProviderArn is required"
            )
        self.provider(arn)
        runtime = body.get("Runtime") or (fn.runtime if fn else "")
        if body.get("PackageType") != "Image" and (fn is None or fn.image is None) and runtime not in MANAGED_RUNTIMES:
            raise invalid(
                f"The runtime parameter of {runtime} is not supported for Lambda Managed Instances. Supported "
                f"runtimes: {', '.join(MANAGED_RUNTIMES)}."
            )
        memory = int(body.get("MemorySize") or (fn.memory if fn else 128))
        ratio = lmi.get("ExecutionEnvironmentMemoryGiBPerVCpu")
        if ratio is not None and not 2.0 <= float(ratio) <= 8.0:
            raise _validation(
                "capacityProviderConfig.lambdaManagedInstancesCapacityProviderConfig.executionEnvironmentMemoryGiBPerVCpu",
                ratio,
                "Member must have value between 2.0 and 8.0, inclusive",
            )
        conc = lmi.get("PerExecutionEnvironmentMaxConcurrency")
        if conc is not None and not 1 <= int(conc) <= 1600:
            raise _validation(
                "capacityProviderConfig.lambdaManagedInstancesCapacityProviderConfig.perExecutionEnvironmentMaxConcurrency",
                conc,
                "Member must have value between 1 and 1600, inclusive",
            )
        if memory < MIN_MEMORY_MB:
            raise invalid(
                f"MemorySize {memory} MB is below the {MIN_MEMORY_MB} MB a function on Lambda Managed Instances needs."
            )
        return {"LambdaManagedInstancesCapacityProviderConfig": {k: v for k, v in lmi.items() if v is not None}}

    def function_deleted(self, name: str) -> None:
        with self.emu._lock:
            versions = self.versions.pop(name, {})
        for pv in versions.values():
            if pv.pool is not None:
                pv.pool.stop()

    # -- versions --------------------------------------------------------------------------------------------
    def publish(self, ref: str, body: dict) -> dict:
        fn = self.emu._function(ref)
        with fn.lock:
            if body.get("RevisionId") and body["RevisionId"] != fn.revision_id:
                raise ApiError(
                    412,
                    "PreconditionFailedException",
                    "The Revision Id provided does not match the latest Revision Id.",
                )
            if body.get("CodeSha256") and body["CodeSha256"] != fn.code_sha256:
                raise invalid(
                    f"CodeSHA256 ({body['CodeSha256']}) is different from current CodeSHA256 in $LATEST "
                    f"({fn.code_sha256}). Please try again with the CodeSHA256 in $LATEST."
                )
            record = replace(fn, lock=threading.Lock(), tags=dict(fn.tags), variables=dict(fn.variables))
        with self.emu._lock:
            versions = self.versions.setdefault(fn.name, {})
            same = [pv for pv in versions.values() if pv.record.revision == fn.revision]
            if same:  # Lambda publishes nothing new for an unchanged $LATEST: the last version again
                return dict(same[-1].config)
            number = str(1 + max([int(v) for v in versions] or [0]))
            config = record.configuration()
            config.update(
                FunctionArn=f"{fn.arn}:{number}",
                Version=number,
                Description=body.get("Description", config.get("Description", "")),
                RevisionId=str(uuid.uuid4()),
            )
            if fn.capacity_provider_config:
                config.update(
                    State="Pending",
                    StateReason="The function is being created.",
                    StateReasonCode="Creating",
                    CapacityProviderConfig=fn.capacity_provider_config,
                )
            pv = PublishedVersion(fn.name, number, config, record)
            versions[number] = pv
        if fn.capacity_provider_config:
            cp = self.provider(
                fn.capacity_provider_config["LambdaManagedInstancesCapacityProviderConfig"]["CapacityProviderArn"]
            )
            pv.pool = ManagedPool(self, pv, cp)
            self._ensure_reaper()
            threading.Thread(target=self._activate, args=(pv,), name="managed-publish", daemon=True).start()
        return dict(config)

    def _activate(self, pv: PublishedVersion) -> None:
        """Start the version's minimum environments; the version is Active when they are up, Failed otherwise."""
        assert pv.pool is not None
        try:
            for _ in range(max(1, pv.pool.min_envs)):
                pv.pool.start_environment()
        except Exception as exc:  # noqa: BLE001 - the version's state tells the caller
            msg = exc.message if isinstance(exc, ApiError) else str(exc)
            pv.config.update(State="Failed", StateReason=msg, StateReasonCode="FunctionError")
            return
        for key in ("StateReason", "StateReasonCode"):
            pv.config.pop(key, None)
        pv.config["State"] = "Active"

    def delete_version(self, ref: str, qualifier: str) -> None:
        """DeleteFunction with a Qualifier: the version goes, with its environments."""
        pv = self.version(ref, qualifier)
        with self.emu._lock:
            self.versions.get(pv.function, {}).pop(qualifier, None)
        if pv.pool is not None:
            pv.pool.stop()

    def has_version(self, name: str, qualifier: str) -> bool:
        """Whether ``name:qualifier`` is a version published here (the server asks before SnapStart's versions)."""
        with self.emu._lock:
            return qualifier in self.versions.get(name, {})

    def version(self, ref: str, qualifier: str) -> PublishedVersion:
        fn = self.emu._function(ref)
        with self.emu._lock:
            pv = self.versions.get(fn.name, {}).get(qualifier)
        if pv is None:
            raise not_found(f"Function not found: {fn.arn}:{qualifier}")
        return pv

    def list_versions(self, ref: str) -> dict:
        fn = self.emu._function(ref)
        with self.emu._lock:
            published = [
                pv.config for _, pv in sorted(self.versions.get(fn.name, {}).items(), key=lambda kv: int(kv[0]))
            ]
        return {"Versions": [fn.configuration(), *[dict(c) for c in published]]}

    def acquire(self, name: str, qualifier: str | None) -> ExecutionEnvironment | None:
        """A worker for an invocation of a managed function (``qualifier``: its version; none: the latest published
        one); None when the invocation is not for a managed version (the emulator's on-demand pool serves it)."""
        with self.emu._lock:
            fn = self.emu.functions.get(name)
            versions = self.versions.get(name, {})
            if fn is None or fn.capacity_provider_config is None and not any(v.pool for v in versions.values()):
                return None
            if qualifier in (None, "", "$LATEST.PUBLISHED"):
                managed = [v for v in versions.values() if v.pool is not None]
                pv = max(managed, key=lambda v: int(v.version)) if managed else None
                if pv is None:
                    raise invalid(
                        f"Function {fn.arn} runs on a capacity provider: publish a version (PublishVersion) and "
                        "invoke it."
                    )
            elif qualifier == "$LATEST":
                raise invalid(f"Function {fn.arn}:$LATEST runs on a capacity provider: invoke a published version.")
            else:
                pv = versions.get(qualifier)
                if pv is None:
                    raise not_found(f"Function not found: {fn.arn}:{qualifier}")
                if pv.pool is None:
                    return None
        if pv.config.get("State") != "Active":
            raise ApiError(
                409,
                "ResourceConflictException",
                f"The operation cannot be performed at this time. The function is currently in the following state: "
                f"{pv.config.get('State')}",
            )
        assert pv.pool is not None
        return pv.pool.acquire()

    def refuse_latest(self, name: str) -> None:
        """An invoke naming ``$LATEST`` of a function on a capacity provider fails as on Lambda."""
        fn = self.emu.functions.get(name)
        if fn is not None and fn.capacity_provider_config is not None:
            raise invalid(f"Function {fn.arn}:$LATEST runs on a capacity provider: invoke a published version.")

    def release(self, env: ExecutionEnvironment | None) -> bool:
        """Return a managed worker to its pool; False for an on-demand environment."""
        managed = getattr(env, "managed_env", None)
        if managed is None:
            return False
        managed.pool.release(env)
        return True

    # -- HTTP ------------------------------------------------------------------------------------------------
    def api(self, handler: str, raw_body: dict, query: dict, args: dict) -> tuple[int, dict]:
        """(HTTP status, JSON body) of one capacity-provider or version operation."""
        if handler == "capacity_create":
            return 202, self.create(raw_body)
        if handler == "capacity_list":
            return 200, self.list(query)
        if handler == "capacity_get":
            return 200, {"CapacityProvider": self.provider(args["cp"]).to_api()}
        if handler == "capacity_update":
            return 202, self.update(args["cp"], raw_body)
        if handler == "capacity_delete":
            return 202, self.delete(args["cp"])
        if handler == "capacity_versions":
            return 200, self.function_versions(args["cp"])
        raise invalid(f"no such operation {handler}")
