"""Removing what function sessions left in AWS without a live target: ``perfdesk teardown SESSION`` after a crash.

What a session created is found two ways, and each resource is removed only if it is the session's:

* by its tags (``perfdesk:session``, ``perfdesk:managed``): functions (their versions, URLs and concurrency go with
  them), execution roles under ``/perfdesk/`` (with their policies), S3 buckets the session created (with every
  object in them), ECR repositories the session created (with every image in them);
* API Gateway HTTP APIs (``invoke_via = "apigw"``) by the ledger's API ids and by their tags, in the control
  planes the ledger names (an in-process one ended with its session);
* by the session's :class:`~perfdesk.lambda_pkg.functions.Ledger` (``aws-resources.jsonl`` in its folder, written
  before each create call): layer versions, which take no tags (their description carries the session id), the
  session's objects in a bucket the profile named, its image tags in an ECR repository the profile named, and the
  regions, endpoint overrides and AWS profile the session used.

Clients use AWS's own configuration (credential chain, ``AWS_PROFILE``, ``AWS_REGION``, ``AWS_ENDPOINT_URL`` and
``AWS_ENDPOINT_URL_<SERVICE>``), plus what the ledger recorded as an explicit override.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from perfdesk.lambda_pkg.functions import (
    LAYER_MARK,
    MANAGED_TAG,
    ROLE_PATH,
    S3_PREFIX,
    SESSION_TAG,
    delete_role,
    empty_bucket,
)

#: The dummy credentials of ``local-lambda`` targets (an emulator, and the local S3 it reads from).
LOCAL_KEYS = {"aws_access_key_id": "perfdesk-local", "aws_secret_access_key": "perfdesk-local"}


@dataclass(frozen=True)
class Place:
    """Where a session's function resources live: a region, seen through one set of endpoints and credentials."""

    region: str
    lambda_endpoint: str | None = None  # an explicit override; "in-process": an emulator that ended with its session
    profile: str | None = None
    local: bool = False  # a local-lambda target's: dummy keys, and the local S3 it used (never AWS itself)
    s3_endpoint: str | None = None
    ecr_endpoint: str | None = None  # a local ECR a local-lambda target used

    @property
    def lambda_gone(self) -> bool:
        return self.lambda_endpoint == "in-process"

    def client(self, service: str):
        import boto3
        from botocore.config import Config

        keys = LOCAL_KEYS if self.local else {}
        session = boto3.session.Session(region_name=self.region, profile_name=self.profile, **keys)
        endpoint = {"lambda": self.lambda_endpoint, "s3": self.s3_endpoint, "ecr": self.ecr_endpoint}.get(service)
        return session.client(service, endpoint_url=endpoint, config=Config(retries={"max_attempts": 3}))


def _ours(tags: dict[str, str], session_id: str | None) -> bool:
    return tags.get(MANAGED_TAG) == "true" and (session_id is None or tags.get(SESSION_TAG) == session_id)


def _place_of(e: dict) -> Place:
    return Place(
        e.get("region", ""),
        e.get("lambda_endpoint"),
        e.get("profile"),
        bool(e.get("local")),
        e.get("s3_endpoint"),
        e.get("ecr_endpoint"),
    )


def places(entries: list[dict], region: str | None) -> list[Place]:
    """The places a session used (from its ledger), plus ``region`` through the default configuration."""
    found = []
    for e in entries:
        if e.get("region"):
            p = _place_of(e)
            if p not in found:
                found.append(p)
    if region and Place(region) not in found:
        found.append(Place(region))
    return found


