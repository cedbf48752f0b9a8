"""The ways a request reaches a function (a function target's ``invoke_via``), each measured the same way.

* ``invoke``: Lambda's Invoke API (RequestResponse, ``LogType=Tail``): Duration from the REPORT line.
* ``url``: the function URL with ``AuthType AWS_IAM``; each request is SigV4-signed (service ``lambda``) with
  botocore's signer and the target's credentials.
* ``apigw``: an API Gateway HTTP API perfdesk creates (``apigatewayv2``: the API, an ``AWS_PROXY`` integration with
  payload format 2.0, the route ``POST /infer``, the auto-deployed ``$default`` stage, and the Lambda permission
  for ``apigateway.amazonaws.com`` with the API's execute-api ARN as SourceArn); recorded in the session's ledger
  and deleted at teardown (and by ``perfdesk teardown``).
* ``s3``: asynchronous, through S3: the bucket's notification configuration sends ``s3:ObjectCreated:*`` under
  ``perfdesk/<session>/in/`` to the function (with the Lambda permission for ``s3.amazonaws.com``); each request
  PUTs its input object there, the function writes ``perfdesk/<session>/out/<name>.json``, and the latency is from
  the PUT's start to the output's appearance (polled every ``POLL_S``, so up to that much later).

The URL, API Gateway and S3 paths return no REPORT line: their ``duration_ms`` is the handler's own measure of its
work (``handler_ms`` in its answer), so the invoke overhead (client latency minus Duration, trials.csv
``invoke_overhead_p50_ms``) compares across paths. Locally (local-lambda) the API's control plane is the target's
moto server and its data plane the emulator (``<emulator>/_aws/execute-api/<api-id>/``); S3 is the moto server and
the emulator delivers S3's events.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import TYPE_CHECKING, Any

from perfdesk.controllers.results import ERROR, OK, THROTTLED, TIMEOUT, RequestResult, result_from_response
from perfdesk.controllers.target import TargetError
from perfdesk.controllers.workload import Payload

if TYPE_CHECKING:
    from perfdesk.lambda_pkg.target import _FunctionTarget

INVOKE_PATHS = ("invoke", "url", "apigw", "s3")
#: How often the S3 path looks for the output object.
POLL_S = 0.02
APIGW_ROUTE = "POST /infer"
APIGW_STATEMENT = "perfdesk-apigw"
S3_STATEMENT = "perfdesk-s3"
S3_CONFIG_ID = "perfdesk-s3-path"


def _is_aws(url: str) -> bool:
    return "amazonaws.com" in url


def _from_answer(result: RequestResult, data: bytes) -> RequestResult:
    """The handler's own figures from its answer: cold start, its init and its time as Duration."""
    try:
        body = json.loads(data)
    except ValueError:
        return result
    if not isinstance(body, dict):
        return result
    if body.get("cold"):
        result.cold = True
        init = body.get("init") or {}
        result.extra["init"] = init
        if isinstance(init, dict) and init.get("total_ms") is not None:
            result.init_ms = float(init["total_ms"])
    if body.get("handler_ms") is not None:
        result.duration_ms = float(body["handler_ms"])
    if isinstance(body.get("memory"), dict):
        result.extra["memory"] = body["memory"]
    result.request_id = str(body.get("request_id") or result.request_id)
    return result


class InvokePath:
    """Lambda's Invoke API: the target's own send."""

    name = "invoke"

    def __init__(self, target: _FunctionTarget):
        self.target = target

    def variables(self, artifacts) -> dict[str, str]:
        return {}

    def setup(self, artifacts) -> None:
        pass

    def send(self, payload: Payload, *, timeout: float | None = None) -> RequestResult:
        return self.target._invoke(payload, timeout=timeout)

    def teardown(self) -> list[str]:
        return []

    def describe(self) -> dict[str, Any]:
        return {"invoke_via": self.name}


