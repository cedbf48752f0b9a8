"""Function management through boto3: execution role, layers, functions, concurrency, URLs, S3 uploads, teardown.

The same code runs against AWS, the moto server (tests of the control plane) and perfdesk's emulator (end to end):
clients come in through the constructor, and boto3 reads AWS's own configuration for them (credential chain,
``AWS_PROFILE``, ``AWS_REGION``, ``AWS_ENDPOINT_URL`` and ``AWS_ENDPOINT_URL_<SERVICE>``).

Everything a session creates carries its tags (functions, roles, the S3 bucket and objects) or, where a resource
cannot be tagged (layer versions), the session id in its description; and each is written to the session's
:class:`Ledger` as it is created, so ``perfdesk teardown SESSION`` finds all of it again from another process, also
after the session was killed (:mod:`perfdesk.lambda_pkg.teardown`).

Zips up to 50 MB go inline; larger ones are uploaded to S3 first (:class:`ArtifactBucket`) and referenced by
S3Bucket/S3Key, as Lambda requires.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from perfdesk.lambda_pkg.builders import MAX_INLINE_ZIP_BYTES

log = logging.getLogger(__name__)

SESSION_TAG = "perfdesk:session"
MANAGED_TAG = "perfdesk:managed"
LAYER_MARK = "perfdesk session "
#: IAM path of the roles perfdesk creates (``perfdesk teardown`` lists only these).
ROLE_PATH = "/perfdesk/"
#: Key prefix of everything perfdesk uploads to S3: ``perfdesk/<session>/<file>``.
S3_PREFIX = "perfdesk/"


def aws_region(session=None) -> str | None:
    """The region AWS's configuration names: ``AWS_REGION`` (the SDKs' standard variable, which botocore itself
    does not read), else what boto3 finds (``AWS_DEFAULT_REGION``, the profile's ``region``)."""
    if os.environ.get("AWS_REGION"):
        return os.environ["AWS_REGION"]
    if session is None:
        import boto3

        session = boto3.session.Session()
    return session.region_name


def session_tags(session_id: str) -> dict[str, str]:
    return {SESSION_TAG: session_id, MANAGED_TAG: "true"}


class Ledger:
    """The session's record of what it creates in AWS: ``aws-resources.jsonl`` in the session folder, one JSON
    object per line (``{"type": "layer", "name": ..., "region": ...}``), appended and flushed to disk *before* each
    create call, so a session killed at any point leaves the names behind. ``folder`` None: records nothing."""

    FILE = "aws-resources.jsonl"

    def __init__(self, folder: str | Path | None, **common: Any):
        self.path = Path(folder) / self.FILE if folder is not None else None
        self.common = {k: v for k, v in common.items() if v is not None}
        self._lock = threading.Lock()

    def add(self, type_: str, **fields: Any) -> None:
        if self.path is None:
            return
        entry = {"type": type_, **self.common, **{k: v for k, v in fields.items() if v is not None}}
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(entry, sort_keys=True) + "\n")
                fh.flush()
                os.fsync(fh.fileno())

    @classmethod
    def read(cls, folder: str | Path) -> list[dict]:
        """Every entry of a session folder's ledger (a half-written last line, from a kill, is skipped)."""
        path = Path(folder) / cls.FILE
        if not path.is_file():
            return []
        out = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out


def _bucket_slug(session_id: str) -> str:
    slug = re.sub(r"[^a-z0-9-]+", "-", session_id.lower()).strip("-")
    return f"perfdesk-{slug}"[:54].rstrip("-") + "-" + secrets.token_hex(4)


