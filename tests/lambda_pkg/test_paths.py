"""Every function path on the emulator, with a tiny handler in place of the model (the model's own run is the
profile test, tests/core/test_paths_profile.py): direct Invoke, the function URL (AWS_IAM, SigV4-signed), an API
Gateway HTTP API (control plane in the moto server, data plane in the emulator, Lambda's permission checked), and
S3 (moto) with the emulator delivering S3's events. Peers are real: the moto server and the emulator."""

from __future__ import annotations

import json
import time

import pytest

from perfdesk.controllers.results import ERROR, OK, THROTTLED
from perfdesk.controllers.target import TargetContext, target_class
from perfdesk.controllers.workload import Payload
from tests.lambda_pkg.conftest import HANDLERS, ROLE, lambda_client


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    from perfdesk.lambda_pkg.emulator import Emulator
    from perfdesk.lambda_pkg.local_s3 import LocalS3

    work = tmp_path_factory.mktemp("paths")
    s3 = LocalS3("paths", work / "s3.log").start()
    emu = Emulator(work_dir=work / "emu", s3_endpoint_url=s3.url, account_concurrency=4, idle_s=60).start()
    yield s3, emu
    emu.stop()
    s3.stop()


def tiny_target(stack, tmp_path, monkeypatch, via: str, name: str, session_id: str = "t-paths"):
    """A local-lambda target whose function is the tiny handler, deployed as the target deploys (the same
    FunctionManager, ledger, artifact bucket and invoke path), without building the model."""
    from perfdesk.lambda_pkg.builders import in_memory_zip
    from perfdesk.lambda_pkg.functions import ArtifactBucket, FunctionManager
    from perfdesk.lambda_pkg.paths import make_path

    s3, emu = stack
    monkeypatch.setenv("AWS_ENDPOINT_URL_APIGATEWAYV2", s3.url)  # the moto server: API Gateway's control plane
    cls = target_class("local-lambda")
    ctx = TargetContext(session_id=session_id, emit=lambda e: None, work_dir=str(tmp_path))
    spec = cls.spec_model(name=name, kind="local-lambda", invoke_via=via, endpoint_url=emu.url, timeout_s=10)
    target = cls(spec, ctx)
    target.region = "us-east-1"
    ledger = target._ledger()
    artifacts = ArtifactBucket(
        target._client("s3", endpoint_url=s3.url), ctx.session_id, "us-east-1", ledger=ledger, say=target.log
    )
    target.manager = FunctionManager(
        target._client("lambda"), ctx.session_id, say=target.log, artifacts=artifacts, ledger=ledger
    )
    target.path = make_path(target, via)
    code = tmp_path / "tiny.zip"
    code.write_bytes(in_memory_zip({"tiny.py": (HANDLERS / "tiny.py").read_bytes()}))
    target.manager.deploy_function(
        target.function,
        zip_path=code,
        role_arn=ROLE,
        handler="tiny.paths",
        runtime="python3.11",
        memory_mb=256,
        timeout_s=10,
        architecture="x86_64",
        variables={"AWS_ENDPOINT_URL_S3": s3.url, **target.path.variables(artifacts)},
    )
    target._invoke_client = target._client("lambda", invoke=True)
    target.path.setup(artifacts)
    return target


def _payload(sleep_s: float = 0.0) -> Payload:
    return Payload(["p"], [b""], json.dumps({"sleep_s": sleep_s}).encode(), 1)


@pytest.mark.parametrize("via", ["invoke", "url", "apigw", "s3"])
def test_each_path_answers_with_duration_and_cold_start(stack, tmp_path, monkeypatch, via):
    target = tiny_target(stack, tmp_path, monkeypatch, via, f"p-{via}")
    try:
        first, second = target.send(_payload()), target.send(_payload())
        assert first.status == OK and second.status == OK, (first.error, second.error)
        assert first.cold and not second.cold  # the first request started the environment
        assert first.top1 == "tiny"
        for r in (first, second):  # Duration: the REPORT line (invoke), the handler's own measure elsewhere
            assert r.duration_ms is not None and r.service_ms >= r.duration_ms
        d = target.describe()
        assert d["invoke_via"] == via and target.invoke_path == via
    finally:
        lam, s3 = target.manager.lam, target.manager.artifacts.s3
        path = target.path
        target.teardown()
    if via == "apigw":
        api = target._client("apigatewayv2")
        with pytest.raises(api.exceptions.NotFoundException):
            api.get_api(ApiId=d["apigw"]["api_id"])
    if via == "s3":  # the notification, then the session's bucket with it
        from botocore.exceptions import ClientError

        assert not path._configured
        with pytest.raises(ClientError):
            s3.head_bucket(Bucket=path.bucket)
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function(FunctionName=target.function)


def test_function_url_refuses_unsigned_and_badly_signed(stack, tmp_path, monkeypatch):
    import urllib3
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    target = tiny_target(stack, tmp_path, monkeypatch, "url", "p-url-auth")
    try:
        url = target.path.url
        assert urllib3.request("POST", url, body=b"{}", retries=False).status == 403
        req = AWSRequest(method="POST", url=url, data=b"{}", headers={"Content-Type": "application/json"})
        SigV4Auth(Credentials("perfdesk-local", "not-the-secret"), "lambda", "us-east-1").add_auth(req)
        bad = urllib3.request("POST", url, body=b"{}", headers=dict(req.headers.items()), retries=False)
        assert bad.status == 403 and bad.headers["x-amzn-ErrorType"] == "InvalidSignatureException"
        assert target.send(_payload()).status == OK  # signed with the target's credentials
    finally:
        target.teardown()


