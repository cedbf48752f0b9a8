"""Function management through boto3: execution role, layers, functions, concurrency, URLs, teardown by tag.

The same code runs against AWS, the moto server (tests of the control plane) and perfdesk's emulator (end to end):
clients come in through the constructor. Everything created is tagged (functions, roles) or described (layer
versions cannot be tagged) with the session id, so :meth:`FunctionManager.teardown` finds it again, also from a
later process (``perfdesk teardown``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SESSION_TAG = "perfdesk:session"
MANAGED_TAG = "perfdesk:managed"
LAYER_MARK = "perfdesk session "

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
    ):
        self.lam = lambda_client
        self.iam = iam_client
        self.session_id = session_id
        self.waiter_delay = waiter_delay
        self.wait_timeout_s = wait_timeout_s
        self.say = say or (lambda line: log.info("%s", line))

    @property
    def tags(self) -> dict[str, str]:
        return {SESSION_TAG: self.session_id, MANAGED_TAG: "true"}

    # -- role ------------------------------------------------------------------------------------------------
    def ensure_role(self, role_name: str, *, region: str, function_prefix: str, bucket: str | None = None) -> str:
        """Create (or reuse, if it is ours) the execution role; return its ARN."""
        if self.iam is None:
            raise ValueError("creating an execution role needs an IAM client; or give role_arn in the profile")
        try:
            role = self.iam.get_role(RoleName=role_name)["Role"]
            self.say(f"reusing execution role {role_name}")
        except self.iam.exceptions.NoSuchEntityException:
            role = self.iam.create_role(
                RoleName=role_name,
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
        """Publish a layer version; its description carries the session id (layers have no tags)."""
        resp = self.lam.publish_layer_version(
            LayerName=name,
            Content={"ZipFile": Path(zip_path).read_bytes()},
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
    ) -> dict:
        """Create the function, or update code and configuration of an existing one; wait until it is Active and
        its last update Successful. Returns the function configuration."""
        layers = layers or []
        if self.exists(name):
            code_args: dict[str, Any] = (
                {"ImageUri": image_uri} if image_uri else {"ZipFile": Path(zip_path).read_bytes()}
            )  # type: ignore[arg-type]
            self.lam.update_function_code(FunctionName=name, Architectures=[architecture], **code_args)
            self.wait_updated(name)
            self.update(
                name,
                MemorySize=memory_mb,
                Timeout=timeout_s,
                Environment={"Variables": variables},
                Role=role_arn,
                **({} if image_uri else {"Handler": handler, "Runtime": runtime, "Layers": layers}),
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
            if image_uri:
                args.update(PackageType="Image", Code={"ImageUri": image_uri})
            else:
                args.update(
                    Runtime=runtime, Handler=handler, Layers=layers, Code={"ZipFile": Path(zip_path).read_bytes()}
                )  # type: ignore[arg-type]
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
        """Delete what the session created: its tagged functions, the named layers' versions whose description
        carries the session, and the named roles if tagged with it. Returns what was deleted; safe to repeat."""
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
            for pol in self.iam.list_role_policies(RoleName=role).get("PolicyNames", []):
                self.iam.delete_role_policy(RoleName=role, PolicyName=pol)
            self.iam.delete_role(RoleName=role)
            deleted.append(f"role {role}")
        for item in deleted:
            self.say(f"deleted {item}")
        return deleted