class ArtifactBucket:
    """Where zips over the inline limit (and S3-placed models and weights) go: ``perfdesk/<session>/<file>`` in the
    bucket the profile names, or in one this session creates (``perfdesk-<session>-<random>``, tagged), on first use.

    :meth:`remove` deletes the session's objects, and the bucket itself if the session created it."""

    def __init__(
        self,
        s3,
        session_id: str,
        region: str,
        *,
        bucket: str | None = None,
        ledger: Ledger | None = None,
        say: Callable[[str], None] | None = None,
    ):
        self.s3 = s3
        self.session_id = session_id
        self.region = region
        self.bucket = bucket
        self.created = False
        self.ledger = ledger or Ledger(None)
        self.say = say or (lambda line: log.info("%s", line))
        self.keys: list[str] = []

    @property
    def prefix(self) -> str:
        return f"{S3_PREFIX}{self.session_id}/"

    def ensure(self) -> str:
        """The bucket's name; created and tagged now if the profile named none."""
        if self.bucket is not None:
            if not self.created:
                self.ledger.add("s3-prefix", bucket=self.bucket, prefix=self.prefix)
            return self.bucket
        name = _bucket_slug(self.session_id)
        self.ledger.add("s3-bucket", bucket=name)
        args: dict[str, Any] = {"Bucket": name}
        if self.region != "us-east-1":  # us-east-1 takes no location constraint
            args["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        self.s3.create_bucket(**args)
        self.s3.put_bucket_tagging(
            Bucket=name, Tagging={"TagSet": [{"Key": k, "Value": v} for k, v in session_tags(self.session_id).items()]}
        )
        self.bucket, self.created = name, True
        self.say(f"created S3 bucket {name} (tagged {SESSION_TAG}={self.session_id})")
        return name

    def upload(self, path: str | Path, name: str | None = None) -> dict[str, str]:
        """Upload a file as ``perfdesk/<session>/<name>`` (tagged); returns ``{"S3Bucket", "S3Key"}``."""
        bucket = self.ensure()
        key = self.prefix + (name or Path(path).name)
        self.ledger.add("s3-object", bucket=bucket, key=key)
        self.s3.upload_file(str(path), bucket, key, ExtraArgs={"Tagging": urlencode(session_tags(self.session_id))})
        self.keys.append(key)
        self.say(f"uploaded {Path(path).name} ({Path(path).stat().st_size / 2**20:.1f} MB) to s3://{bucket}/{key}")
        return {"S3Bucket": bucket, "S3Key": key}

    def remove(self) -> list[str]:
        """Delete what this session put in S3; returns what was deleted. Safe to repeat."""
        if self.bucket is None:
            return []
        return empty_bucket(self.s3, self.bucket, prefix="" if self.created else self.prefix, delete=self.created)


def empty_bucket(s3, bucket: str, *, prefix: str, delete: bool) -> list[str]:
    """Delete every object (and version) under ``prefix`` in ``bucket``, then the bucket itself if ``delete``."""
    removed: list[str] = []
    try:
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
            batch = [
                {"Key": v["Key"], "VersionId": v["VersionId"]}
                for v in page.get("Versions", []) + page.get("DeleteMarkers", [])
            ]
            for i in range(0, len(batch), 1000):
                s3.delete_objects(Bucket=bucket, Delete={"Objects": batch[i : i + 1000], "Quiet": True})
            removed += [f"s3://{bucket}/{v['Key']}" for v in page.get("Versions", [])]
        if delete:
            s3.delete_bucket(Bucket=bucket)
            removed.append(f"bucket {bucket}")
    except s3.exceptions.NoSuchBucket:
        pass
    return removed


TRUST_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}


