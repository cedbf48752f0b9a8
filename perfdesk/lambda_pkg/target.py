"""Target kinds ``lambda`` (AWS Lambda) and ``local-lambda`` (perfdesk's emulator): the same boto3 code path.

Deploy builds what Lambda runs (:mod:`perfdesk.lambda_pkg.builders`): the code zip (handler and inference module),
the dependencies layer from manylinux wheels for the function's Python version and architecture, and, on the onnx
runtime, the model exported to ONNX here at build time (where torch is), shipped in the code zip, a layer or S3
with its sha256, so the function imports only ONNX Runtime, numpy and pillow. PyTorch and TensorFlow do not fit a
layer: they are refused as zips (a ``lambda`` target runs them from a container image, ``image_uri``). Zips over
50 MB go through S3. Each package's size against Lambda's limits is logged and kept in the target's facts.

Both kinds then deploy with :class:`~perfdesk.lambda_pkg.functions.FunctionManager`, invoke synchronously with
``LogType=Tail`` and read the REPORT line into each :class:`RequestResult`. ``force_cold`` changes the environment
variable ``PERFDESK_COLD_NONCE`` (a configuration change retires every warm environment); ``set_memory`` updates
MemorySize and waits until the update is Successful. An invocation whose environment ran out of memory is an error
row whose ``error`` starts with ``Runtime.OutOfMemory`` (the answer's errorType, or the REPORT line's Error Type).

AWS's own configuration decides where calls go and as whom: the credential chain, ``AWS_PROFILE``,
``AWS_REGION``, ``AWS_ENDPOINT_URL`` and ``AWS_ENDPOINT_URL_<SERVICE>`` (boto3 reads them). A target's
``region``, ``profile_name`` and ``endpoint_url`` are explicit overrides. Everything created is tagged with the
session and written to the session's ledger first; teardown removes it, and :meth:`sweep` (``perfdesk teardown``)
finds it again after a crash.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlparse

from pydantic import Field, model_validator

from perfdesk.controllers.extras import MissingExtra, require
from perfdesk.controllers.results import (
    ERROR,
    OK,
    OUT_OF_MEMORY_ERROR,
    THROTTLED,
    TIMEOUT,
    RequestResult,
    result_from_response,
)
from perfdesk.controllers.target import ColdStart, Target, TargetContext, TargetError, TargetSpec, TargetStatus
from perfdesk.controllers.workload import Payload, WorkloadSpec
from perfdesk.lambda_pkg.local_s3 import LocalS3
from perfdesk.lambda_pkg.managed import ManagedInstancesSpec
from perfdesk.lambda_pkg.report import parse_log_result
from perfdesk.shipped.wire import encode_request, sample_jpeg

if TYPE_CHECKING:  # imported where used: boto3 and the emulator only when a profile has a function target
    from perfdesk.lambda_pkg.emulator import Emulator
    from perfdesk.lambda_pkg.functions import FunctionManager
    from perfdesk.lambda_pkg.images import LocalRegistry

LOCAL_ROLE = "arn:aws:iam::123456789012:role/perfdesk-local"
#: Dummy credentials of local-lambda targets: no real credential is ever sent to an emulator or a local S3.
LOCAL_KEYS = {"aws_access_key_id": "perfdesk-local", "aws_secret_access_key": "perfdesk-local"}


class _FunctionSpec(TargetSpec):
    function_name: str | None = Field(None, description="Function name (default: perfdesk-<target>-<session>).")
    memory_mb: int = Field(1536, ge=128, le=10240, description="Memory size in MB (CPU share follows it).")
    timeout_s: int = Field(60, ge=1, le=900, description="Function timeout in seconds.")
    architecture: Literal["x86_64", "arm64"] = Field("x86_64", description="Instruction set of the function.")
    snapstart: bool = Field(
        False,
        description="SnapStart: publish a version (its init runs once and is snapshotted) and invoke it; cold starts "
        "are restores. Python 3.12 or later, zip packaging only.",
    )
    python: Literal["3.10", "3.11", "3.12", "3.13"] = Field("3.11", description="Lambda Python runtime version.")
    weights_placement: Literal["package", "layer", "s3"] = Field(
        "package",
        description="Where the model goes (the ONNX export made at build time, or an image's weights file): in the "
        "code zip, in a layer, or in S3 (read at init).",
    )
    bucket: str | None = Field(
        None,
        description="S3 bucket for zips over 50 MB and placement 's3' (default: one the session creates, tags and "
        "removes).",
    )
    reserved_concurrency: int | None = Field(
        None, ge=0, le=10000, description="Reserved concurrency (throttles above it)."
    )
    function_url: bool = Field(False, description="Also create a function URL (the HTTP path can be measured).")
    invoke_via: Literal["invoke", "url", "apigw", "s3"] = Field(
        "invoke",
        description="How requests reach the function: Lambda's Invoke API, the function URL (AWS_IAM, SigV4-signed), "
        "an API Gateway HTTP API perfdesk creates, or S3 (PUT the input object; the function writes the output).",
    )
    managed_instances: ManagedInstancesSpec | None = Field(
        None,
        description="Run the function on Lambda Managed Instances (a capacity provider's EC2 instances; Python 3.13+, "
        "memory_mb >= 2048); see lambda_pkg/managed.py.",
    )
    region: str | None = Field(
        None, description="AWS region (default: AWS's configuration: AWS_REGION, AWS_DEFAULT_REGION, ~/.aws/config)."
    )
    endpoint_url: str | None = Field(
        None,
        description="Lambda API endpoint, an explicit override (default: AWS's configuration, e.g. "
        "AWS_ENDPOINT_URL_LAMBDA).",
    )
    environment: dict[str, str] = Field(default_factory=dict, description="Extra environment variables.")
    packaging: Literal["zip", "image"] | None = Field(
        None,
        description="How the function is packaged: 'zip' (code zip and layers) or 'image' (a container image built "
        "here and pushed to ECR); default: image for the torch and tensorflow runtimes, zip otherwise.",
    )
    image_uri: str | None = Field(
        None, description="A prebuilt ECR image to run (packaging 'image' without a build here)."
    )
    base_image: str | None = Field(
        None,
        description="Base of the function's image: an image reference, or 'local' (perfdesk's stand-in, built from "
        "this machine's Python); default: AWS's public.ecr.aws/lambda/python:<python> where the function runs on "
        "AWS, the stand-in elsewhere.",
    )
    image_builder: Literal["auto", "docker", "buildah"] = Field(
        "auto", description="What builds the image: Docker where an engine is running, else buildah."
    )
    repository: str | None = Field(
        None, description="ECR repository for the image (default: one the session creates, tags and removes)."
    )
    registry: str | None = Field(
        None,
        description="The registry behind a local ECR, e.g. http://127.0.0.1:5000 (default: PERFDESK_ECR_REGISTRY; "
        "on AWS the repository's own).",
    )

    @model_validator(mode="after")
    def _snapstart_applies(self):
        """SnapStart refused at profile load where AWS refuses it (the default packaging is checked at deploy)."""
        if self.snapstart:
            from perfdesk.lambda_pkg import snapstart

            refused = snapstart.check(self.python, "image" if self.image_uri else self.packaging or "zip")
            if refused:
                raise ValueError(refused)
            if self.managed_instances is not None:
                # SnapStart restores an environment per request; Managed Instances keeps environments initialised
                raise ValueError("SnapStart does not apply to functions on Lambda Managed Instances: choose one")
        return self


class LambdaTargetSpec(_FunctionSpec):
    """An AWS Lambda function deployed from a zip with layers, or from a container image."""

    kind: Literal["lambda"] = "lambda"
    role_arn: str | None = Field(None, description="Execution role ARN (default: one is created, least privilege).")
    layers: list[str] = Field(
        default_factory=list, description="Prebuilt dependency layer ARNs (default: one is built from wheels)."
    )
    profile_name: str | None = Field(
        None, description="AWS profile, an explicit override of AWS_PROFILE (never the keys themselves)."
    )


class LocalLambdaTargetSpec(_FunctionSpec):
    """A function on perfdesk's local Lambda emulator (no AWS account)."""

    kind: Literal["local-lambda"] = "local-lambda"
    endpoint_url: str | None = Field(
        None, description="A running `perfdesk emulator` (default: one is started in-process for the target)."
    )
    concurrency: int = Field(10, ge=1, le=1000, description="The emulator's account concurrency limit.")
    idle_s: float = Field(300.0, gt=0, le=7200, description="Idle environments are reclaimed after this long.")
    cpu_limits: bool = Field(True, description="CPU share proportional to memory (cgroups) where the OS allows.")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class _FunctionTarget(Target):
    billing = "function"
    supports_memory = True
    #: local-lambda: dummy credentials, and nothing is ever sent to AWS itself.
    local = False

    def __init__(self, spec: _FunctionSpec, ctx: TargetContext):
        super().__init__(spec, ctx)
        self.spec: _FunctionSpec = spec
        self.function = spec.function_name or f"perfdesk-{spec.name}-{ctx.session_id}"[:64].replace(".", "-")
        self.manager: FunctionManager | None = None
        self._invoke_client = None
        self.qualifier: str | None = None  # the published version invoked (SnapStart), else $LATEST
        self._layer_names: list[str] = []
        self._role_names: list[str] = []
        self.memory_mb = spec.memory_mb
        self.region = spec.region
        self.facts: dict[str, Any] = {}
        self._images: list[Any] = []  # images.EcrImages of each image this target pushed
        self.path: Any = None  # paths.InvokePath: how requests reach the function (invoke_via)
        self.managed: Any = None  # managed.ManagedInstances of a function on Lambda Managed Instances
        self._managed_facts: dict[str, Any] | None = None  # its facts, kept past teardown for the manifest
        self._lock = threading.Lock()

    # -- clients ---------------------------------------------------------------------------------------------
    def _session(self):
        import boto3

        return boto3.session.Session(region_name=self.spec.region)

    def _resolve_region(self) -> str:
        from perfdesk.lambda_pkg.functions import aws_region

        region = self.spec.region or aws_region(self._session())
        if not region:
            raise TargetError(
                self.name, "deploy", "no AWS region", "set region on the target, or AWS_REGION, or a region in ~/.aws"
            )
        self.region = region
        return region

    def _client(self, service: str, *, invoke: bool = False, endpoint_url: str | None = None):
        from botocore.config import Config

        read = max(self.spec.request_timeout_s, self.spec.timeout_s + 10.0) if invoke else 60
        cfg = Config(
            retries={"total_max_attempts": 1 if invoke else 3, "mode": "standard"},
            read_timeout=read,
            connect_timeout=10,
            max_pool_connections=1024 if invoke else 128,  # a burst opens as many connections as invocations
        )
        kwargs: dict[str, Any] = {"config": cfg, "region_name": self.region}
        if self.spec.endpoint_url and service == "lambda":
            kwargs["endpoint_url"] = self.spec.endpoint_url
        if endpoint_url:
            kwargs["endpoint_url"] = endpoint_url
        return self._session().client(service, **kwargs)

    def _ledger(self):
        """The session's record of what this target creates (in the session folder)."""
        from perfdesk.lambda_pkg.functions import Ledger

        return Ledger(
            self._session_dir(),
            region=self.region,
            lambda_endpoint=self.spec.endpoint_url,
            profile=getattr(self.spec, "profile_name", None),
            local=self.local or None,
            target=self.name,
        )

    def _variables(self, engine) -> dict[str, str]:
        env = {**engine.to_env(), "PERFDESK_COLD_NONCE": uuid.uuid4().hex[:12]}
        env.update(self.spec.environment)
        return env

    def _session_dir(self) -> Path:
        # absolute: the emulator hands these paths to functions, whose working directory is their task root
        return Path(self.ctx.work_dir).resolve()

    def _work_dir(self) -> Path:
        d = self._session_dir() / "lambda" / self.name
        d.mkdir(parents=True, exist_ok=True)
        return d

    def _weights(self, workload: WorkloadSpec) -> Path | None:
        w = workload.weights
        if w == "random" or "://" in w:
            return None
        return Path(w)  # absolute: the profile loader resolved it

    # -- packaging -------------------------------------------------------------------------------------------
    def _publish(self, name: str, zip_path: Path, what: str) -> str:
        arn = self._manager().publish_layer(
            name, zip_path, runtimes=[f"python{self.spec.python}"], architectures=[self.spec.architecture], what=what
        )
        if name not in self._layer_names:
            self._layer_names.append(name)
        return arn

    def _dependency_layer(self, workload: WorkloadSpec) -> Path:
        """The dependencies layer's zip, built once per session for a runtime, Python version and architecture."""
        from perfdesk.lambda_pkg import builders

        spec = self.spec
        reqs, constraints = builders.layer_requirements(workload.runtime, spec.python)
        key = hashlib.sha256(json.dumps([reqs, constraints, spec.python, spec.architecture]).encode()).hexdigest()
        dest = self._session_dir() / "lambda" / "layers" / f"deps-{workload.runtime}-py{spec.python}-"
        dest = dest.with_name(dest.name + f"{spec.architecture}-{key[:12]}.zip")
        if dest.is_file():
            self.log(f"dependencies layer {dest.name} already built in this session")
            return dest
        cached = builders.cached_layer(dest.name)
        if cached is not None:
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(cached, dest)
            age_h = (time.time() - cached.stat().st_mtime) / 3600.0
            self.log(f"dependencies layer {dest.name} from the layer cache ({cached.parent}, built {age_h:.1f} h ago)")
            return dest
        self.log(
            f"building the dependencies layer from manylinux wheels ({' '.join(reqs + constraints)}; Python "
            f"{spec.python}, {spec.architecture})"
        )
        try:
            built = builders.build_dependency_layer(
                dest, reqs, spec.python, spec.architecture, constraints=constraints, work_dir=self._work_dir() / "deps"
            )
            builders.cache_layer(built)
            return built
        except builders.PackageTooLarge as exc:
            raise TargetError(self.name, "dependencies layer", str(exc)) from None
        except RuntimeError as exc:
            raise TargetError(
                self.name, "dependencies layer", str(exc), "check the runtime, the architecture and pip's index"
            ) from None

    def _onnx_export(self, workload: WorkloadSpec) -> tuple[Path, str, str | None]:
        """Export the model to ONNX here, at build time (torch is on this machine, not in the function); returns
        (file, its sha256, the weights' sha256 or None for random weights)."""
        from perfdesk.shipped.errors import InferenceError
        from perfdesk.shipped.inference.onnx_export import prepare_onnx
        from perfdesk.shipped.inference.weights import resolve_weights

        cfg = workload.engine_config()
        cfg.device = "cpu"
        self.log(f"exporting {workload.model} to ONNX on this machine (build time)")
        try:
            path = prepare_onnx(cfg)
            weights_sha = resolve_weights(cfg.weights, cfg.weights_sha256, cfg.cache_path).sha256
        except InferenceError as exc:
            raise TargetError(
                self.name,
                "export the model to ONNX",
                str(exc),
                "the export is made on this machine and needs torch and torchvision here; the function needs neither",
            ) from None
        return path, _sha256(path), weights_sha

    def _build_zip(self, workload: WorkloadSpec, layers: list[str], artifacts) -> tuple[Path, Any, list[str]]:
        """Package a zip function: (code zip, engine options, layer ARNs)."""
        from perfdesk.lambda_pkg import builders

        spec, work = self.spec, self._work_dir()
        engine = workload.engine_config()
        engine.device = "cpu"
        try:  # PyTorch and TensorFlow are refused here, before anything is built
            builders.layer_requirements(workload.runtime, spec.python)
        except builders.NotForZip as exc:
            raise TargetError(self.name, "package", str(exc)) from None
        try:  # the model is exported here, at build time: check for torch before anything is built
            require("onnx", what=f"exporting {workload.model} to ONNX at build time (here, not in the function)")
        except MissingExtra as exc:
            raise TargetError(self.name, "export the model to ONNX", str(exc)) from None
        deps_zip = None if layers else self._dependency_layer(workload)
        onnx, onnx_sha, weights_sha = self._onnx_export(workload)
        engine.weights_sha256, engine.onnx_sha256 = weights_sha, onnx_sha
        files: dict[str, Path] = {}
        model_zip = None
        if spec.weights_placement == "package":
            files[f"model/{onnx.name}"] = onnx
            engine.onnx_file = f"model/{onnx.name}"
        elif spec.weights_placement == "layer":
            model_zip = builders.build_file_layer(onnx, work / "model-layer.zip", "model")
            engine.onnx_file = f"/opt/model/{onnx.name}"
        else:
            loc = artifacts.upload(onnx)
            engine.onnx_file = f"s3://{loc['S3Bucket']}/{loc['S3Key']}"
        try:
            code = builders.build_code_zip(work / "code.zip", files=files)
            packages = {"code": code, "dependencies layer": deps_zip, "model layer": model_zip}
            builders.check_unzipped_size([z for z in packages.values() if z is not None])
        except builders.PackageTooLarge as exc:
            raise TargetError(self.name, "package", str(exc)) from None
        sizes = {}
        for what, z in packages.items():
            if z is not None:
                sizes[what] = builders.package_facts(z)
                self.log(builders.describe_sizes(what, sizes[what]))
        total = sum(f["unzipped_bytes"] for f in sizes.values())
        self.log(
            f"function and layers unzip to {total / 2**20:.1f} MB of Lambda's "
            f"{builders.MAX_UNZIPPED_BYTES / 2**20:.0f} MB" + (" (plus the prebuilt layers)" if layers else "")
        )
        self.facts.update(
            packages=sizes,
            unzipped_total_bytes=total,
            unzipped_limit_bytes=builders.MAX_UNZIPPED_BYTES,
            onnx_file=engine.onnx_file,
            onnx_sha256=onnx_sha,
        )
        if deps_zip is not None:
            name = f"perfdesk-deps-{workload.runtime}-py{spec.python.replace('.', '')}-{spec.architecture}"
            layers = layers + [self._publish(name, deps_zip, "dependencies")]
        if model_zip is not None:
            layers = layers + [self._publish(f"{self.function}-model"[:64], model_zip, f"model {onnx.name}")]
        return code, engine, layers

    # -- deploy, shared by both kinds ------------------------------------------------------------------------
    def _deploy_function(
        self,
        workload: WorkloadSpec,
        *,
        manager,
        artifacts,
        role: Callable[[str | None], str],
        layers: list[str],
        image_uri: str | None = None,
        extra_variables: dict[str, str] | None = None,
    ) -> None:
        """Package (a zip with layers, or an image built and pushed here, unless ``image_uri`` names one), get the
        role (``role(bucket read by the function)``), create or update the function, then probe it once."""
        from perfdesk.lambda_pkg import builders

        self.manager = manager
        packaging = "image" if image_uri else self._packaging(workload)
        self.facts["packaging"] = packaging
        if self.spec.snapstart:
            from perfdesk.lambda_pkg import snapstart

            refused = snapstart.check(self.spec.python, packaging)
            if refused:
                raise TargetError(self.name, "deploy", refused, 'set python = "3.12" or later and packaging zip')
        if packaging == "zip":
            code, engine, layers = self._build_zip(workload, layers, artifacts)
        elif image_uri:
            code, engine = None, self._image_engine(workload, artifacts)
        else:
            code = None
            image_uri, engine = self._build_image(workload, artifacts)
        source = str(engine.onnx_file or engine.weights)
        role_arn = role(urlparse(source).netloc if source.startswith("s3://") else None)
        from perfdesk.lambda_pkg.paths import make_path

        self.path = make_path(self, self.spec.invoke_via)
        variables = {**self._variables(engine), **(extra_variables or {}), **self.path.variables(artifacts)}
        extra = self._managed_setup(manager)  # Lambda Managed Instances: the capacity provider first
        try:
            cfg = manager.deploy_function(
                self.function,
                zip_path=code,
                image_uri=image_uri,
                role_arn=role_arn,
                handler=builders.HANDLER,
                runtime=f"python{self.spec.python}",
                memory_mb=self.spec.memory_mb,
                timeout_s=self.spec.timeout_s,
                architecture=self.spec.architecture,
                variables=variables,
                layers=layers,
                **extra,
            )
            if self.managed is not None:
                self.qualifier = self.managed.publish(self.function)
            if self.spec.reserved_concurrency is not None:
                manager.set_reserved_concurrency(self.function, self.spec.reserved_concurrency)
            if self.spec.function_url:
                self.facts["function_url"] = manager.ensure_url(self.function)
            if self.spec.snapstart:
                self._publish_snapstart()
            self.path.setup(artifacts)
        except Exception as exc:  # botocore ClientError / WaiterError: say which call and why
            raise TargetError(
                self.name, "deploy", f"function {self.function}: {exc}", "check the role, region and quotas"
            ) from exc
        self.facts.update(
            {
                "function": self.function,
                "function_arn": cfg.get("FunctionArn"),
                "region": self.region,
                "runtime": cfg.get("Runtime"),
                "architecture": self.spec.architecture,
                "layers": [layer["Arn"] for layer in cfg.get("Layers", [])],
                "uploads": dict(manager.uploads),
            }
        )
        if artifacts.bucket:
            self.facts["bucket"] = artifacts.bucket
        self.memory_mb = self.spec.memory_mb
        self._invoke_client = self._client("lambda", invoke=True)
        self._probe()

    # -- Lambda Managed Instances (managed.py) ---------------------------------------------------------------
    def _ec2_client(self):
        """EC2 for the capacity provider's network (AWS's configuration decides where)."""
        return self._client("ec2")

    def _managed_setup(self, manager) -> dict[str, Any]:
        """Create the capacity provider (and its network and role) of a managed-instances target; returns the
        function's CapacityProviderConfig argument ({} for an on-demand function)."""
        from perfdesk.lambda_pkg.managed import ManagedInstances, check_python

        spec = self.spec.managed_instances
        if spec is None:
            return {}
        check_python(self.name, self.spec.python)
        if self.spec.memory_mb < 2048:
            raise TargetError(
                self.name, "managed instances", f"memory_mb {self.spec.memory_mb} is below the 2048 MB it needs"
            )
        if self.managed is None:
            self.managed = ManagedInstances(
                spec,
                name=self.name,
                session_id=self.ctx.session_id,
                lam=manager.lam,
                ec2=self._ec2_client(),
                iam=None if self.local else (manager.iam or self._client("iam")),
                ledger=manager.ledger,
                tags=manager.tags,
                architecture=self.spec.architecture,
                say=self.log,
                local=self.local,
            )
        try:
            if self.managed.provider_arn is None:
                self.managed.create_provider()
        except Exception as exc:
            raise TargetError(self.name, "capacity provider", str(exc), "check the VPC, the role and quotas") from exc
        return {"capacity_provider_config": self.managed.function_config()}

    def _republish(self) -> None:
        """A configuration change of a managed function serves once a new version is published and Active."""
        if self.managed is not None:
            old = self.qualifier
            self.qualifier = self.managed.publish(self.function)
            if old and old != self.qualifier:  # its environments would hold instances (and CPU) for nothing
                self.managed.lam.delete_function(FunctionName=self.function, Qualifier=old)

    # -- container images -----------------------------------------------------------------------------------
    def _packaging(self, workload: WorkloadSpec) -> str:
        """The profile's ``packaging``, else an image for the runtimes no layer holds (PyTorch, TensorFlow)."""
        from perfdesk.lambda_pkg import builders

        if self.spec.packaging:
            return self.spec.packaging
        return "image" if workload.runtime in builders.IMAGE_ONLY else "zip"

    def _lambda_on_aws(self) -> bool:
        """Whether the function runs on AWS itself (then AWS's base image), not on an emulator."""
        from perfdesk.lambda_pkg.images import is_aws_endpoint

        return self.manager is not None and is_aws_endpoint(self.manager.lam.meta.endpoint_url)

    def _ecr_client(self):
        """ECR's control plane (AWS's configuration decides where: ``AWS_ENDPOINT_URL_ECR``, ...)."""
        return self._client("ecr")

    def _registry_url(self) -> str | None:
        """The registry behind a local ECR: the profile's ``registry``, else ``PERFDESK_ECR_REGISTRY``."""
        import os

        from perfdesk.lambda_pkg.images import REGISTRY_ENV

        return self.spec.registry or os.environ.get(REGISTRY_ENV) or None

    def _build_image(self, workload: WorkloadSpec, artifacts) -> tuple[str, Any]:
        """Build the function's image here and push it to ECR: (image URI, engine options).

        The task root holds the shipped code, the runtime's dependencies from manylinux wheels for the function's
        Python version and architecture, and the model's file (the weights file, or the ONNX export on the onnx
        runtime) unless its placement is 's3'. An image has no layers: placement 'layer' puts it in the image."""
        from perfdesk.lambda_pkg import builders, images

        spec, work = self.spec, self._work_dir()
        engine = workload.engine_config()
        engine.device = "cpu"
        files: dict[str, Path] = {}
        if workload.runtime == "onnx":
            try:
                require("onnx", what=f"exporting {workload.model} to ONNX at build time (here, not in the function)")
            except MissingExtra as exc:
                raise TargetError(self.name, "export the model to ONNX", str(exc)) from None
            onnx, onnx_sha, weights_sha = self._onnx_export(workload)
            engine.weights_sha256, engine.onnx_sha256 = weights_sha, onnx_sha
            if spec.weights_placement == "s3":
                loc = artifacts.upload(onnx)
                engine.onnx_file = f"s3://{loc['S3Bucket']}/{loc['S3Key']}"
            else:
                files[f"model/{onnx.name}"] = onnx
                engine.onnx_file = f"model/{onnx.name}"
            self.facts.update(onnx_file=engine.onnx_file, onnx_sha256=onnx_sha)
        else:
            weights = self._weights(workload)
            if weights is not None:
                if not weights.is_file():
                    raise TargetError(self.name, "deploy", f"weights file {weights} not found", "fix 'weights'")
                if spec.weights_placement == "s3":
                    loc = artifacts.upload(weights)
                    engine.weights = f"s3://{loc['S3Bucket']}/{loc['S3Key']}"
                else:
                    files[f"weights/{weights.name}"] = weights
                    engine.weights = f"weights/{weights.name}"
        label = f"{workload.name}-{workload.runtime}-py{spec.python}-{spec.architecture}"
        try:
            builder = images.choose_builder(spec.image_builder)
            base = spec.base_image or images.default_base(spec.python, self._lambda_on_aws())
            base_ref = images.ensure_base(builder, base, spec.python, spec.architecture, work_dir=work, say=self.log)
            reqs, constraints = builders.image_requirements(workload.runtime, spec.python)

            def write_context(dest: Path) -> Path:
                self.log(
                    f"resolving the image's dependencies from manylinux wheels ({' '.join(reqs + constraints)}; "
                    f"Python {spec.python}, {spec.architecture}) on {base_ref}"
                )
                return builders.write_container_context(
                    dest,
                    workload.runtime,
                    spec.python,
                    spec.architecture,
                    base=base_ref,
                    files=files,
                    requirements=reqs,
                    constraints=constraints,
                    work_dir=dest.parent / "wheels",
                )

            shipped = {name: src for src, name in builders.shipped_files()}
            key = images.inputs_key(
                images.FUNCTION_DOCKERFILE,
                base_ref,
                builders.HANDLER,
                reqs,
                constraints,
                spec.python,
                spec.architecture,
                files={**shipped, **files},
            )
            ref, size = images.build_function_image(
                builder, label, spec.architecture, write_context=write_context, key=key, work_dir=work, say=self.log
            )
            store = images.EcrImages(
                self._ecr_client(),
                self.ctx.session_id,
                self.region or "us-east-1",
                registry=self._registry_url(),
                repository=spec.repository,
                ledger=self._manager().ledger,
                say=self.log,
            )
            self._images.append(store)
            pushed = store.push(builder, ref, f"{self.name}-{workload.name}")
        except images.ImageError as exc:
            raise TargetError(self.name, "container image", str(exc)) from None
        except RuntimeError as exc:
            hint = "check the runtime, the architecture and pip's index"
            if workload.runtime == "torch" and builders.RUNTIME_GLIBC.get(spec.python, 34) < 28:
                hint = (
                    f"PyTorch's wheels need glibc 2.28 (manylinux_2_28), and Lambda's python{spec.python} runs on "
                    'Amazon Linux 2 (glibc 2.26): set python = "3.12" or later on the target'
                )
            raise TargetError(self.name, "container image", str(exc), hint) from None
        self.facts["image"] = {
            "uri": pushed["image_uri"],
            "repository": pushed["repository"],
            "tag": pushed["tag"],
            "registry": pushed["registry"],
            "base": base_ref,
            "local_ref": ref,
            "uncompressed_bytes": size,
            "limit_bytes": images.MAX_IMAGE_BYTES,
            **builder.describe(),
        }
        return pushed["image_uri"], engine

    def _image_engine(self, workload: WorkloadSpec, artifacts):
        """Engine options of an image function: the image holds its runtime; a weights file goes to S3 (placement
        's3'), else the image is expected to hold it (write_container_context copies it in)."""
        engine = workload.engine_config()
        engine.device = "cpu"
        weights = self._weights(workload)
        if weights is not None:
            if not weights.is_file():
                raise TargetError(self.name, "deploy", f"weights file {weights} not found", "fix 'weights'")
            if self.spec.weights_placement == "s3":
                loc = artifacts.upload(weights)
                engine.weights = f"s3://{loc['S3Bucket']}/{loc['S3Key']}"
            else:
                engine.weights = f"weights/{weights.name}"
        return engine

    def _probe(self) -> None:
        """One invocation with a tiny image: the model loads (or its error surfaces) before any trial."""
        res = self.send(Payload(["probe"], [b""], encode_request([sample_jpeg()], {"top_k": 1}), 1))
        if res.status != OK:
            raise TargetError(
                self.name, "first invocation", res.error or res.status, "see the function's log in the log pane"
            )
        self.facts["probe_init_ms"] = res.init_ms
        self.set_state(TargetStatus.READY, f"{self.function} at {self.memory_mb} MB")

    @classmethod
    def sweep(cls, session_id, *, session_dir, region, facts, say) -> list[str]:
        """Remove every function resource of the session (``perfdesk teardown``): by tags where the session's
        ledger says it worked (and in ``region``), and the untaggable layer versions the ledger names."""
        from perfdesk.lambda_pkg.functions import Ledger
        from perfdesk.lambda_pkg.teardown import sweep

        entries = Ledger.read(session_dir) if session_dir is not None else []
        if not entries and region is None:
            if session_dir is not None:
                return []  # the session recorded nothing: it created nothing in AWS
            from perfdesk.lambda_pkg.functions import aws_region

            region = aws_region()
            if not region:
                raise RuntimeError("no AWS region for the function resources: pass --region or set AWS_REGION")
        return sweep(session_id, entries=entries, region=region, say=say)

    # -- the interface ---------------------------------------------------------------------------------------
    @property
    def invoke_path(self) -> str:
        return self.spec.invoke_via

    def send(self, payload: Payload, *, timeout: float | None = None) -> RequestResult:
        """One request by the target's path (:mod:`perfdesk.lambda_pkg.paths`); never raises."""
        if self.path is not None and self.path.name != "invoke":
            return self.path.send(payload, timeout=timeout)
        return self._invoke(payload, timeout=timeout)

    def _invoke(self, payload: Payload, *, timeout: float | None = None) -> RequestResult:
        """Invoke (RequestResponse, LogType=Tail); never raises: throttles, timeouts and errors become statuses."""
        from botocore.exceptions import BotoCoreError, ClientError, ConnectTimeoutError, ReadTimeoutError

        if self._invoke_client is None:
            return RequestResult(actual_send=time.time(), receive=time.time(), status=ERROR, error="not deployed")
        t0 = time.time()
        try:
            qualifier = {"Qualifier": self.qualifier} if self.qualifier else {}
            resp = self._invoke_client.invoke(
                FunctionName=self.function,
                InvocationType="RequestResponse",
                LogType="Tail",
                Payload=payload.body,
                **qualifier,
            )
            data = resp["Payload"].read()
        except ClientError as exc:
            t1 = time.time()
            err = exc.response.get("Error", {})
            code = err.get("Code", "")
            http = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            status = THROTTLED if code == "TooManyRequestsException" or http == 429 else ERROR
            return RequestResult(
                actual_send=t0,
                receive=t1,
                status=status,
                http_status=http,
                error=f"{code}: {err.get('Message', '')}"[:500],
            )
        except (ReadTimeoutError, ConnectTimeoutError) as exc:
            return RequestResult(actual_send=t0, receive=time.time(), status=TIMEOUT, error=f"client timeout: {exc}")
        except BotoCoreError as exc:
            return RequestResult(actual_send=t0, receive=time.time(), status=ERROR, error=f"connection: {exc}")
        t1 = time.time()
        return self._result(resp, data, t0, t1)

    def _result(self, resp: dict, data: bytes, t0: float, t1: float) -> RequestResult:
        log_text, rep = parse_log_result(resp.get("LogResult"))
        http = resp.get("StatusCode")
        if resp.get("FunctionError"):
            try:
                err = json.loads(data)
            except ValueError:
                err = {"errorMessage": data[:300].decode(errors="replace")}
            etype, msg = str(err.get("errorType", "")), str(err.get("errorMessage", ""))
            if rep is not None and rep.error_type == OUT_OF_MEMORY_ERROR:
                etype = OUT_OF_MEMORY_ERROR  # the platform's own verdict on the invocation, whatever the payload says
            timed_out = etype == "Sandbox.Timedout" or "Task timed out" in msg or (rep and rep.status == "timeout")
            if rep is not None and rep.error_type and rep.error_type != etype:
                msg += f" ({rep.error_type})"  # e.g. Runtime.ExitError "signal: killed" is Runtime.OutOfMemory
            result = RequestResult(
                actual_send=t0,
                receive=t1,
                status=TIMEOUT if timed_out else ERROR,
                http_status=http,
                error=f"{etype}: {msg}"[:500],
                response_bytes=len(data),
            )
        else:
            result = result_from_response(200, data, t0, t1)
            result.http_status = http
            try:
                body = json.loads(data)
            except ValueError:
                body = {}
            if isinstance(body, dict):
                if body.get("cold"):
                    result.extra["init"] = body.get("init")
                if isinstance(body.get("memory"), dict):
                    result.extra["memory"] = body["memory"]
        if rep is not None:
            result.duration_ms, result.billed_ms = rep.duration_ms, rep.billed_ms
            result.memory_size_mb, result.max_memory_used_mb = rep.memory_size_mb, rep.max_memory_used_mb
            result.init_ms, result.cold = rep.init_ms, rep.cold
            result.restore_ms, result.billed_restore_ms = rep.restore_ms, rep.billed_restore_ms
            result.request_id = rep.request_id
        if log_text:
            for line in log_text.splitlines()[-20:]:
                if line.strip() and not line.startswith(("START ", "END ")):
                    self.log(line, stream="function")
        return result

    def force_cold(self) -> ColdStart:
        """Change PERFDESK_COLD_NONCE: Lambda (and the emulator) retire every environment of the old config.
        The cold start's figures arrive with the next request's REPORT line (Init Duration)."""
        self._configure(
            lambda: self._manager().set_variables(self.function, PERFDESK_COLD_NONCE=uuid.uuid4().hex[:12]),
            "force a cold start",
        )
        if self.managed is not None:  # new environments start at publish: no request of them starts cold
            self._configure(self._republish, "publish a version")
            self.set_state(TargetStatus.READY, f"version {self.qualifier}: new environments, initialised")
            return ColdStart()
        if self.spec.snapstart:  # a new configuration is a new version: a new snapshot, restored on the next request
            self._configure(self._publish_snapstart, "publish a SnapStart version")
        self.set_state(TargetStatus.COLD, "configuration changed; the next request starts a new environment")
        return ColdStart()

    def set_memory(self, memory_mb: int) -> None:
        if not 128 <= memory_mb <= 10240:
            raise TargetError(self.name, "set memory", f"{memory_mb} MB is outside Lambda's 128..10240 MB")
        self._configure(lambda: self._manager().update(self.function, MemorySize=memory_mb), f"set memory {memory_mb}")
        if self.spec.snapstart:
            self._configure(self._publish_snapstart, "publish a SnapStart version")
        self._configure(self._republish, "publish a version")
        self.memory_mb = memory_mb
        self.set_state(TargetStatus.COLD, f"{memory_mb} MB")

    def _publish_snapstart(self) -> None:
        """Publish a SnapStart version of the current configuration and invoke it from now on (the older one goes)."""
        from perfdesk.lambda_pkg import snapstart

        old = self.qualifier
        cfg = snapstart.publish(self._manager(), self.function, say=self.log)
        self.qualifier = cfg["Version"]
        snapstart.delete_version(self._manager(), self.function, old)
        self.facts.update({"snapstart": True, "version": self.qualifier, "version_arn": cfg.get("FunctionArn")})

    def _manager(self) -> FunctionManager:
        if self.manager is None:
            raise TargetError(self.name, "manage the function", "the function is not deployed")
        return self.manager

    def _configure(self, call, what: str) -> None:
        if self.manager is None:
            raise TargetError(self.name, what, "the function is not deployed")
        try:
            call()
        except Exception as exc:
            raise TargetError(self.name, what, f"function {self.function}: {exc}") from exc

    def _teardown_resources(self) -> list[str]:
        if self.manager is None:
            return []
        try:
            removed = self.path.teardown() if self.path is not None else []
            self.path = None
            removed += self.manager.teardown(layer_names=self._layer_names, role_names=self._role_names)
            if self.managed is not None:  # after the function: a capacity provider in use cannot be deleted
                self._managed_facts = self.managed.describe(self.memory_mb)  # the manifest is written after
                removed += self.managed.teardown()
                self.managed, self.qualifier = None, None
            for store in self._images:
                for line in store.remove():
                    self.log(f"deleted {line}")
                    removed.append(line)
            self._images = []
            self.manager = None  # done: a second teardown (the experiment's close) has nothing left to remove
            return removed
        except Exception as exc:
            raise TargetError(
                self.name,
                "teardown",
                str(exc),
                f"run `perfdesk teardown {self.ctx.session_id}`, or delete what is tagged "
                f"perfdesk:session={self.ctx.session_id} by hand",
            ) from exc

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "function": self.function,
            "memory_mb": self.memory_mb,
            "timeout_s": self.spec.timeout_s,
            "architecture": self.spec.architecture,
            "python": self.spec.python,
            "region": self.region,
            "weights_placement": self.spec.weights_placement,
            "invoke_via": self.spec.invoke_via,
            **self.facts,
            **(
                {
                    "billing": "managed-instances",
                    "managed_instances": self.managed.describe(self.memory_mb)
                    if self.managed is not None
                    else self._managed_facts,
                }
                if self.spec.managed_instances is not None
                else {}
            ),
        }