def sweep(
    session_id: str | None,
    *,
    entries: list[dict],
    region: str | None = None,
    say: Callable[[str], None] | None = None,
    client: Callable[[Place, str], Any] | None = None,
) -> list[str]:
    """Remove every function resource of ``session_id`` (``None``: of every perfdesk session) found by tags in the
    places the ledger ``entries`` name (and ``region``), and the untaggable ones the entries name. Returns what was
    removed; raises RuntimeError naming what could not be removed (the rest is removed all the same)."""
    say = say or (lambda line: None)
    client = client or (lambda place, service: place.client(service))
    removed: list[str] = []
    problems: list[str] = []
    done_global: set[tuple] = set()

    def attempt(what: str, fn: Callable[..., list[str]], *args: Any) -> list[str]:
        try:
            return fn(*args, session_id)
        except Exception as exc:  # noqa: BLE001 - one resource's failure must not stop the others
            problems.append(f"{what}: {exc}")
            return []

    for place in places(entries, region):
        mine = [e for e in entries if _place_of(e) == place]
        if not place.lambda_gone:
            lam = client(place, "lambda")
            removed += attempt(f"functions in {place.region}", _functions, lam, mine)
            removed += attempt(f"layers in {place.region}", _layers, lam, mine)
            removed += attempt(f"capacity providers in {place.region}", _managed, lam, place, mine)
        if _used_ecr(place, mine, entries):
            removed += attempt(f"ECR in {place.region}", _ecr, client(place, "ecr"), mine)
        account = (place.profile, place.local, place.s3_endpoint)  # IAM and S3 are global: once per account
        if account in done_global:
            continue
        done_global.add(account)
        in_account = [e for e in entries if (e.get("profile"), bool(e.get("local")), e.get("s3_endpoint")) == account]
        if not place.local:
            iam = client(place, "iam")
            removed += attempt("execution roles", _roles, iam, in_account)
        if not place.local or place.s3_endpoint:  # a local target that used no local S3 put nothing in S3
            removed += attempt("S3", _s3, client(place, "s3"), in_account)

    removed += attempt("API Gateway HTTP APIs", _apis, entries)

    for line in removed:
        say("removed " + line)
    if problems:
        raise RuntimeError("teardown left function resources behind: " + "; ".join(problems))
    return removed


def _used_ecr(place: Place, mine: list[dict], entries: list[dict]) -> bool:
    """ECR is swept where the session recorded an image there, or by tags alone where there is no ledger; a local
    target's images are in a local ECR only (never AWS's)."""
    if place.local and not place.ecr_endpoint:
        return False
    return not entries or any(e.get("type", "").startswith("ecr-") for e in mine)


def _ecr(ecr, entries: list[dict], session_id: str | None) -> list[str]:
    from perfdesk.lambda_pkg.images import sweep_ecr

    return sweep_ecr(ecr, entries, session_id)


def _managed(lam, place: Place, entries: list[dict], session_id: str | None) -> list[str]:
    """Lambda Managed Instances: capacity providers and their network, by the ledger (managed.py)."""
    from perfdesk.lambda_pkg.managed import sweep as sweep_managed

    def ec2_for(endpoint: str | None):
        if endpoint is None and place.local:
            return None  # a local target's network is in a local EC2 only, never AWS's
        if endpoint is None:
            return place.client("ec2")
        import boto3

        return boto3.session.Session(region_name=place.region, **LOCAL_KEYS).client("ec2", endpoint_url=endpoint)

    return sweep_managed(lam, ec2_for, entries, session_id)


def _functions(lam, entries: list[dict], session_id: str | None) -> list[str]:
    arns: dict[str, str | None] = {}
    for page in lam.get_paginator("list_functions").paginate():
        arns.update({fn["FunctionName"]: fn["FunctionArn"] for fn in page.get("Functions", [])})
    for e in entries:
        if e["type"] == "function":
            arns.setdefault(e["name"], None)
    removed = []
    for name, arn in arns.items():
        try:
            arn = arn or lam.get_function_configuration(FunctionName=name)["FunctionArn"]
            if not _ours(lam.list_tags(Resource=arn).get("Tags", {}), session_id):
                continue
            lam.delete_function(FunctionName=name)
            removed.append(f"function {name}")
        except lam.exceptions.ResourceNotFoundException:
            continue
    return removed


