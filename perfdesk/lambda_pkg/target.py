"""Target kinds ``lambda`` (AWS Lambda) and ``local-lambda`` (perfdesk's emulator): the same boto3 code path.

Both deploy the handler with :class:`~perfdesk.lambda_pkg.functions.FunctionManager`, invoke it synchronously
with ``LogType=Tail`` and read the REPORT line (Duration, Billed Duration, Memory Size, Max Memory Used, Init
Duration) into each :class:`RequestResult`. ``force_cold`` changes the environment variable
``PERFDESK_COLD_NONCE`` (a configuration change retires every warm environment); ``set_memory`` updates
MemorySize and waits until the update is Successful.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from perfdesk.controllers.results import ERROR, OK, THROTTLED, TIMEOUT, RequestResult, result_from_response
from perfdesk.controllers.target import ColdStart, Target, TargetContext, TargetError, TargetSpec
from perfdesk.controllers.workload import Payload, WorkloadSpec
from perfdesk.lambda_pkg.report import parse_log_result
from perfdesk.shipped.wire import encode_request, sample_jpeg

LOCAL_ROLE = "arn:aws:iam::123456789012:role/perfdesk-local"
#: The largest zip Lambda takes inline (CreateFunction, PublishLayerVersion); larger ones must come from S3.
MAX_INLINE_ZIP = 50 * 1024 * 1024


def _inline_parts(zip_path: Path, limit: int = MAX_INLINE_ZIP) -> list[Path]:
    """A layer zip as it is if Lambda takes it inline, else split by top-level item (``python/numpy``, ...) into
    layers that each are (the layers unzip into the same /opt, so the function sees one tree)."""
    import zipfile

    if zip_path.stat().st_size <= limit:
        return [zip_path]
    with zipfile.ZipFile(zip_path) as zf:
        groups: dict[str, list[zipfile.ZipInfo]] = {}
        for info in zf.infolist():
            parts = info.filename.split("/")
            groups.setdefault("/".join(parts[:2]) if len(parts) > 2 else info.filename, []).append(info)
        budget = int(limit * 0.95)  # headers and the central directory on top of the compressed data
        bins: list[list[str]] = []
        sizes: list[int] = []
        for key in sorted(groups, key=lambda k: -sum(i.compress_size + 100 for i in groups[k])):
            size = sum(i.compress_size + 100 for i in groups[key])
            if size > budget:
                raise ValueError(
                    f"{key} alone is {size / 2**20:.0f} MB zipped, above the "
                    f"{limit / 2**20:.0f} MB Lambda takes inline (it must go through S3)",
                )
            for b, used in enumerate(sizes):
                if used + size <= budget:
                    bins[b].append(key)
                    sizes[b] += size
                    break
            else:
                bins.append([key])
                sizes.append(size)
        out = []
        for b, keys in enumerate(bins):
            dest = zip_path.with_name(f"{zip_path.stem}-{b + 1}.zip")
            with zipfile.ZipFile(dest, "w") as part:
                for key in sorted(keys):
                    for info in groups[key]:
                        part.writestr(info, zf.read(info), compress_type=zipfile.ZIP_DEFLATED)
            out.append(dest)
    return out


class _FunctionSpec(TargetSpec):
    function_name: str | None = Field(None, description="Function name (default: perfdesk-<target>-<session>).")
    memory_mb: int = Field(1536, ge=128, le=10240, description="Memory size in MB (CPU share follows it).")
    timeout_s: int = Field(60, ge=1, le=900, description="Function timeout in seconds.")
    architecture: Literal["x86_64", "arm64"] = Field("x86_64", description="Instruction set of the function.")
    python: Literal["3.10", "3.11", "3.12", "3.13"] = Field("3.11", description="Lambda Python runtime version.")
    weights_placement: Literal["package", "layer", "s3"] = Field(
        "package", description="Where a weights file goes: in the code zip, in a layer, or read from S3 at init."
    )
    weights_bucket: str | None = Field(None, description="S3 bucket for weights placement 's3'.")
    reserved_concurrency: int | None = Field(
        None, ge=0, le=10000, description="Reserved concurrency (throttles above it)."
    )
    function_url: bool = Field(False, description="Also create a function URL (the HTTP path can be measured).")
    region: str = Field("us-east-1", description="AWS region.")
    endpoint_url: str | None = Field(None, description="Lambda API endpoint (default: AWS; e.g. a running emulator).")
    environment: dict[str, str] = Field(default_factory=dict, description="Extra environment variables.")


class LambdaTargetSpec(_FunctionSpec):
    """An AWS Lambda function deployed from a zip with layers, or from a container image."""

    kind: Literal["lambda"] = "lambda"
    role_arn: str | None = Field(None, description="Execution role ARN (default: one is created, least privilege).")
    layers: list[str] = Field(
        default_factory=list, description="Prebuilt dependency layer ARNs (default: one is built from wheels)."
    )
    image_uri: str | None = Field(None, description="ECR image URI of a container-image function (PyTorch-sized).")
    profile_name: str | None = Field(None, description="AWS credentials profile name (never the keys themselves).")


class LocalLambdaTargetSpec(_FunctionSpec):
    """A function on perfdesk's local Lambda emulator (no AWS account)."""

    kind: Literal["local-lambda"] = "local-lambda"
    concurrency: int = Field(10, ge=1, le=1000, description="The emulator's account concurrency limit.")
    idle_s: float = Field(300.0, gt=0, le=7200, description="Idle environments are reclaimed after this long.")
    cpu_limits: bool = Field(True, description="CPU share proportional to memory (cgroups) where the OS allows.")