def test_api_gateway_needs_lambdas_permission(stack, tmp_path, monkeypatch):
    import urllib3

    target = tiny_target(stack, tmp_path, monkeypatch, "apigw", "p-apigw-perm")
    try:
        assert target.send(_payload()).status == OK
        base = target.path.url.rsplit("/", 1)[0]
        missing = urllib3.request("POST", base + "/nowhere", body=b"{}", retries=False)
        assert missing.status == 404 and json.loads(missing.data) == {"message": "Not Found"}
        target.manager.lam.remove_permission(FunctionName=target.function, StatementId="perfdesk-apigw")
        time.sleep(1.1)  # API Gateway's view of the API is at most a second old; the permission is Lambda's, now
        refused = target.send(_payload())
        assert refused.status == ERROR and refused.http_status == 500 and "Internal Server Error" in refused.error
        # a permission for another API's ARN does not do either
        target.manager.lam.add_permission(
            FunctionName=target.function,
            StatementId="other-api",
            Action="lambda:InvokeFunction",
            Principal="apigateway.amazonaws.com",
            SourceArn="arn:aws:execute-api:us-east-1:123456789012:other/*/*/infer",
        )
        assert target.send(_payload()).http_status == 500
    finally:
        target.teardown()


def test_teardown_after_a_crash_finds_the_api(stack, tmp_path, monkeypatch):
    from perfdesk.lambda_pkg.functions import Ledger
    from perfdesk.lambda_pkg.teardown import sweep

    target = tiny_target(stack, tmp_path, monkeypatch, "apigw", "p-apigw-crash", session_id="t-crash")
    api_id = target.path.api_id
    removed = sweep("t-crash", entries=Ledger.read(target._session_dir()))  # the target never tore down
    assert f"API Gateway HTTP API {api_id}" in removed and f"function {target.function}" in removed
    api = target._client("apigatewayv2")
    with pytest.raises(api.exceptions.NotFoundException):
        api.get_api(ApiId=api_id)


def test_s3_event_is_s3s_message_delivered_asynchronously(stack, tmp_path, monkeypatch):
    target = tiny_target(stack, tmp_path, monkeypatch, "s3", "p-s3-shape")
    try:
        path = target.path
        key = path.in_prefix + "a b+c.json"  # S3 sends the key URL-encoded
        path.s3.put_object(Bucket=path.bucket, Key=key, Body=b'{"sleep_s": 0}')
        out_key = path.out_prefix + "a b+c.json"
        deadline = time.time() + 30
        while True:
            try:
                out = json.loads(path.s3.get_object(Bucket=path.bucket, Key=out_key)["Body"].read())
                break
            except path.s3.exceptions.NoSuchKey:
                assert time.time() < deadline, "no output object"
                time.sleep(0.05)
        record = out["record"]
        assert record["eventSource"] == "aws:s3" and record["eventName"] == "ObjectCreated:Put"
        assert record["eventVersion"] == "2.1" and record["awsRegion"] == "us-east-1"
        assert record["s3"]["bucket"] == {
            "name": path.bucket,
            "ownerIdentity": {"principalId": "123456789012"},
            "arn": f"arn:aws:s3:::{path.bucket}",
        }
        assert record["s3"]["object"]["key"] == path.in_prefix + "a+b%2Bc.json"
        assert record["s3"]["object"]["size"] == 14 and record["s3"]["configurationId"] == "perfdesk-s3-path"
    finally:
        target.teardown()


def test_unreserved_pool_is_the_account_less_reservations(stack):
    """As on Lambda: a reservation is taken from the account's pool whether used or not."""
    from concurrent.futures import ThreadPoolExecutor

    from perfdesk.lambda_pkg.builders import in_memory_zip

    _, emu = stack
    client = lambda_client(emu.url)
    code = {"ZipFile": in_memory_zip({"tiny.py": (HANDLERS / "tiny.py").read_bytes()})}
    for name in ("pool-a", "pool-b"):
        client.create_function(
            FunctionName=name, Runtime="python3.11", Role=ROLE, Handler="tiny.echo", Code=code, Timeout=10
        )
    client.put_function_concurrency(FunctionName="pool-a", ReservedConcurrentExecutions=3)  # of the account's 4

    def call(_):
        try:
            client.invoke(FunctionName="pool-b", Payload=b'{"sleep_s": 1.5}')
            return OK
        except client.exceptions.TooManyRequestsException as exc:
            return THROTTLED + ":" + exc.response["Reason"]

    with ThreadPoolExecutor(2) as pool:
        outcomes = sorted(pool.map(call, range(2)))
    assert outcomes == [OK, f"{THROTTLED}:ConcurrentInvocationLimitExceeded"]
    for name in ("pool-a", "pool-b"):
        client.delete_function(FunctionName=name)