def _layers(lam, entries: list[dict], session_id: str | None) -> list[str]:
    from botocore.exceptions import ClientError

    names = [e["name"] for e in entries if e["type"] == "layer"]
    try:  # every layer of the account, where the endpoint lists them (perfdesk's emulator does not)
        for page in lam.get_paginator("list_layers").paginate():
            names += [layer["LayerName"] for layer in page.get("Layers", [])]
    except ClientError:
        pass
    mark = LAYER_MARK + session_id if session_id else LAYER_MARK
    removed = []
    for name in dict.fromkeys(names):
        try:
            for page in lam.get_paginator("list_layer_versions").paginate(LayerName=name):
                for lv in page.get("LayerVersions", []):
                    desc = lv.get("Description") or ""
                    if desc == mark or desc.startswith(mark + " ") or (session_id is None and desc.startswith(mark)):
                        lam.delete_layer_version(LayerName=name, VersionNumber=lv["Version"])
                        removed.append(f"layer {name}:{lv['Version']}")
        except lam.exceptions.ResourceNotFoundException:
            continue
    return removed


def _roles(iam, entries: list[dict], session_id: str | None) -> list[str]:
    names = []
    for page in iam.get_paginator("list_roles").paginate(PathPrefix=ROLE_PATH):
        names += [r["RoleName"] for r in page.get("Roles", [])]
    names += [e["name"] for e in entries if e["type"] == "role" and e["name"] not in names]
    removed = []
    for name in names:
        try:
            tags = {t["Key"]: t["Value"] for t in iam.list_role_tags(RoleName=name).get("Tags", [])}
            if _ours(tags, session_id):
                delete_role(iam, name)
                removed.append(f"role {name}")
        except iam.exceptions.NoSuchEntityException:
            continue
    return removed


def _s3(s3, entries: list[dict], session_id: str | None) -> list[str]:
    from botocore.exceptions import ClientError

    removed = []
    recorded = {e["bucket"] for e in entries if e["type"] == "s3-bucket"}
    for b in s3.list_buckets().get("Buckets", []):
        name = b["Name"]
        if name in recorded:  # the session named it before creating it (perhaps killed before tagging it)
            continue
        try:
            tags = {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket=name).get("TagSet", [])}
        except ClientError:  # no tags (NoSuchTagSet), or not ours to read
            continue
        if _ours(tags, session_id):
            removed += empty_bucket(s3, name, prefix="", delete=True)
    for name in sorted(recorded):
        removed += empty_bucket(s3, name, prefix="", delete=True)
    if session_id is not None:  # the session's objects in a bucket the profile named; the bucket stays
        for bucket in sorted({e["bucket"] for e in entries if e["type"] in ("s3-prefix", "s3-object")} - recorded):
            removed += empty_bucket(s3, bucket, prefix=f"{S3_PREFIX}{session_id}/", delete=False)
    return removed


def _apis(entries: list[dict], session_id: str | None) -> list[str]:
    """The session's API Gateway HTTP APIs, by the ledger's ids and by tags, in each control plane it names."""
    import boto3

    removed = []
    planes = {
        (e.get("apigw_endpoint"), e.get("region", ""), e.get("profile"), bool(e.get("local")))
        for e in entries
        if e["type"] == "apigw-api" and e.get("apigw_endpoint") != "in-process"
    }
    for endpoint, region, profile, local in sorted(planes, key=str):
        keys = LOCAL_KEYS if local else {}
        session = boto3.session.Session(region_name=region or None, profile_name=profile, **keys)
        api = session.client("apigatewayv2", endpoint_url=None if "amazonaws.com" in (endpoint or "") else endpoint)
        ids = {e["api_id"] for e in entries if e["type"] == "apigw-api" and e.get("api_id")}
        for item in api.get_apis().get("Items", []):
            if _ours(item.get("Tags") or {}, session_id):
                ids.add(item["ApiId"])
        for api_id in sorted(ids):
            try:
                api.delete_api(ApiId=api_id)
                removed.append(f"API Gateway HTTP API {api_id}")
            except api.exceptions.NotFoundException:
                continue
    return removed