class _NoAwsS3:
    """The S3 client of a local-lambda target when no local S3 is configured: it never reaches AWS itself."""

    def __init__(self, target: str):
        self.target = target

    def __getattr__(self, name: str):
        raise TargetError(
            self.target,
            "upload to S3",
            "this package must go through S3 (Lambda takes at most 50 MB inline), and a local-lambda target "
            "never sends anything to AWS",
            "point AWS_ENDPOINT_URL_S3 (or AWS_ENDPOINT_URL) at a local S3 such as `moto_server`, or make the "
            "package smaller (weights placement, a smaller model)",
        )


class LambdaTarget(_FunctionTarget):
    """A function on AWS Lambda (or anything that speaks its API: AWS's endpoint variables decide where)."""

    kind = "lambda"
    spec_model = LambdaTargetSpec

    def _session(self):
        import boto3

        return boto3.session.Session(region_name=self.spec.region, profile_name=self.spec.profile_name)

    def deploy(self, workload: WorkloadSpec) -> None:
        from perfdesk.lambda_pkg.functions import ArtifactBucket, FunctionManager

        spec: LambdaTargetSpec = self.spec  # type: ignore[assignment]
        self.workload = workload
        self.set_state(TargetStatus.DEPLOYING)
        region = self._resolve_region()
        ledger = self._ledger()
        artifacts = ArtifactBucket(
            self._client("s3"), self.ctx.session_id, region, bucket=spec.bucket, ledger=ledger, say=self.log
        )
        manager = FunctionManager(
            self._client("lambda"),
            self.ctx.session_id,
            iam_client=None if spec.role_arn else self._client("iam"),
            say=self.log,
            artifacts=artifacts,
            ledger=ledger,
        )
        self.manager = manager

        def role(bucket: str | None) -> str:
            if spec.role_arn:
                return spec.role_arn
            name = f"perfdesk-{self.ctx.session_id}"[:64]
            if name not in self._role_names:
                self._role_names.append(name)
            try:
                return manager.ensure_role(name, region=region, function_prefix="perfdesk-", bucket=bucket)
            except Exception as exc:
                raise TargetError(self.name, "execution role", str(exc), "or give role_arn") from exc

        self._deploy_function(
            workload,
            manager=manager,
            artifacts=artifacts,
            role=role,
            layers=list(spec.layers),
            image_uri=spec.image_uri,
            extra_variables={"PERFDESK_CACHE_DIR": "/tmp/perfdesk-cache"},
        )

    def teardown(self) -> None:
        self._teardown_resources()
        self._invoke_client = None
        self.set_state(TargetStatus.TORN_DOWN)


