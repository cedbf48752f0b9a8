"""The emulator's records of functions and layer versions, in the shapes of Lambda's API responses."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import shutil
import threading
import uuid
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ACCOUNT_ID = "123456789012"
#: Lambda's limits that the emulator enforces the same way.
MAX_ZIP_UPLOAD = 50 * 1024 * 1024
MAX_UNZIPPED = 262_144_000
MAX_LAYERS = 5
MEMORY_RANGE = (128, 10240)
TIMEOUT_RANGE = (1, 900)
EPHEMERAL_RANGE = (512, 10240)
#: The function's environment variables, all together (keys and values), at most 4 KB.
MAX_VARIABLES_BYTES = 4096
#: Set by Lambda itself: a function's configuration may not set them.
RESERVED_VARIABLES = frozenset(
    {
        "_HANDLER",
        "_X_AMZN_TRACE_ID",
        "AWS_DEFAULT_REGION",
        "AWS_REGION",
        "AWS_EXECUTION_ENV",
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_INITIALIZATION_TYPE",
        "AWS_LAMBDA_LOG_GROUP_NAME",
        "AWS_LAMBDA_LOG_STREAM_NAME",
        "AWS_ACCESS_KEY",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_LAMBDA_RUNTIME_API",
        "LAMBDA_TASK_ROOT",
        "LAMBDA_RUNTIME_DIR",
    }
)
_NAME_RX = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_VAR_RX = re.compile(r"^[a-zA-Z]([a-zA-Z0-9_])+$")


class ApiError(Exception):
    """An error answered in Lambda's JSON shape; ``code`` becomes the ``x-amzn-ErrorType`` header."""

    def __init__(self, status: int, code: str, message: str, extra: dict[str, Any] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra or {}


def not_found(what: str) -> ApiError:
    return ApiError(404, "ResourceNotFoundException", f"{what} not found.")


def invalid(message: str) -> ApiError:
    return ApiError(400, "InvalidParameterValueException", message)


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000"


def dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def code_zip(code: dict, region: str, endpoint_url: str | None = None) -> tuple[bytes, bool]:
    """The zip a Code (or layer Content) argument names, and whether it came inline: ``ZipFile`` (base64), or
    ``S3Bucket``/``S3Key`` (``S3ObjectVersion``) read from the emulator's S3 endpoint, as Lambda reads it from S3.
    That endpoint is boto3's own configuration (``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``: the moto server
    locally) unless ``endpoint_url`` names one; with no credentials configured, dummy ones (a local S3 checks
    none)."""
    if "ZipFile" in code:
        return base64.b64decode(code["ZipFile"]), True
    if not (code.get("S3Bucket") and code.get("S3Key")):
        raise invalid("Code must name a ZipFile, or an S3Bucket and S3Key (the emulator runs no container images).")
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    session = boto3.session.Session(region_name=region)
    creds = {} if session.get_credentials() else {"aws_access_key_id": "local", "aws_secret_access_key": "local"}
    args = {"Bucket": code["S3Bucket"], "Key": code["S3Key"]}
    if code.get("S3ObjectVersion"):
        args["VersionId"] = code["S3ObjectVersion"]
    try:
        return session.client("s3", endpoint_url=endpoint_url, **creds).get_object(**args)["Body"].read(), False
    except ClientError as exc:
        err = exc.response.get("Error", {})
        raise invalid(
            f"Error occurred while GetObject. S3 Error Code: {err.get('Code')}. S3 Error Message: {err.get('Message')}"
        ) from None
    except BotoCoreError as exc:
        raise invalid(f"Error occurred while GetObject from s3://{args['Bucket']}/{args['Key']}: {exc}") from None


def open_zip(data: bytes, *, inline: bool = True) -> tuple[zipfile.ZipFile, int]:
    """Check an uploaded zip as Lambda does before it unpacks anything: (the zip, its unzipped size). Only a zip
    sent inline is held to the 50 MB upload limit; one read from S3 to the unzipped limit alone."""
    if inline and len(data) > MAX_ZIP_UPLOAD:
        raise ApiError(
            413,
            "RequestEntityTooLargeException",
            f"Zipped size must be smaller than {MAX_ZIP_UPLOAD} bytes (got {len(data)}).",
        )
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        unzipped = sum(i.file_size for i in zf.infolist())
    except zipfile.BadZipFile as exc:
        raise invalid(
            f"Could not unzip uploaded file: {exc}. Please check your file, then try to upload again."
        ) from None
    if unzipped > MAX_UNZIPPED:
        raise invalid(f"Unzipped size must be smaller than {MAX_UNZIPPED} bytes")
    return zf, unzipped


def check_combined_size(code_unzipped: int, layers: list[LayerVersion]) -> None:
    """Lambda's 250 MB limit on the unzipped code and all its layers together."""
    layers_total = sum(lv.unzipped_size for lv in layers)
    if layers_total > MAX_UNZIPPED:
        raise invalid(f"Layers consume more than the available size of {MAX_UNZIPPED} bytes")
    total = code_unzipped + layers_total
    if total > MAX_UNZIPPED:
        raise invalid(
            f"Function code combined with layers exceeds the maximum allowed size of {MAX_UNZIPPED} bytes. "
            f"The actual size is {total} bytes."
        )


def check_variables(variables: dict) -> None:
    """Lambda's rules for a function's environment variables: valid keys, none reserved, 4 KB in all."""
    bad = sorted(k for k in variables if not isinstance(k, str) or not _VAR_RX.match(k))
    if bad:
        raise invalid(
            f"1 validation error detected: Value at 'environment.variables' failed to satisfy constraint: Map keys "
            f"must satisfy constraint: [Member must satisfy regular expression pattern: [a-zA-Z]([a-zA-Z0-9_])+] "
            f"(keys: {', '.join(map(str, bad))})"
        )
    reserved = sorted(k for k in variables if k in RESERVED_VARIABLES)
    if reserved:
        raise invalid(
            "Lambda was unable to configure your environment variables because the environment variables you have "
            "provided contains reserved keys that are currently not supported for modification. Reserved keys used "
            f"in this request: {', '.join(reserved)}"
        )
    measured = json.dumps(variables, separators=(",", ":"))
    if len(measured.encode()) > MAX_VARIABLES_BYTES:
        raise invalid(
            "Lambda was unable to configure your environment variables because the environment variables you have "
            f"provided exceeded the 4KB limit. String measured: {measured}"
        )


def unpack_zip(data: bytes, dest: Path, *, inline: bool = True) -> tuple[str, int, int]:
    """Unpack a zip (checked, path-safe) into ``dest``; return (base64 sha256, zip size, unzipped size)."""
    zf, unzipped = open_zip(data, inline=inline)
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    zf.extractall(dest)  # extractall strips absolute paths and '..' components
    for info in zf.infolist():  # keep the executable bits (zipfile drops them)
        mode = (info.external_attr >> 16) & 0o777
        if mode:
            (dest / info.filename).chmod(mode | 0o400)
    return base64.b64encode(hashlib.sha256(data).digest()).decode(), len(data), unzipped


@dataclass
class LayerVersion:
    name: str
    version: int
    directory: Path
    code_sha256: str
    code_size: int
    description: str = ""
    compatible_runtimes: list[str] = field(default_factory=list)
    compatible_architectures: list[str] = field(default_factory=list)
    license_info: str | None = None
    created: str = field(default_factory=now_iso)
    unzipped_size: int = 0

    @property
    def layer_arn(self) -> str:
        return f"arn:aws:lambda:{{region}}:{ACCOUNT_ID}:layer:{self.name}"

    def to_api(self, region: str, host: str) -> dict[str, Any]:
        layer_arn = self.layer_arn.format(region=region)
        out = {
            "Content": {
                "Location": f"{host}/layer-content/{self.name}/{self.version}",
                "CodeSha256": self.code_sha256,
                "CodeSize": self.code_size,
            },
            "LayerArn": layer_arn,
            "LayerVersionArn": f"{layer_arn}:{self.version}",
            "Description": self.description,
            "CreatedDate": self.created,
            "Version": self.version,
            "CompatibleRuntimes": self.compatible_runtimes,
            "CompatibleArchitectures": self.compatible_architectures,
        }
        if self.license_info:
            out["LicenseInfo"] = self.license_info
        return out


@dataclass
class FunctionRecord:
    name: str
    region: str
    runtime: str
    role: str
    handler: str
    task_dir: Path
    code_sha256: str
    code_size: int
    description: str = ""
    timeout: int = 3
    memory: int = 128
    variables: dict[str, str] = field(default_factory=dict)
    layers: list[LayerVersion] = field(default_factory=list)
    architectures: list[str] = field(default_factory=lambda: ["x86_64"])
    tags: dict[str, str] = field(default_factory=dict)
    reserved_concurrency: int | None = None
    revision: int = 1  # bumped by every configuration or code change: environments of older ones are retired
    revision_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    last_modified: str = field(default_factory=now_iso)
    url_config: dict[str, Any] | None = None
    ephemeral_mb: int = 512
    unzipped_size: int = 0
    policy: list[dict[str, Any]] = field(default_factory=list)  # resource-based policy statements
    credentials: Any = None  # the execution role's stand-in credentials (environment.Credentials)
    image: Any = None  # images.ImageFunction of a container-image function (PackageType Image)
    capacity_provider_config: dict[str, Any] | None = None  # Lambda Managed Instances (capacity.py)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    # published versions (snapstart.py): $LATEST holds them; a version is a frozen copy with its number
    version: str = "$LATEST"
    versions: dict[str, FunctionRecord] = field(default_factory=dict, repr=False)
    version_seq: int = 0
    snap_start: str = "None"  # SnapStart.ApplyOn: "PublishedVersions" or "None"
    state: str = "Active"  # a SnapStart version is Pending until its snapshot is taken
    state_reason: tuple[str, str] | None = None
    snapshot_template: Any = None  # snapstart.SnapshotTemplate of a SnapStart version

    @property
    def arn(self) -> str:
        return f"arn:aws:lambda:{self.region}:{ACCOUNT_ID}:function:{self.name}"

    def touch(self) -> None:
        self.revision += 1
        self.revision_id = str(uuid.uuid4())
        self.last_modified = now_iso()

    def configuration(self) -> dict[str, Any]:
        """GetFunctionConfiguration's answer. Updates apply synchronously, so State is Active at once (an image
        function's state is its image's: :mod:`images`)."""
        out = {
            "FunctionName": self.name,
            "FunctionArn": self.arn,
            "Runtime": self.runtime,
            "Role": self.role,
            "Handler": self.handler,
            "CodeSize": self.code_size,
            "Description": self.description,
            "Timeout": self.timeout,
            "MemorySize": self.memory,
            "LastModified": self.last_modified,
            "CodeSha256": self.code_sha256,
            "Version": "$LATEST",
            "Environment": {"Variables": dict(self.variables)},
            "TracingConfig": {"Mode": "PassThrough"},
            "RevisionId": self.revision_id,
            "Layers": [
                {"Arn": lv.to_api(self.region, "")["LayerVersionArn"], "CodeSize": lv.code_size} for lv in self.layers
            ],
            "State": "Active",
            "LastUpdateStatus": "Successful",
            "PackageType": "Zip",
            "Architectures": list(self.architectures),
            "EphemeralStorage": {"Size": self.ephemeral_mb},
            "LoggingConfig": {"LogFormat": "Text", "LogGroup": f"/aws/lambda/{self.name}"},
            "SnapStart": {"ApplyOn": self.snap_start, "OptimizationStatus": "Off"},
        }
        if self.version != "$LATEST":
            from perfdesk.lambda_pkg.emulator.snapstart import version_configuration

            out = version_configuration(self, out)
        if self.capacity_provider_config:
            out["CapacityProviderConfig"] = self.capacity_provider_config
        return out if self.image is None else self.image.configuration(out)


def function_name_from(ref: str) -> str:
    """A function name from a name, a partial or a full ARN (qualifiers dropped)."""
    if ref.startswith("arn:"):
        parts = ref.split(":")
        if len(parts) >= 7 and parts[5] == "function":
            return parts[6]
        raise invalid(f"{ref} is not a function ARN")
    name = ref.split(":")[0]
    if not _NAME_RX.match(name):
        raise invalid(f"1 validation error detected: Value '{ref}' at 'functionName' failed to satisfy constraint")
    return name


def layer_name_from(ref: str) -> str:
    if ref.startswith("arn:"):
        parts = ref.split(":")
        if len(parts) >= 7 and parts[5] == "layer":
            return parts[6]
        raise invalid(f"{ref} is not a layer ARN")
    return ref