class _FunctionTarget(Target):
    billing = "function"
    supports_memory = True

    def __init__(self, spec: _FunctionSpec, ctx: TargetContext):
        super().__init__(spec, ctx)
        self.spec: _FunctionSpec = spec
        self.function = spec.function_name or f"perfdesk-{spec.name}-{ctx.session_id}"[:64].replace(".", "-")
        self.manager = None
        self._invoke_client = None
        self._layer_names: list[str] = []
        self._role_names: list[str] = []
        self.memory_mb = spec.memory_mb
        self.facts: dict[str, Any] = {}
        self._lock = threading.Lock()

    # -- clients ---------------------------------------------------------------------------------------------
    def _session(self):
        import boto3

        return boto3.session.Session(region_name=self.spec.region)

    def _client(self, service: str, *, invoke: bool = False):
        from botocore.config import Config

        read = max(self.spec.request_timeout_s, self.spec.timeout_s + 10.0) if invoke else 60
        cfg = Config(
            retries={"total_max_attempts": 1 if invoke else 3, "mode": "standard"},
            read_timeout=read,
            connect_timeout=10,
            max_pool_connections=128,
        )
        kwargs: dict[str, Any] = {"config": cfg}
        if self.spec.endpoint_url and service == "lambda":
            kwargs["endpoint_url"] = self.spec.endpoint_url
        return self._session().client(service, **kwargs)

    def _variables(self, workload: WorkloadSpec, weights_env: str) -> dict[str, str]:
        engine = workload.engine_config()
        engine.device, engine.weights = "cpu", weights_env
        env = {**engine.to_env(), "PERFDESK_COLD_NONCE": uuid.uuid4().hex[:12]}
        env.update(self.spec.environment)
        return env

    def _work_dir(self) -> Path:
        d = Path(self.ctx.work_dir) / "lambda" / self.name
        d.mkdir(parents=True, exist_ok=True)
        return d

    def _weights(self, workload: WorkloadSpec) -> Path | None:
        w = workload.weights
        if w == "random" or "://" in w:
            return None
        return Path(w)  # absolute: the profile loader resolved it

    # -- deploy helpers shared by both kinds -----------------------------------------------------------------
    def _deploy_common(
        self,
        workload: WorkloadSpec,
        *,
        role_arn: str,
        layers: list[str],
        image_uri: str | None,
        extra_variables: dict[str, str] | None = None,
    ) -> None:
        from perfdesk.lambda_pkg import builders

        work = self._work_dir()
        weights_file = self._weights(workload)
        weights_env = workload.weights
        in_package = weights_file is not None and self.spec.weights_placement == "package"
        if weights_file is not None and not weights_file.is_file():
            raise TargetError(
                self.name, "deploy", f"weights file {weights_file} not found", "fix 'weights' in the workload"
            )
        if weights_file is not None:
            if self.spec.weights_placement == "package":
                weights_env = f"weights/{weights_file.name}"
            elif self.spec.weights_placement == "layer":
                wl = builders.build_weights_layer(weights_file, work / "weights-layer.zip")
                layer_name = f"{self.function}-weights"[:64]
                layers = layers + [
                    self.manager.publish_layer(
                        layer_name,
                        wl,
                        runtimes=[f"python{self.spec.python}"],
                        architectures=[self.spec.architecture],
                        what="weights",
                    )
                ]
                self._layer_names.append(layer_name)
                weights_env = f"/opt/weights/{weights_file.name}"
            else:
                weights_env = self._upload_weights(weights_file)
        code = None
        if image_uri is None:
            try:
                code = builders.build_code_zip(work / "code.zip", weights=weights_file if in_package else None)
            except builders.PackageTooLarge as exc:
                raise TargetError(self.name, "package", str(exc)) from None
            self.facts["code_zip_bytes"] = code.stat().st_size
        variables = self._variables(workload, weights_env)
        variables.update(extra_variables or {})
        try:
            cfg = self.manager.deploy_function(
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
            )
            if self.spec.reserved_concurrency is not None:
                self.manager.set_reserved_concurrency(self.function, self.spec.reserved_concurrency)
            if self.spec.function_url:
                self.facts["function_url"] = self.manager.ensure_url(self.function)
        except Exception as exc:  # botocore ClientError / WaiterError: say which call and why
            raise TargetError(
                self.name, "deploy", f"function {self.function}: {exc}", "check the role, region and quotas"
            ) from exc
        self.facts.update(
            {
                "function": self.function,
                "function_arn": cfg.get("FunctionArn"),
                "runtime": cfg.get("Runtime"),
                "architecture": self.spec.architecture,
                "layers": [layer["Arn"] for layer in cfg.get("Layers", [])],
            }
        )
        self.memory_mb = self.spec.memory_mb
        self._invoke_client = self._client("lambda", invoke=True)
        self._probe()

    def _upload_weights(self, path: Path) -> str:
        raise TargetError(
            self.name,
            "deploy",
            "weights placement 's3' is not available on this target kind",
            "use 'package' or 'layer'",
        )

    def _probe(self) -> None:
        """One invocation with a tiny image: the model loads (or its error surfaces) before any trial."""
        res = self.send(Payload(["probe"], [b""], encode_request([sample_jpeg()], {"top_k": 1}), 1))
        if res.status != OK:
            raise TargetError(
                self.name, "first invocation", res.error or res.status, "see the function's log in the log pane"
            )
        self.facts["probe_init_ms"] = res.init_ms
        self.set_state("ready", f"{self.function} at {self.memory_mb} MB")

    # -- the interface ---------------------------------------------------------------------------------------
    def send(self, payload: Payload, *, timeout: float | None = None) -> RequestResult:
        """Invoke (RequestResponse, LogType=Tail); never raises: throttles, timeouts and errors become statuses."""
        from botocore.exceptions import BotoCoreError, ClientError, ConnectTimeoutError, ReadTimeoutError

        if self._invoke_client is None:
            return RequestResult(actual_send=time.time(), receive=time.time(), status=ERROR, error="not deployed")
        t0 = time.time()
        try:
            resp = self._invoke_client.invoke(
                FunctionName=self.function, InvocationType="RequestResponse", LogType="Tail", Payload=payload.body
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
            lambda: self.manager.set_variables(self.function, PERFDESK_COLD_NONCE=uuid.uuid4().hex[:12]),
            "force a cold start",
        )
        self.set_state("cold", "configuration changed; the next request starts a new environment")
        return ColdStart()

    def set_memory(self, memory_mb: int) -> None:
        if not 128 <= memory_mb <= 10240:
            raise TargetError(self.name, "set memory", f"{memory_mb} MB is outside Lambda's 128..10240 MB")
        self._configure(lambda: self.manager.update(self.function, MemorySize=memory_mb), f"set memory {memory_mb}")
        self.memory_mb = memory_mb
        self.set_state("cold", f"{memory_mb} MB")

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
            return self.manager.teardown(layer_names=self._layer_names, role_names=self._role_names)
        except Exception as exc:
            raise TargetError(
                self.name,
                "teardown",
                str(exc),
                f"delete resources tagged perfdesk:session={self.ctx.session_id} by hand",
            ) from exc

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "function": self.function,
            "memory_mb": self.memory_mb,
            "timeout_s": self.spec.timeout_s,
            "architecture": self.spec.architecture,
            "python": self.spec.python,
            "weights_placement": self.spec.weights_placement,
            **self.facts,
        }