def _emulator_not_answering(url: str, timeout: float) -> str | None:
    """None when the emulator at ``url`` answers an HTTP request (any status) within ``timeout``; else why not."""
    import http.client

    parsed = urlparse(url)
    conn = http.client.HTTPConnection(parsed.hostname or "127.0.0.1", parsed.port or 80, timeout=timeout)
    try:
        conn.request("GET", "/2015-03-31/functions/")
        conn.getresponse().read()
    except OSError as exc:
        return f"the emulator at {url}: {exc}"
    finally:
        conn.close()
    return None


class LocalLambdaTarget(_FunctionTarget):
    """A function on perfdesk's local Lambda emulator, started in-process unless ``endpoint_url`` names one.

    Packaged exactly as for Lambda (code zip, dependencies layer from manylinux wheels, the ONNX export); zips over
    50 MB go through a local S3 named by AWS's endpoint variables, from which the emulator reads them."""

    kind = "local-lambda"
    spec_model = LocalLambdaTargetSpec
    local = True
    emulation = "perfdesk's local Lambda emulator on this machine, priced as AWS Lambda"

    def __init__(self, spec: LocalLambdaTargetSpec, ctx: TargetContext):
        super().__init__(spec, ctx)
        self.emulator: Emulator | None = None
        self.local_s3: LocalS3 | None = None
        self.registry: LocalRegistry | None = None  # images.LocalRegistry this target started (no registry was named)

    def _lambda_on_aws(self) -> bool:
        return False

    def _ec2_client(self):
        """A local EC2 for the capacity provider's network: the one AWS's endpoint variables name, else the target's
        own moto server; never AWS's (None: the emulator gets made-up ids)."""
        ec2 = self._client("ec2")
        if "amazonaws.com" not in ec2.meta.endpoint_url:
            return ec2
        return self._client("ec2", endpoint_url=self.local_s3.url) if self.local_s3 is not None else None

    def _ecr_client(self):
        """A local ECR: the one AWS's endpoint variables name, else the target's own moto server (its local S3);
        never AWS's. The image's repository is created and tagged there."""
        ecr = self._client("ecr")
        if "amazonaws.com" not in ecr.meta.endpoint_url:
            return ecr
        return self._client("ecr", endpoint_url=self.local_s3.url) if self.local_s3 is not None else None

    def _registry_url(self) -> str | None:
        url = super()._registry_url()
        return url or (self.registry.url if self.registry is not None else None)

    def _start_registry(self, workload: WorkloadSpec) -> None:
        """A registry on loopback for this target's images, where none is named and the function is an image."""
        from perfdesk.lambda_pkg.images import ImageError, LocalRegistry

        if self.registry is not None or super()._registry_url() or self.spec.image_uri:
            return
        if self._packaging(workload) != "image":
            return
        try:
            self.registry = LocalRegistry(self._work_dir() / "registry").start()
        except ImageError as exc:
            raise TargetError(self.name, "image registry", str(exc)) from None
        self.log(f"image registry on {self.registry.url} (the registry behind ECR for this target)")

    def _session(self):
        import boto3

        # dummy keys: no real credential is ever sent to an emulator or a local S3
        return boto3.session.Session(region_name=self.spec.region, **LOCAL_KEYS)

    def _ledger(self):
        ledger = super()._ledger()
        if self.emulator is not None:  # functions and layers end with the in-process emulator; S3 objects do not
            ledger.common["lambda_endpoint"] = "in-process"
        return ledger

    def deploy(self, workload: WorkloadSpec) -> None:
        from perfdesk.lambda_pkg.emulator import Emulator
        from perfdesk.lambda_pkg.functions import ArtifactBucket, FunctionManager

        spec: LocalLambdaTargetSpec = self.spec  # type: ignore[assignment]
        self.workload = workload
        self.set_state(TargetStatus.DEPLOYING)
        from perfdesk.lambda_pkg.functions import aws_region

        self.region = spec.region or aws_region(self._session()) or "us-east-1"
        if spec.endpoint_url is not None and self.emulator is None:
            problem = _emulator_not_answering(spec.endpoint_url, 5.0)  # every API call would wait out its timeout
            if problem:
                self.set_state(TargetStatus.FAILED)
                raise TargetError(self.name, "deploy", problem, "is `perfdesk emulator` running there?")
        if spec.endpoint_url is None and self.emulator is None:
            # the in-process emulator needs the runtime interface client here (an emulator at endpoint_url brings its
            # own); the function's runtime comes in its dependencies layer, not from this machine
            try:
                require("emulator", what=f"a function of workload {workload.name!r} on the emulator")
            except MissingExtra as exc:
                self.set_state(TargetStatus.FAILED)
                raise TargetError(self.name, "deploy", str(exc)) from None
            self._start_registry(workload)
            s3_url = self._client("s3").meta.endpoint_url
            if "amazonaws.com" in s3_url:  # no local S3 configured: one of our own, never AWS
                self.local_s3 = LocalS3(self.name, self._work_dir() / "local-s3.log").start()
                s3_url = self.local_s3.url
                self.log(f"local S3 (moto) on {s3_url}")
            apigw_url = self._client("apigatewayv2").meta.endpoint_url  # API Gateway's local control plane
            if self.local_s3 is not None or "amazonaws.com" in apigw_url:
                apigw_url = s3_url
            self.emulator = Emulator(
                s3_endpoint_url=s3_url,
                apigw_endpoint_url=apigw_url,
                idle_s=spec.idle_s,
                account_concurrency=spec.concurrency,
                cpu_limits=spec.cpu_limits,
                region=self.region,
                work_dir=self._work_dir() / "emulator",
                registry=self._registry_url(),
            ).start()
            self.spec = spec = spec.model_copy(update={"endpoint_url": self.emulator.url})
            self.log(f"emulator on {self.emulator.url}")
        ledger = self._ledger()
        s3 = self._client("s3", endpoint_url=self.local_s3.url) if self.local_s3 is not None else self._client("s3")
        if "amazonaws.com" in s3.meta.endpoint_url:
            s3 = _NoAwsS3(self.name)
        elif self.local_s3 is None:  # a local S3 of the user's: objects outlive the session, teardown finds them
            ledger.common["s3_endpoint"] = s3.meta.endpoint_url
        ecr = self._ecr_client()
        if ecr is not None and self.local_s3 is None:  # a local ECR of the user's: teardown finds it there
            ledger.common["ecr_endpoint"] = ecr.meta.endpoint_url
        artifacts = ArtifactBucket(
            s3, self.ctx.session_id, self.region, bucket=spec.bucket, ledger=ledger, say=self.log
        )
        manager = FunctionManager(
            self._client("lambda"), self.ctx.session_id, say=self.log, artifacts=artifacts, ledger=ledger
        )
        # a function reading S3 (weights or model placement s3) reads the local S3 its package went to, never AWS
        routes = {"AWS_ENDPOINT_URL_S3": self.local_s3.url} if self.local_s3 is not None else None
        self._deploy_function(
            workload,
            manager=manager,
            artifacts=artifacts,
            role=lambda _: LOCAL_ROLE,
            layers=[],
            image_uri=spec.image_uri,
            extra_variables=routes,
        )

    def check_alive(self) -> str | None:
        """The emulator's API port answers a TCP connection (an emulator that died refuses it at once)."""
        import socket

        url = self.spec.endpoint_url
        if self._invoke_client is None or not url:
            return None
        parsed = urlparse(url)
        try:
            with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 80), timeout=2.0):
                return None
        except OSError as exc:
            return f"the emulator at {url} is not listening ({exc.strerror or exc})"

    def check_answering(self, timeout: float) -> str | None:
        """The emulator's API answers an HTTP request (any status) within ``timeout``: a hung emulator does not."""
        url = self.spec.endpoint_url
        if self._invoke_client is None or not url:
            return None
        return _emulator_not_answering(url, timeout)

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out["python_used"] = sys.version.split()[0]
        if self.emulator is not None:
            out["emulator"] = self.emulator.describe()
        elif self.spec.endpoint_url:
            out["emulator"] = {"endpoint": self.spec.endpoint_url}
        return out

    def teardown(self) -> None:
        try:
            # an emulator of its own process (endpoint_url): asked first, also when this target was torn down once
            # already (a lost target is torn down at once, and again when the session closes)
            url = self.spec.endpoint_url if self.emulator is None else None
            hung = _emulator_not_answering(url, 3.0) if url else None
            if hung:  # an emulator of its own process that does not answer: each API call would wait out its timeout
                self.log(f"not removing the functions: {hung}; they end with that emulator (`perfdesk teardown` later)")
            else:
                self._teardown_resources()  # before the emulator stops: S3 objects outlive it
        finally:
            if self.emulator is not None:
                self.emulator.stop()
                self.emulator = None
                self.spec = self.spec.model_copy(update={"endpoint_url": None})
            if self.registry is not None:
                self.registry.stop(remove_data=True)  # its images went with the session's repositories
                self.registry = None
            if self.local_s3 is not None:
                self.local_s3.stop()
                self.local_s3 = None
            self._invoke_client = None
            self.set_state(TargetStatus.TORN_DOWN)