class _HttpPath(InvokePath):
    """Shared by the URL and API Gateway paths: a pooled HTTP client and the answer as a row."""

    url = ""

    def __init__(self, target: _FunctionTarget):
        super().__init__(target)
        import urllib3

        self._http = urllib3.PoolManager(maxsize=1024, block=False, retries=False)

    def _headers(self, body: bytes) -> dict[str, str]:
        return {"Content-Type": "application/json"}

    def send(self, payload: Payload, *, timeout: float | None = None) -> RequestResult:
        import urllib3

        body = payload.body
        read = timeout or max(self.target.spec.request_timeout_s, self.target.spec.timeout_s + 10.0)
        t0 = time.time()
        try:
            headers = self._headers(body)
            resp = self._http.request(
                "POST", self.url, body=body, headers=headers, timeout=urllib3.Timeout(connect=10, read=read)
            )
        except urllib3.exceptions.ReadTimeoutError as exc:
            return RequestResult(actual_send=t0, receive=time.time(), status=TIMEOUT, error=f"client timeout: {exc}")
        except urllib3.exceptions.HTTPError as exc:
            return RequestResult(actual_send=t0, receive=time.time(), status=ERROR, error=f"connection: {exc}")
        t1 = time.time()
        data = resp.data
        if resp.status != 200:
            status = THROTTLED if resp.status == 429 else ERROR
            return RequestResult(
                actual_send=t0,
                receive=t1,
                status=status,
                http_status=resp.status,
                error=f"HTTP {resp.status}: {data[:300].decode(errors='replace')}",
                response_bytes=len(data),
            )
        result = result_from_response(200, data, t0, t1)
        result.request_id = resp.headers.get("x-amzn-RequestId", "") or resp.headers.get("apigw-requestid", "")
        return _from_answer(result, data) if result.status == OK else result

    def describe(self) -> dict[str, Any]:
        return {"invoke_via": self.name, "invoke_url": self.url}


class UrlPath(_HttpPath):
    """The function URL, ``AuthType AWS_IAM``, each request SigV4-signed with botocore's signer."""

    name = "url"

    def setup(self, artifacts) -> None:
        t = self.target
        self.url = t._manager().ensure_url(t.function, auth_type="AWS_IAM")
        config = t._manager().lam.get_function_url_config(FunctionName=t.function)
        if config.get("AuthType") != "AWS_IAM":
            raise TargetError(
                t.name,
                "function URL",
                f"{t.function}'s URL has AuthType {config.get('AuthType')}, not AWS_IAM",
                "delete the URL (it is recreated with AWS_IAM) or use invoke_via = 'invoke'",
            )
        self.url = self.url.rstrip("/") + "/"
        self._credentials = t._session().get_credentials()
        self._region = t.region or "us-east-1"
        t.facts["function_url"] = self.url

    def _headers(self, body: bytes) -> dict[str, str]:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        request = AWSRequest(method="POST", url=self.url, data=body, headers={"Content-Type": "application/json"})
        SigV4Auth(self._credentials.get_frozen_credentials(), "lambda", self._region).add_auth(request)
        return dict(request.headers.items())