class LambdaTarget(_FunctionTarget):
    """A function on AWS Lambda (credentials from the usual boto3 chain or a named profile)."""

    kind = "lambda"
    spec_model = LambdaTargetSpec

    def _session(self):
        import boto3

        return boto3.session.Session(region_name=self.spec.region, profile_name=self.spec.profile_name)

    def deploy(self, workload: WorkloadSpec) -> None:
        from perfdesk.lambda_pkg import builders
        from perfdesk.lambda_pkg.functions import FunctionManager

        spec: LambdaTargetSpec = self.spec  # type: ignore[assignment]
        self.workload = workload
        self.set_state("deploying")
        self.manager = FunctionManager(
            self._client("lambda"),
            self.ctx.session_id,
            iam_client=None if spec.role_arn else self._client("iam"),
            say=self.log,
        )
        role = spec.role_arn
        if role is None:
            role_name = f"perfdesk-{self.ctx.session_id}"[:64]
            role = self.manager.ensure_role(
                role_name, region=spec.region, function_prefix="perfdesk-", bucket=spec.weights_bucket
            )
            self._role_names.append(role_name)
        layers = list(spec.layers)
        if not layers and spec.image_uri is None:
            self.log(f"building the dependencies layer ({spec.architecture}, Python {spec.python}) from wheels")
            try:
                deps = builders.build_dependency_layer(
                    self._work_dir() / "deps-layer.zip",
                    builders.RUNTIME_REQUIREMENTS[workload.runtime],
                    spec.python,
                    spec.architecture,
                    work_dir=self._work_dir() / "deps",
                )
            except builders.PackageTooLarge as exc:
                raise TargetError(self.name, "dependencies layer", str(exc)) from None
            except RuntimeError as exc:
                raise TargetError(self.name, "dependencies layer", str(exc), "check the runtime and network") from None
            name = f"perfdesk-deps-{workload.runtime}-{spec.architecture}"
            layers.append(
                self.manager.publish_layer(
                    name,
                    deps,
                    runtimes=[f"python{spec.python}"],
                    architectures=[spec.architecture],
                    what="dependencies",
                )
            )
            self._layer_names.append(name)
        self._deploy_common(
            workload,
            role_arn=role,
            layers=layers,
            image_uri=spec.image_uri,
            extra_variables={"PERFDESK_CACHE_DIR": "/tmp/perfdesk-cache"},
        )

    def _upload_weights(self, path: Path) -> str:
        bucket = self.spec.weights_bucket
        if not bucket:
            raise TargetError(self.name, "deploy", "weights placement 's3' needs weights_bucket")
        key = f"perfdesk/{self.ctx.session_id}/{path.name}"
        self._client("s3").upload_file(str(path), bucket, key)
        return f"s3://{bucket}/{key}"

    def teardown(self) -> None:
        self._teardown_resources()
        self._invoke_client = None
        self.set_state("torn down")