def execution_policy(region: str, account: str, function_prefix: str, bucket: str | None = None) -> dict:
    """Least privilege: write its own log groups; read the named weights/images bucket (and nothing else)."""
    statements: list[dict[str, Any]] = [
        {"Effect": "Allow", "Action": "logs:CreateLogGroup", "Resource": f"arn:aws:logs:{region}:{account}:*"},
        {
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": f"arn:aws:logs:{region}:{account}:log-group:/aws/lambda/{function_prefix}*:*",
        },
    ]
    if bucket:
        statements.append({"Effect": "Allow", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/*"})
    return {"Version": "2012-10-17", "Statement": statements}


class FunctionManager:
    """Create, update, invoke-ready and tear down the functions of one session.

    ``lambda_client`` and ``iam_client`` are boto3 clients (any endpoint). ``waiter_delay`` is the poll interval
    of the until-active/updated waits (1 s on AWS; the emulator and moto answer at once)."""

    def __init__(
        self,
        lambda_client,
        session_id: str,
        iam_client=None,
        *,
        waiter_delay: int = 1,
        wait_timeout_s: float = 300.0,
        say: Callable[[str], None] | None = None,
        artifacts: ArtifactBucket | None = None,
        ledger: Ledger | None = None,
    ):
        self.lam = lambda_client
        self.iam = iam_client
        self.session_id = session_id
        self.waiter_delay = waiter_delay
        self.wait_timeout_s = wait_timeout_s
        self.say = say or (lambda line: log.info("%s", line))
        self.artifacts = artifacts
        self.ledger = ledger or Ledger(None)
        self.uploads: dict[str, str] = {}  # zip file name -> "inline" | "s3://bucket/key"

    @property
    def tags(self) -> dict[str, str]:
        return session_tags(self.session_id)

    def code(self, zip_path: str | Path) -> dict[str, Any]:
        """The Code/Content argument for a zip: inline under 50 MB, else uploaded to S3 and referenced by
        S3Bucket/S3Key (CreateFunction, UpdateFunctionCode and PublishLayerVersion take at most 50 MB inline)."""
        path = Path(zip_path)
        size = path.stat().st_size
        if size < MAX_INLINE_ZIP_BYTES:
            self.uploads[path.name] = "inline"
            return {"ZipFile": path.read_bytes()}
        if self.artifacts is None:
            raise ValueError(
                f"{path.name} is {size / 2**20:.1f} MB zipped, above the {MAX_INLINE_ZIP_BYTES // 2**20} MB Lambda "
                "takes inline; it must go through S3, and this manager has no bucket"
            )
        loc = self.artifacts.upload(path)
        self.uploads[path.name] = f"s3://{loc['S3Bucket']}/{loc['S3Key']}"
        return loc

    # -- role ------------------------------------------------------------------------------------------------
    def ensure_role(self, role_name: str, *, region: str, function_prefix: str, bucket: str | None = None) -> str:
        """Create (or reuse, if it is ours) the execution role; return its ARN."""
        if self.iam is None:
            raise ValueError("creating an execution role needs an IAM client; or give role_arn in the profile")
        try:
            role = self.iam.get_role(RoleName=role_name)["Role"]
            self.say(f"reusing execution role {role_name}")
        except self.iam.exceptions.NoSuchEntityException:
            self.ledger.add("role", name=role_name)
            role = self.iam.create_role(
                RoleName=role_name,
                Path=ROLE_PATH,
                AssumeRolePolicyDocument=json.dumps(TRUST_POLICY),
                Description="perfdesk function execution role (logs + weights bucket only)",
                Tags=[{"Key": k, "Value": v} for k, v in self.tags.items()],
            )["Role"]
            self.say(f"created execution role {role_name}")
        account = role["Arn"].split(":")[4]
        self.iam.put_role_policy(
            RoleName=role_name,
            PolicyName="perfdesk-execution",
            PolicyDocument=json.dumps(execution_policy(region, account, function_prefix, bucket)),
        )
        return role["Arn"]

    # -- layers ----------------------------------------------------------------------------------------------
    def publish_layer(
        self, name: str, zip_path: str | Path, *, runtimes: list[str], architectures: list[str], what: str = ""
    ) -> str:
        """Publish a layer version (through S3 above 50 MB zipped); layer versions take no tags, so its description
        carries the session id and the ledger its name, written before the call."""
        content = self.code(zip_path)
        self.ledger.add("layer", name=name)
        resp = self.lam.publish_layer_version(
            LayerName=name,
            Content=content,
            Description=f"{LAYER_MARK}{self.session_id} {what}".strip()[:256],
            CompatibleRuntimes=runtimes,
            CompatibleArchitectures=architectures,
        )
        self.say(f"published layer {resp['LayerVersionArn']}")
        return resp["LayerVersionArn"]

    # -- functions -------------------------------------------------------------------------------------------
    def exists(self, name: str) -> bool:
        try:
            self.lam.get_function(FunctionName=name)
            return True
        except self.lam.exceptions.ResourceNotFoundException:
            return False

    def deploy_function(
        self,
        name: str,
        *,
        zip_path: str | Path | None = None,
        image_uri: str | None = None,
        role_arn: str,
        handler: str,
        runtime: str,
        memory_mb: int,
        timeout_s: int,
        architecture: str,
        variables: dict[str, str],
        layers: list[str] | None = None,
        description: str = "perfdesk function",
        capacity_provider_config: dict[str, Any] | None = None,
    ) -> dict:
        """Create the function, or update code and configuration of an existing one; wait until it is Active and
        its last update Successful. Returns the function configuration."""
        layers = layers or []
        code: dict[str, Any] = {"ImageUri": image_uri} if image_uri else self.code(zip_path)  # type: ignore[arg-type]
        self.ledger.add("function", name=name)
        if self.exists(name):
            self.lam.update_function_code(FunctionName=name, Architectures=[architecture], **code)
            self.wait_updated(name)
            self.update(
                name,
                MemorySize=memory_mb,
                Timeout=timeout_s,
                Environment={"Variables": variables},
                Role=role_arn,
                **({} if image_uri else {"Handler": handler, "Runtime": runtime, "Layers": layers}),
                **({"CapacityProviderConfig": capacity_provider_config} if capacity_provider_config else {}),
            )
            self.lam.tag_resource(Resource=self.arn(name), Tags=self.tags)
            self.say(f"updated function {name}")
        else:
            args: dict[str, Any] = dict(
                FunctionName=name,
                Role=role_arn,
                Timeout=timeout_s,
                MemorySize=memory_mb,
                Environment={"Variables": variables},
                Architectures=[architecture],
                Tags=self.tags,
                Description=description,
            )
            if capacity_provider_config:  # Lambda Managed Instances (managed.py)
                args["CapacityProviderConfig"] = capacity_provider_config
            if image_uri:
                args.update(PackageType="Image", Code=code)
            else:
                args.update(Runtime=runtime, Handler=handler, Layers=layers, Code=code)
            self._create_with_retry(args)
            self.say(f"created function {name}")
        self.wait_active(name)
        return self.lam.get_function_configuration(FunctionName=name)

    def _create_with_retry(self, args: dict) -> None:
        # A role created seconds ago is not yet assumable by Lambda (IAM is eventually consistent): retry that.
        deadline = time.monotonic() + 60
        while True:
            try:
                self.lam.create_function(**args)
                return
            except self.lam.exceptions.InvalidParameterValueException as exc:
                if "cannot be assumed" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(3)

    def arn(self, name: str) -> str:
        return self.lam.get_function_configuration(FunctionName=name)["FunctionArn"]

    def update(self, name: str, **config: Any) -> dict:
        """UpdateFunctionConfiguration and wait until the update is Successful (the new config serves)."""
        self.lam.update_function_configuration(FunctionName=name, **config)
        self.wait_updated(name)
        return self.lam.get_function_configuration(FunctionName=name)

    def set_variables(self, name: str, **changes: str) -> dict:
        current = self.lam.get_function_configuration(FunctionName=name)
        variables = dict((current.get("Environment") or {}).get("Variables") or {})
        variables.update(changes)
        return self.update(name, Environment={"Variables": variables})

    def _waiter_config(self) -> dict:
        return {"Delay": self.waiter_delay, "MaxAttempts": max(1, int(self.wait_timeout_s / max(1, self.waiter_delay)))}

    def wait_active(self, name: str) -> None:
        self.lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig=self._waiter_config())

    def wait_updated(self, name: str) -> None:
        self.lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig=self._waiter_config())

    def set_reserved_concurrency(self, name: str, value: int | None) -> None:
        if value is None:
            self.lam.delete_function_concurrency(FunctionName=name)
        else:
            self.lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=value)

    def ensure_url(self, name: str, auth_type: str = "AWS_IAM") -> str:
        """A function URL (IAM-authenticated by default: requests are SigV4-signed); returns the URL."""
        try:
            return self.lam.get_function_url_config(FunctionName=name)["FunctionUrl"]
        except self.lam.exceptions.ResourceNotFoundException:
            return self.lam.create_function_url_config(FunctionName=name, AuthType=auth_type)["FunctionUrl"]

    # -- teardown --------------------------------------------------------------------------------------------
    def session_functions(self, session_id: str | None = None) -> list[str]:
        """Names of the functions tagged with the session (``None``: this manager's)."""
        sid = session_id or self.session_id
        found = []
        for page in self.lam.get_paginator("list_functions").paginate():
            for fn in page.get("Functions", []):
                try:
                    tags = self.lam.list_tags(Resource=fn["FunctionArn"]).get("Tags", {})
                except self.lam.exceptions.ResourceNotFoundException:
                    continue
                if tags.get(SESSION_TAG) == sid and tags.get(MANAGED_TAG) == "true":
                    found.append(fn["FunctionName"])
        return found

    def teardown(
        self, session_id: str | None = None, layer_names: list[str] | None = None, role_names: list[str] | None = None
    ) -> list[str]:
        """Delete what the session created: its tagged functions (with their versions, URLs and concurrency), the
        named layers' versions whose description carries the session, the named roles if tagged with it (with their
        policies), and what it put in S3. Returns what was deleted; safe to repeat."""
        sid = session_id or self.session_id
        deleted = []
        for name in self.session_functions(sid):
            try:
                self.lam.delete_function(FunctionName=name)
                deleted.append(f"function {name}")
            except self.lam.exceptions.ResourceNotFoundException:
                pass
        for layer in layer_names or []:
            for page in self.lam.get_paginator("list_layer_versions").paginate(LayerName=layer):
                for lv in page.get("LayerVersions", []):
                    if (lv.get("Description") or "").startswith(f"{LAYER_MARK}{sid}"):
                        self.lam.delete_layer_version(LayerName=layer, VersionNumber=lv["Version"])
                        deleted.append(f"layer {layer}:{lv['Version']}")
        for role in role_names or []:
            if self.iam is None:
                break
            try:
                tags = {t["Key"]: t["Value"] for t in self.iam.list_role_tags(RoleName=role).get("Tags", [])}
            except self.iam.exceptions.NoSuchEntityException:
                continue
            if tags.get(SESSION_TAG) != sid:
                continue
            delete_role(self.iam, role)
            deleted.append(f"role {role}")
        if self.artifacts is not None and sid == self.session_id:
            deleted += self.artifacts.remove()
        for item in deleted:
            self.say(f"deleted {item}")
        return deleted


def delete_role(iam, role: str) -> None:
    """Delete a role with its inline and attached policies (IAM refuses to delete a role that has any)."""
    for page in iam.get_paginator("list_role_policies").paginate(RoleName=role):
        for pol in page.get("PolicyNames", []):
            iam.delete_role_policy(RoleName=role, PolicyName=pol)
    for page in iam.get_paginator("list_attached_role_policies").paginate(RoleName=role):
        for pol in page.get("AttachedPolicies", []):
            iam.detach_role_policy(RoleName=role, PolicyArn=pol["PolicyArn"])
    iam.delete_role(RoleName=role)