class ApigwPath(_HttpPath):
    """An API Gateway HTTP API in front of the function, created here and deleted at teardown."""

    name = "apigw"

    def __init__(self, target: _FunctionTarget):
        super().__init__(target)
        self.api_id: str | None = None

    def _control(self):
        t = self.target
        local_url = getattr(t, "local_s3", None)
        client = t._client("apigatewayv2", endpoint_url=local_url.url if local_url is not None else None)
        if t.local and _is_aws(client.meta.endpoint_url):
            raise TargetError(
                t.name,
                "API Gateway",
                "a local-lambda target never creates anything in AWS",
                "point AWS_ENDPOINT_URL_APIGATEWAYV2 (or AWS_ENDPOINT_URL) at a local control plane such as "
                "`moto_server`, or let the target start its own (no endpoint_url)",
            )
        return client

    def setup(self, artifacts) -> None:
        from perfdesk.lambda_pkg.functions import session_tags

        t = self.target
        manager = t._manager()
        api_client = self._control()
        arn = manager.lam.get_function_configuration(FunctionName=t.function)["FunctionArn"]
        region, account = arn.split(":")[3], arn.split(":")[4]
        name = f"perfdesk-{t.function}"[:128]
        # the target's own moto server ends with it (and its APIs); any other control plane outlives the session
        endpoint = "in-process" if getattr(t, "local_s3", None) is not None else api_client.meta.endpoint_url
        manager.ledger.add("apigw-api", name=name, apigw_endpoint=endpoint)
        api = api_client.create_api(Name=name, ProtocolType="HTTP", Tags=session_tags(t.ctx.session_id))
        self.api_id = api["ApiId"]
        manager.ledger.add("apigw-api", name=name, api_id=self.api_id, apigw_endpoint=endpoint)
        integration = api_client.create_integration(
            ApiId=self.api_id,
            IntegrationType="AWS_PROXY",
            IntegrationUri=arn,
            IntegrationMethod="POST",
            PayloadFormatVersion="2.0",
        )
        api_client.create_route(
            ApiId=self.api_id, RouteKey=APIGW_ROUTE, Target=f"integrations/{integration['IntegrationId']}"
        )
        api_client.create_stage(ApiId=self.api_id, StageName="$default", AutoDeploy=True)
        try:
            manager.lam.remove_permission(FunctionName=t.function, StatementId=APIGW_STATEMENT)
        except manager.lam.exceptions.ResourceNotFoundException:
            pass
        manager.lam.add_permission(
            FunctionName=t.function,
            StatementId=APIGW_STATEMENT,
            Action="lambda:InvokeFunction",
            Principal="apigateway.amazonaws.com",
            SourceArn=f"arn:aws:execute-api:{region}:{account}:{self.api_id}/*/*/infer",
        )
        lambda_url = manager.lam.meta.endpoint_url
        if _is_aws(lambda_url):
            base = api["ApiEndpoint"]
        else:  # an emulator serves the API's data plane
            base = f"{lambda_url.rstrip('/')}/_aws/execute-api/{self.api_id}"
        self.url = base.rstrip("/") + "/infer"
        self._api_client = api_client
        t.facts["apigw"] = {"api_id": self.api_id, "endpoint": self.url, "route": APIGW_ROUTE}
        t.log(f"API Gateway HTTP API {self.api_id}: {APIGW_ROUTE} -> {t.function} at {self.url}")
        self._wait_ready()

    def _wait_ready(self, timeout: float = 30.0) -> None:
        """A new API's hostname may take a moment to resolve: wait until it answers at all (the function is not
        invoked: a GET matches no route)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                self._http.request("GET", self.url, timeout=5)
                return
            except Exception:  # noqa: BLE001 - DNS of a new API may take a moment
                time.sleep(0.5)

    def teardown(self) -> list[str]:
        if self.api_id is None:
            return []
        try:
            self._api_client.delete_api(ApiId=self.api_id)
        except self._api_client.exceptions.NotFoundException:
            pass
        removed, self.api_id = [f"API Gateway HTTP API {self.api_id}"], None
        return removed


class S3Path(InvokePath):
    """Asynchronous through S3: PUT the input object; the function writes the output object."""

    name = "s3"

    def __init__(self, target: _FunctionTarget):
        super().__init__(target)
        self.bucket: str | None = None
        self._configured = False

    def variables(self, artifacts) -> dict[str, str]:
        self.bucket = artifacts.ensure()
        self.s3 = artifacts.s3
        self.in_prefix = f"{artifacts.prefix}in/"
        self.out_prefix = f"{artifacts.prefix}out/"
        return {"PERFDESK_S3_INPUT_PREFIX": self.in_prefix, "PERFDESK_S3_OUTPUT_PREFIX": self.out_prefix}

    def setup(self, artifacts) -> None:
        t = self.target
        manager = t._manager()
        arn = manager.lam.get_function_configuration(FunctionName=t.function)["FunctionArn"]
        account = arn.split(":")[4]
        try:
            manager.lam.remove_permission(FunctionName=t.function, StatementId=S3_STATEMENT)
        except manager.lam.exceptions.ResourceNotFoundException:
            pass
        manager.lam.add_permission(
            FunctionName=t.function,
            StatementId=S3_STATEMENT,
            Action="lambda:InvokeFunction",
            Principal="s3.amazonaws.com",
            SourceArn=f"arn:aws:s3:::{self.bucket}",
            SourceAccount=account,
        )
        if getattr(manager, "iam", None) is not None and t._role_names:  # the role perfdesk made: read in, write out
            manager.iam.put_role_policy(
                RoleName=t._role_names[0],
                PolicyName="perfdesk-s3-path",
                PolicyDocument=json.dumps(
                    {
                        "Version": "2012-10-17",
                        "Statement": [
                            {
                                "Effect": "Allow",
                                "Action": "s3:GetObject",
                                "Resource": f"arn:aws:s3:::{self.bucket}/{self.in_prefix}*",
                            },
                            {
                                "Effect": "Allow",
                                "Action": "s3:PutObject",
                                "Resource": f"arn:aws:s3:::{self.bucket}/{self.out_prefix}*",
                            },
                        ],
                    }
                ),
            )
        conf = self.s3.get_bucket_notification_configuration(Bucket=self.bucket)
        conf.pop("ResponseMetadata", None)
        lambdas = [c for c in conf.get("LambdaFunctionConfigurations", []) if c.get("Id") != S3_CONFIG_ID]
        lambdas.append(
            {
                "Id": S3_CONFIG_ID,
                "LambdaFunctionArn": arn,
                "Events": ["s3:ObjectCreated:*"],
                "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": self.in_prefix}]}},
            }
        )
        conf["LambdaFunctionConfigurations"] = lambdas
        self.s3.put_bucket_notification_configuration(Bucket=self.bucket, NotificationConfiguration=conf)
        self._configured = True
        t.facts["s3_path"] = {"bucket": self.bucket, "input_prefix": self.in_prefix, "output_prefix": self.out_prefix}
        t.log(f"S3 path: s3://{self.bucket}/{self.in_prefix}* -> {t.function} -> s3://{self.bucket}/{self.out_prefix}")

    def send(self, payload: Payload, *, timeout: float | None = None) -> RequestResult:
        from botocore.exceptions import BotoCoreError, ClientError

        name = uuid.uuid4().hex
        key, out_key = f"{self.in_prefix}{name}.json", f"{self.out_prefix}{name}.json"
        wait = timeout or max(self.target.spec.request_timeout_s, self.target.spec.timeout_s + 30.0)
        t0 = time.time()
        try:
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=payload.body, ContentType="application/json")
        except (ClientError, BotoCoreError) as exc:
            return RequestResult(actual_send=t0, receive=time.time(), status=ERROR, error=f"S3 PUT: {exc}"[:500])
        deadline = t0 + wait
        while True:
            try:
                data = self.s3.get_object(Bucket=self.bucket, Key=out_key)["Body"].read()
                t1 = time.time()
                break
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") not in ("NoSuchKey", "404"):
                    return RequestResult(actual_send=t0, receive=time.time(), status=ERROR, error=f"S3 GET: {exc}")
            except BotoCoreError as exc:
                return RequestResult(actual_send=t0, receive=time.time(), status=ERROR, error=f"S3 GET: {exc}")
            if time.time() > deadline:
                return RequestResult(
                    actual_send=t0,
                    receive=time.time(),
                    status=TIMEOUT,
                    error=f"no output object s3://{self.bucket}/{out_key} {wait:.0f} s after the PUT",
                )
            time.sleep(POLL_S)
        result = result_from_response(200, data, t0, t1)
        return _from_answer(result, data) if result.status == OK else result

    def teardown(self) -> list[str]:
        if not self._configured or self.bucket is None:
            return []
        self._configured = False
        try:
            conf = self.s3.get_bucket_notification_configuration(Bucket=self.bucket)
            conf.pop("ResponseMetadata", None)
            conf["LambdaFunctionConfigurations"] = [
                c for c in conf.get("LambdaFunctionConfigurations", []) if c.get("Id") != S3_CONFIG_ID
            ]
            self.s3.put_bucket_notification_configuration(Bucket=self.bucket, NotificationConfiguration=conf)
        except Exception:  # noqa: BLE001 - the bucket went with the session: nothing to remove
            return []
        return [f"notification {S3_CONFIG_ID} of bucket {self.bucket}"]

    def describe(self) -> dict[str, Any]:
        return {"invoke_via": self.name, "bucket": self.bucket}


_PATHS = {"invoke": InvokePath, "url": UrlPath, "apigw": ApigwPath, "s3": S3Path}


def make_path(target: _FunctionTarget, via: str) -> InvokePath:
    return _PATHS[via](target)