class LocalLambdaTarget(_FunctionTarget):
    """A function on perfdesk's local Lambda emulator, started in-process unless ``endpoint_url`` names one.

    Packaged as for AWS: the code zip from this checkout, and its dependencies as a layer of manylinux wheels for the
    function's Python version (the emulator's environments see nothing of this machine's Python). The ONNX model is
    exported here, where torch is, and shipped as a layer, so the function imports only ONNX Runtime. PyTorch and
    TensorFlow do not fit Lambda's 250 MB for code and layers: they are refused at deploy, as AWS would refuse them.
    """

    kind = "local-lambda"
    spec_model = LocalLambdaTargetSpec

    def __init__(self, spec: LocalLambdaTargetSpec, ctx: TargetContext):
        super().__init__(spec, ctx)
        self.emulator = None

    def _session(self):
        import boto3

        # the emulator checks no signature: dummy keys, so no real credential is ever sent to it
        return boto3.session.Session(
            region_name=self.spec.region, aws_access_key_id="perfdesk-local", aws_secret_access_key="perfdesk-local"
        )

    def deploy(self, workload: WorkloadSpec) -> None:
        from perfdesk.lambda_pkg.emulator import Emulator
        from perfdesk.lambda_pkg.functions import FunctionManager

        spec: LocalLambdaTargetSpec = self.spec  # type: ignore[assignment]
        self.workload = workload
        self.set_state("deploying")
        if spec.endpoint_url is None and self.emulator is None:
            self.emulator = Emulator(
                idle_s=spec.idle_s,
                account_concurrency=spec.concurrency,
                cpu_limits=spec.cpu_limits,
                region=spec.region,
                work_dir=self._work_dir() / "emulator",
            ).start()
            self.spec = spec.model_copy(update={"endpoint_url": self.emulator.url})
            self.log(f"emulator on {self.emulator.url}")
        self.manager = FunctionManager(self._client("lambda"), self.ctx.session_id, say=self.log)
        layers, variables = self._layers(workload)
        self._deploy_common(workload, role_arn=LOCAL_ROLE, layers=layers, image_uri=None, extra_variables=variables)

    def _layers(self, workload: WorkloadSpec) -> tuple[list[str], dict[str, str]]:
        """The dependencies layer (wheels for the function's Python and architecture) and, for ONNX Runtime, the
        model exported here as a layer; returns (layer ARNs, variables for the function)."""
        from perfdesk.lambda_pkg import builders

        spec = self.spec
        if workload.runtime != "onnx":
            raise TargetError(
                self.name,
                "package",
                f"the {workload.runtime} runtime's packages do not fit Lambda's 250 MB limit for a function's code "
                "and layers (AWS refuses such a function, and so does the emulator)",
                "use runtime 'onnx' (the model is exported at deploy, the function needs only onnxruntime), "
                "or a container image",
            )
        work = self._work_dir()
        self.log(f"building the dependencies layer ({spec.architecture}, Python {spec.python}) from wheels")
        try:
            deps = builders.build_dependency_layer(
                work / "deps-layer.zip",
                builders.RUNTIME_REQUIREMENTS[workload.runtime],
                spec.python,
                spec.architecture,
                work_dir=work / "deps",
            )
        except builders.PackageTooLarge as exc:
            raise TargetError(self.name, "dependencies layer", str(exc)) from None
        except RuntimeError as exc:
            raise TargetError(self.name, "dependencies layer", str(exc), "check the runtime and network") from None
        layers = []
        try:
            parts = _inline_parts(deps)
        except ValueError as exc:
            raise TargetError(self.name, "dependencies layer", str(exc)) from None
        for i, part in enumerate(parts):
            name = f"perfdesk-deps-{workload.runtime}-{spec.architecture}" + (f"-{i + 1}" if i else "")
            layers.append(
                self.manager.publish_layer(
                    name,
                    part,
                    runtimes=[f"python{spec.python}"],
                    architectures=[spec.architecture],
                    what="dependencies",
                )
            )
            self._layer_names.append(name)
        variables: dict[str, str] = {}
        if workload.weights == "random" or "://" not in workload.weights:
            from perfdesk.lambda_pkg.builders import in_memory_zip
            from perfdesk.shipped.inference.onnx_export import prepare_onnx

            cfg = workload.engine_config()
            cfg.cache_dir = str(work / "model-cache")
            try:
                onnx_file = prepare_onnx(cfg)
            except Exception as exc:  # an InferenceError naming the model, or torch's export failing
                raise TargetError(self.name, "export the ONNX model", str(exc)) from None
            layer_zip = work / "model-layer.zip"
            layer_zip.write_bytes(in_memory_zip({f"perfdesk-cache/onnx/{onnx_file.name}": onnx_file.read_bytes()}))
            name = f"{self.function}-model"[:64]
            layers.append(
                self.manager.publish_layer(
                    name, layer_zip, runtimes=[f"python{spec.python}"], architectures=[spec.architecture], what="model"
                )
            )
            self._layer_names.append(name)
            variables["PERFDESK_CACHE_DIR"] = "/opt/perfdesk-cache"
            self.facts["onnx_model"] = onnx_file.name
        return layers, variables

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out["dependencies"] = "a layer of manylinux wheels for the function's Python (not this machine's packages)"
        if self.emulator is not None:
            out["emulator"] = self.emulator.describe()
        elif self.spec.endpoint_url:
            out["emulator"] = {"endpoint": self.spec.endpoint_url}
        return out

    def teardown(self) -> None:
        try:
            if self.manager is not None and self.spec.endpoint_url:
                self._teardown_resources()
        finally:
            if self.emulator is not None:
                self.emulator.stop()
                self.emulator = None
                self.spec = self.spec.model_copy(update={"endpoint_url": None})
            self._invoke_client = None
            self.set_state("torn down")
