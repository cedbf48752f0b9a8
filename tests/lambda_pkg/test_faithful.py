"""The emulator gives a function what Lambda gives and forgives nothing Lambda would not: through the AWS CLI (a
client nobody here wrote) and boto3, against the limits and answers AWS documents.

Needs root (mount namespaces, the sandbox user, cgroups), as on the project's machines; elsewhere the emulator runs
functions unisolated and says so, and the tests of isolation are skipped.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from perfdesk.lambda_pkg.builders import in_memory_zip
from perfdesk.lambda_pkg.report import parse_init_reports, parse_log_result

from .conftest import HANDLERS, ROLE

isolated = pytest.mark.skipif(os.geteuid() != 0, reason="isolation needs root (mount namespaces, the sandbox user)")

#: The variables Lambda's Python runtime has (besides the function's own); LC_CTYPE is Python's C-locale coercion
#: and _X_AMZN_TRACE_ID the runtime client's, per invocation.
LAMBDA_VARIABLES = {
    "PATH",
    "LD_LIBRARY_PATH",
    "LANG",
    "TZ",
    "PYTHONPATH",
    "LAMBDA_TASK_ROOT",
    "LAMBDA_RUNTIME_DIR",
    "_HANDLER",
    "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_LAMBDA_RUNTIME_API",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_XRAY_CONTEXT_MISSING",
    "AWS_XRAY_DAEMON_ADDRESS",
    "_AWS_XRAY_DAEMON_ADDRESS",
    "_AWS_XRAY_DAEMON_PORT",
    "SHLVL",
    "PWD",
    "LC_CTYPE",
    "_X_AMZN_TRACE_ID",
}


def _aws_exe() -> list[str]:
    local = Path(sys.executable).parent / "aws"
    if local.exists():
        return [str(local)]
    found = shutil.which("aws")
    if found:
        return [found]
    pytest.fail("the AWS CLI is not installed: pip install awscli (it is in perfdesk's test extra)")


@pytest.fixture(scope="module")
def aws(emulator, tmp_path_factory):
    """The AWS CLI pointed at the emulator, with the dummy credentials it accepts and no user configuration."""
    home = tmp_path_factory.mktemp("aws-home")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(home / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "credentials"),
        "AWS_MAX_ATTEMPTS": "1",
    }

    def run(*args: str, ok: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [*_aws_exe(), "--endpoint-url", emulator.url, "--cli-read-timeout", "120", "lambda", *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=home,
            timeout=180,
        )
        if ok:
            assert proc.returncode == 0, proc.stderr
        return proc

    run.home = home
    return run


def _sandbox_zip(tmp: Path) -> Path:
    path = tmp / "sandbox.zip"
    path.write_bytes(in_memory_zip({"app.py": (HANDLERS / "sandbox.py").read_bytes()}))
    return path


def cli_create(aws, name: str, handler: str = "app.look", zip_path: Path | None = None, *extra: str, ok=True):
    zip_path = zip_path or _sandbox_zip(aws.home)
    return aws(
        "create-function",
        "--function-name",
        name,
        "--runtime",
        "python3.12",
        "--role",
        ROLE,
        "--handler",
        handler,
        "--zip-file",
        f"fileb://{zip_path}",
        "--timeout",
        "30",
        *extra,
        ok=ok,
    )


def cli_invoke(aws, name: str, event: dict | None = None) -> tuple[dict, object, str]:
    """(CLI answer, the function's payload, the tail log) of a synchronous invoke with LogType Tail."""
    out = aws.home / f"{name}.out"
    meta = json.loads(
        aws(
            "invoke",
            "--function-name",
            name,
            "--payload",
            json.dumps(event or {}),
            "--log-type",
            "Tail",
            str(out),
        ).stdout
    )
    log = base64.b64decode(meta.get("LogResult", "")).decode()
    return meta, json.loads(out.read_text()), log


# -- what the function sees --------------------------------------------------------------------------------------
@isolated
def test_environment_is_lambdas_not_the_hosts(aws, emulator):
    cli_create(aws, "look", "app.look", None, "--memory-size", "256", "--environment", "Variables={MY_SETTING=on}")
    event = {
        "imports": ["numpy", "torch", "flask", "perfdesk", "boto3", "botocore", "awslambdaric", "json"],
        "writes": ["/var/task/app.py", "/var/task/new.txt", "/opt/x", "/var/runtime/x", "/x", "/tmp/ok.txt"],
    }
    meta, seen, _ = cli_invoke(aws, "look", event)
    assert "FunctionError" not in meta, seen
    assert seen["uid"] == 993 and seen["gid"] == 990  # Lambda's sbx_user1051, not root
    assert (
        seen["cwd"] == "/var/task" and seen["executable"] == "/var/lang/bin/python3.12" and seen["version"] == [3, 12]
    )
    for name in ("numpy", "torch", "flask", "perfdesk"):  # the host's packages, perfdesk itself: not there
        assert seen["imports"][name] == f"ModuleNotFoundError: No module named '{name}'"
    for name in ("boto3", "botocore", "awslambdaric", "json"):  # what the managed runtime ships
        assert seen["imports"][name] == "ok"
    assert seen["writes"] == {
        "/var/task/app.py": "Read-only file system",
        "/var/task/new.txt": "Read-only file system",
        "/opt/x": "Read-only file system",
        "/var/runtime/x": "Read-only file system",
        "/x": "Read-only file system",
        "/tmp/ok.txt": "ok",
    }
    # Lambda's search path order, and nothing outside the sandbox's folders
    assert seen["path"][:3] == ["/var/task", "/opt/python/lib/python3.12/site-packages", "/opt/python"]
    assert all(p.startswith(("/var/task", "/opt/", "/var/runtime", "/var/lang/")) for p in seen["path"]), seen["path"]
    env = seen["env"]
    assert set(env) - LAMBDA_VARIABLES == {"MY_SETTING"}, set(env) - LAMBDA_VARIABLES
    assert env["MY_SETTING"] == "on"
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == "look" and env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
    assert env["AWS_LAMBDA_FUNCTION_VERSION"] == "$LATEST" and env["AWS_EXECUTION_ENV"] == "AWS_Lambda_python3.12"
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == "us-east-1"
    assert env["LAMBDA_TASK_ROOT"] == "/var/task" and env["LAMBDA_RUNTIME_DIR"] == "/var/runtime"
    assert env["_HANDLER"] == "app.look" and env["TZ"] == ":UTC" and env["LANG"] == "en_US.UTF-8"
    assert env["AWS_LAMBDA_LOG_GROUP_NAME"] == "/aws/lambda/look"
    assert "[$LATEST]" in env["AWS_LAMBDA_LOG_STREAM_NAME"] and env["AWS_LAMBDA_INITIALIZATION_TYPE"] == "on-demand"
    assert env["AWS_ACCESS_KEY_ID"].startswith("ASIA") and env["AWS_SECRET_ACCESS_KEY"] and env["AWS_SESSION_TOKEN"]
    assert env["PATH"] == "/var/lang/bin:/usr/local/bin:/usr/bin/:/bin:/opt/bin" and env["PYTHONPATH"] == "/var/runtime"
    assert env["AWS_LAMBDA_RUNTIME_API"].startswith("127.0.0.1:")
    for key in ("HOME", "VIRTUAL_ENV", "AWS_ENDPOINT_URL", "PYTEST_CURRENT_TEST"):  # nothing of the emulator's own
        assert key not in env


@isolated
@pytest.mark.parametrize("package", ["numpy", "torch", "flask", "perfdesk"])
def test_host_packages_cannot_be_imported(aws, package):
    """A handler that imports a package the function does not ship fails at init, as on Lambda."""
    path = aws.home / "imports.zip"
    path.write_bytes(in_memory_zip({"imports_host.py": (HANDLERS / "imports_host.py").read_bytes()}))
    name = f"needs-{package}"
    cli_create(aws, name, "imports_host.handler", path, "--environment", f"Variables={{IMPORT_NAME={package}}}")
    meta, error, log = cli_invoke(aws, name)
    assert meta["FunctionError"] == "Unhandled" and meta["StatusCode"] == 200
    assert error["errorType"] == "Runtime.ImportModuleError"
    assert error["errorMessage"] == f"Unable to import module 'imports_host': No module named '{package}'"
    rep = parse_log_result(meta["LogResult"])[1]
    assert rep.status == "error" and rep.error_type == "Runtime.ImportModuleError" and rep.init_ms is None
    # the init phase failed, so Lambda initialised again inside the invocation, and that failed too
    assert [(r.phase, r.status, r.error_type) for r in parse_init_reports(log)] == [
        ("invoke", "error", "Runtime.ImportModuleError")
    ]
    aws("delete-function", "--function-name", name)


@isolated
def test_tmp_holds_the_ephemeral_storage_and_no_more(client):
    client.create_function(
        FunctionName="tmpfill",
        Runtime="python3.12",
        Role=ROLE,
        Handler="app.fill_tmp",
        Code={"ZipFile": in_memory_zip({"app.py": (HANDLERS / "sandbox.py").read_bytes()})},
        MemorySize=256,
        Timeout=60,
    )
    assert client.get_function_configuration(FunctionName="tmpfill")["EphemeralStorage"] == {"Size": 512}
    fits = json.loads(client.invoke(FunctionName="tmpfill", Payload=json.dumps({"mb": 480}))["Payload"].read())
    assert fits == {"written_mb": 480, "error": None}  # disk-backed: far more than the 256 MB of memory
    over = json.loads(client.invoke(FunctionName="tmpfill", Payload=json.dumps({"mb": 530}))["Payload"].read())
    assert over["error"] == "No space left on device" and 480 <= over["written_mb"] < 512
    with pytest.raises(client.exceptions.InvalidParameterValueException, match="EphemeralStorage"):
        client.update_function_configuration(FunctionName="tmpfill", EphemeralStorage={"Size": 20480})
    client.delete_function(FunctionName="tmpfill")


def test_reserved_variables_are_refused(client):
    with pytest.raises(client.exceptions.InvalidParameterValueException, match="reserved keys.*AWS_REGION"):
        client.create_function(
            FunctionName="reserved",
            Runtime="python3.12",
            Role=ROLE,
            Handler="app.echo",
            Code={"ZipFile": in_memory_zip({"app.py": b"def echo(e, c):\n    return e\n"})},
            Environment={"Variables": {"AWS_REGION": "eu-west-1"}},
        )


# -- limits, refused as AWS refuses them ---------------------------------------------------------------------------
def _zeros_zip(path: Path, name: str, size: int) -> Path:
    """A zip holding ``size`` bytes of zeros: hundreds of MB unzipped, a few hundred KB zipped."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        with zf.open(name, "w", force_zip64=True) as fh:
            block = bytes(8 * 1024 * 1024)
            left = size
            while left > 0:
                fh.write(block[: min(left, len(block))])
                left -= len(block)
    return path


def test_limits_on_layers_code_and_payload(aws, client, tmp_path):
    layer_zip = tmp_path / "layer.zip"
    layer_zip.write_bytes(in_memory_zip({"python/helper.py": b"VALUE = 1\n"}))
    arns = [
        json.loads(aws("publish-layer-version", "--layer-name", f"l{i}", "--zip-file", f"fileb://{layer_zip}").stdout)[
            "LayerVersionArn"
        ]
        for i in range(6)
    ]
    sixth = cli_create(aws, "six-layers", "app.echo", None, "--layers", *arns, ok=False)
    assert sixth.returncode != 0
    assert "(InvalidParameterValueException)" in sixth.stderr and "Cannot reference more than 5 layers" in sixth.stderr

    big = _zeros_zip(tmp_path / "big.zip", "data.bin", 262_144_001)
    assert big.stat().st_size < 2 * 1024 * 1024
    too_big = cli_create(aws, "too-big", "app.echo", big, ok=False)
    assert "(InvalidParameterValueException)" in too_big.stderr
    assert "Unzipped size must be smaller than 262144000 bytes" in too_big.stderr

    heavy = json.loads(
        aws(
            "publish-layer-version",
            "--layer-name",
            "heavy",
            "--zip-file",
            f"fileb://{_zeros_zip(tmp_path / 'heavy.zip', 'python/heavy.bin', 200 * 1024 * 1024)}",
        ).stdout
    )["LayerVersionArn"]
    code = _zeros_zip(tmp_path / "code.zip", "data.bin", 61 * 1024 * 1024)
    combined = cli_create(aws, "combined", "app.echo", code, "--layers", heavy, ok=False)
    assert "Function code combined with layers exceeds the maximum allowed size of 262144000 bytes" in (combined.stderr)

    cli_create(aws, "payloads", "app.big_response")
    payload = aws.home / "big.json"
    payload.write_text(json.dumps({"bytes": 1, "pad": "x" * (6 * 1024 * 1024)}))
    refused = aws("invoke", "--function-name", "payloads", "--payload", f"file://{payload}", "out.json", ok=False)
    assert "(RequestEntityTooLargeException)" in refused.stderr
    assert "Request must be smaller than 6291456 bytes for the InvokeFunction operation" in refused.stderr
    resp = client.invoke(FunctionName="payloads", Payload=json.dumps({"bytes": 6 * 1024 * 1024 + 200}))
    error = json.loads(resp["Payload"].read())
    assert resp["FunctionError"] == "Unhandled" and error["errorType"] == "Function.ResponseSizeTooLarge"
    assert error["errorMessage"] == (
        f"Response payload size ({6 * 1024 * 1024 + 202} bytes) exceeded maximum allowed payload size (6291556 bytes)."
    )
    ok = json.loads(client.invoke(FunctionName="payloads", Payload=json.dumps({"bytes": 10}))["Payload"].read())
    assert ok == "x" * 10
    for name in ("payloads",):
        aws("delete-function", "--function-name", name)


def test_unavailable_python_is_refused_with_how_to(tmp_path, monkeypatch):
    from perfdesk.lambda_pkg.emulator import Emulator

    from .conftest import lambda_client

    monkeypatch.setenv("PERFDESK_LAMBDA_PYTHON_3_13", str(tmp_path / "no-such-python"))
    with Emulator(work_dir=tmp_path / "emu", runtime_cache=tmp_path / "runtimes") as emu:
        c = lambda_client(emu.url)
        code = in_memory_zip({"app.py": b"def echo(e, c):\n    return e\n"})
        for runtime, phrase in (
            ("python3.13", "pyenv install 3.13"),
            ("python3.9", "python3.10, python3.11, python3.12, python3.13"),
        ):
            with pytest.raises(c.exceptions.InvalidParameterValueException, match=phrase):
                c.create_function(
                    FunctionName="f", Runtime=runtime, Role=ROLE, Handler="app.echo", Code={"ZipFile": code}
                )
        assert emu.describe()["runtimes"]["python3.13"].startswith("unavailable: install it with `pyenv install")


# -- memory and init ---------------------------------------------------------------------------------------------
def test_out_of_memory_during_init(client, emulator):
    client.create_function(
        FunctionName="hog-init",
        Runtime="python3.12",
        Role=ROLE,
        Handler="app.echo",
        Code={"ZipFile": in_memory_zip({"app.py": (HANDLERS / "sandbox.py").read_bytes()})},
        MemorySize=128,
        Environment={"Variables": {"HOG_INIT_MB": "300"}},
    )
    resp = client.invoke(FunctionName="hog-init", Payload=b"{}", LogType="Tail")
    error = json.loads(resp["Payload"].read())
    text, rep = parse_log_result(resp["LogResult"])
    assert resp["FunctionError"] == "Unhandled" and error["errorType"] == "Runtime.ExitError"
    assert "Runtime exited with error: signal: killed" in error["errorMessage"]
    assert rep.status == "error" and rep.error_type == "Runtime.OutOfMemory" and rep.max_memory_used_mb == 128
    assert [(r.phase, r.status, r.error_type) for r in parse_init_reports(text)] == [
        ("invoke", "error", "Runtime.OutOfMemory")
    ]
    assert emulator.environments("hog-init") == []
    client.delete_function(FunctionName="hog-init")


def test_init_phase_limit_then_init_inside_the_invocation(tmp_path):
    """The init phase has its own limit (Lambda's 10 s, shortened here to keep the test short); past it Lambda logs
    INIT_REPORT and initialises again inside the invocation, under the function's timeout."""
    from perfdesk.lambda_pkg.emulator import Emulator
    from perfdesk.lambda_pkg.emulator.environment import INIT_TIMEOUT_S

    from .conftest import lambda_client

    assert INIT_TIMEOUT_S == 10.0
    sink = []
    with Emulator(work_dir=tmp_path, init_timeout_s=1.0, log_sink=lambda f, t: sink.append(t)) as emu:
        assert emu.describe()["init_timeout_s"] == 1.0
        c = lambda_client(emu.url)
        code = in_memory_zip({"app.py": (HANDLERS / "sandbox.py").read_bytes()})
        for name, timeout in (("slow-ok", 5), ("slow-timeout", 1)):
            c.create_function(
                FunctionName=name,
                Runtime="python3.12",
                Role=ROLE,
                Handler="app.echo",
                Code={"ZipFile": code},
                Timeout=timeout,
                Environment={"Variables": {"SLOW_INIT_S": "1.5"}},
            )
        resp = c.invoke(FunctionName="slow-ok", Payload=b'{"a": 1}', LogType="Tail")
        text, rep = parse_log_result(resp["LogResult"])
        assert "FunctionError" not in resp and json.loads(resp["Payload"].read()) == {"a": 1}
        assert rep.init_ms is None and rep.duration_ms >= 1500 and rep.billed_ms == -(-rep.duration_ms // 1)
        assert "INIT_REPORT" not in text  # the retried init succeeded: only the init phase's report, in the log
        assert [(r.phase, r.status) for r in parse_init_reports(sink[-1])] == [("init", "timeout")]

        resp = c.invoke(FunctionName="slow-timeout", Payload=b"{}", LogType="Tail")
        text, rep = parse_log_result(resp["LogResult"])
        error = json.loads(resp["Payload"].read())
        assert error["errorType"] == "Sandbox.Timedout" and "Task timed out after 1.00 seconds" in error["errorMessage"]
        assert rep.status == "timeout"
        assert [(r.phase, r.status) for r in parse_init_reports(text)] == [("invoke", "timeout")]
        assert [(r.phase, r.status) for r in parse_init_reports(sink[-1])] == [
            ("init", "timeout"),
            ("invoke", "timeout"),
        ]
        init = parse_init_reports(sink[-1])[0]
        assert 1000 <= init.duration_ms < 1500

        resp = c.invoke(FunctionName="slow-ok", Payload=b"{}", LogType="Tail")  # warm now
        assert parse_log_result(resp["LogResult"])[1].init_ms is None


def test_cold_billed_duration_includes_init(client, tiny_zip):
    from .conftest import create_tiny

    create_tiny(client, "billed", tiny_zip, env={"TINY_INIT_SLEEP": "0.3"})
    cold = parse_log_result(client.invoke(FunctionName="billed", Payload=b"{}", LogType="Tail")["LogResult"])[1]
    warm = parse_log_result(client.invoke(FunctionName="billed", Payload=b"{}", LogType="Tail")["LogResult"])[1]
    # Billed Duration is the ceiling of the unrounded times; REPORT prints them to 0.01 ms, so their sum can land
    # just under a whole millisecond the unrounded one passed (0.66 + 398.34 = 399.00, billed 400)
    assert cold.init_ms >= 300 and _ceil_within(cold.billed_ms, cold.duration_ms + cold.init_ms, 0.01)
    assert warm.init_ms is None and _ceil_within(warm.billed_ms, max(warm.duration_ms, 0.5), 0.005)
    assert warm.max_memory_used_mb >= cold.max_memory_used_mb  # the environment's peak, not the invocation's
    client.delete_function(FunctionName="billed")


def _ceil_within(billed: float, printed_ms: float, rounding: float) -> bool:
    """``billed`` is the ceiling of a time within ``rounding`` of ``printed_ms`` (REPORT rounds to 0.01 ms)."""
    return -(-(printed_ms - rounding) // 1) <= billed <= -(-(printed_ms + rounding) // 1)


# -- function URLs -----------------------------------------------------------------------------------------------
def _url_request(
    url: str,
    body: bytes = b"",
    sign_with: tuple[str, str] | None = None,
    method: str = "POST",
    content_type: str = "application/json",
):
    import urllib3
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    headers = {"Content-Type": content_type}
    if sign_with is not None:
        req = AWSRequest(method=method, url=url, data=body, headers=headers)
        SigV4Auth(Credentials(*sign_with), "lambda", "us-east-1").add_auth(req)
        headers = dict(req.prepare().headers)
    return urllib3.request(method, url, body=body, headers=headers, timeout=60, retries=False)


def test_function_url_auth_and_event(client):
    client.create_function(
        FunctionName="web",
        Runtime="python3.12",
        Role=ROLE,
        Handler="app.echo",
        Code={"ZipFile": in_memory_zip({"app.py": (HANDLERS / "sandbox.py").read_bytes()})},
    )
    url = client.create_function_url_config(FunctionName="web", AuthType="AWS_IAM")["FunctionUrl"]
    unsigned = _url_request(url + "items?x=1", b'{"n": 1}')
    assert unsigned.status == 403 and unsigned.headers["x-amzn-ErrorType"] == "AccessDeniedException"
    assert json.loads(unsigned.data)["Message"].startswith("Forbidden.")
    forged = _url_request(url + "items?x=1", b'{"n": 1}', sign_with=("test", "not-the-secret"))
    assert forged.status == 403 and "signature we calculated does not match" in json.loads(forged.data)["message"]
    stranger = _url_request(url + "items", b"{}", sign_with=("AKIDUNKNOWN", "x"))
    assert stranger.status == 403 and json.loads(stranger.data)["message"] == (
        "The security token included in the request is invalid."
    )
    signed = _url_request(url + "items?x=1&y=a%20b", b'{"n": 1}', sign_with=("test", "test"))
    assert signed.status == 200, signed.data
    event = json.loads(signed.data)
    assert event["version"] == "2.0" and event["routeKey"] == "$default"
    assert event["rawPath"] == "/items" and event["rawQueryString"] == "x=1&y=a%20b"
    assert event["queryStringParameters"] == {"x": "1", "y": "a b"}
    assert event["requestContext"]["http"]["method"] == "POST" and event["requestContext"]["http"]["path"] == "/items"
    assert event["requestContext"]["authorizer"]["iam"]["accessKey"] == "test"
    assert event["body"] == '{"n": 1}' and event["isBase64Encoded"] is False
    assert event["headers"]["content-type"] == "application/json" and "authorization" in event["headers"]

    client.delete_function_url_config(FunctionName="web")
    client.create_function_url_config(FunctionName="web", AuthType="NONE")
    closed = _url_request(url, b"{}")
    assert closed.status == 403  # since October 2025: public access needs both permissions
    client.add_permission(
        FunctionName="web",
        StatementId="url",
        Action="lambda:InvokeFunctionUrl",
        Principal="*",
        FunctionUrlAuthType="NONE",
    )
    assert _url_request(url, b"{}").status == 403
    client.add_permission(
        FunctionName="web",
        StatementId="invoke",
        Action="lambda:InvokeFunction",
        Principal="*",
        InvokedViaFunctionUrl=True,
    )
    opened = _url_request(url + "a", b"\x00\x01", method="PUT", content_type="application/octet-stream")
    assert opened.status == 200
    event = json.loads(opened.data)
    assert "authorizer" not in event["requestContext"] and event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == b"\x00\x01" and event["requestContext"]["http"]["method"] == "PUT"
    policy = json.loads(client.get_policy(FunctionName="web")["Policy"])
    assert [s["Sid"] for s in policy["Statement"]] == ["url", "invoke"]
    client.delete_function(FunctionName="web")


def test_zip_with_unreadable_file_fails_as_on_lambda(client):
    """A file the zip marks owner-only (0600) cannot be read by Lambda's sandbox user either."""
    if os.geteuid() != 0:
        pytest.skip("isolation needs root")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        info = zipfile.ZipInfo("app.py", (2020, 1, 1, 0, 0, 0))
        info.external_attr = (0o100600) << 16
        zf.writestr(info, "def echo(e, c):\n    return e\n")
    client.create_function(
        FunctionName="private", Runtime="python3.12", Role=ROLE, Handler="app.echo", Code={"ZipFile": buf.getvalue()}
    )
    error = json.loads(client.invoke(FunctionName="private", Payload=b"{}")["Payload"].read())
    assert "Permission denied" in error["errorMessage"], error
    client.delete_function(FunctionName="private")


@isolated
@pytest.mark.parametrize("runtime", ["python3.10", "python3.11", "python3.12", "python3.13"])
def test_each_python_runtime_is_its_own_interpreter(client, runtime):
    """Each runtime runs its own Python version with the runtime's libraries where Lambda keeps them: /var/runtime
    up to 3.10, the interpreter's site-packages from 3.11 on."""
    code = b"import sys, boto3\n\ndef handler(e, c):\n    return [list(sys.version_info[:2]), boto3.__file__]\n"
    name = "rt-" + runtime.replace(".", "")
    client.create_function(
        FunctionName=name,
        Runtime=runtime,
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": in_memory_zip({"app.py": code})},
    )
    version, boto3_file = json.loads(client.invoke(FunctionName=name, Payload=b"{}")["Payload"].read())
    minor = runtime[len("python") :]
    assert version == [3, int(minor.split(".")[1])]
    expected = "/var/runtime/boto3/" if minor == "3.10" else f"/var/lang/lib/python{minor}/site-packages/boto3/"
    assert boto3_file.startswith(expected), boto3_file
    client.delete_function(FunctionName=name)


#: Broken handlers (tests/data/lambda_init/<module>.py.txt, zipped as <module>.py): what the Invoke answers and what
#: the REPORT line's Error Type says, as Lambda's Python runtime reports them.
BROKEN_INIT = [
    (
        "syntax_error",
        "Runtime.UserCodeSyntaxError",
        "Syntax error in module 'syntax_error'",
        "Runtime.UserCodeSyntaxError",
    ),
    (
        "no_handler",
        "Runtime.HandlerNotFound",
        "Handler 'handler' missing on module 'no_handler'",
        "Runtime.HandlerNotFound",
    ),
    ("raises_at_import", "RuntimeError", "weights missing", "Runtime.Unknown"),
    ("exits_at_import", "Runtime.ExitError", "Error: Runtime exited with error: exit status 3", "Runtime.ExitError"),
]


@pytest.mark.parametrize("module,error_type,message,report_type", BROKEN_INIT, ids=[b[0] for b in BROKEN_INIT])
def test_broken_init(client, emulator, module, error_type, message, report_type):
    source = (Path(__file__).parents[1] / "data" / "lambda_init" / f"{module}.py.txt").read_bytes()
    name = f"broken-{module}".replace("_", "-")
    client.create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=ROLE,
        Handler=f"{module}.handler",
        Code={"ZipFile": in_memory_zip({f"{module}.py": source})},
    )
    resp = client.invoke(FunctionName=name, Payload=b"{}", LogType="Tail")
    error = json.loads(resp["Payload"].read())
    text, rep = parse_log_result(resp["LogResult"])
    assert resp["FunctionError"] == "Unhandled" and resp["StatusCode"] == 200
    assert error["errorType"] == error_type and message in error["errorMessage"], error
    if error_type == "Runtime.ExitError":
        assert error["errorMessage"].startswith(f"RequestId: {rep.request_id} Error: ")
    assert rep.status == "error" and rep.error_type == report_type and rep.init_ms is None
    assert [(r.phase, r.status, r.error_type) for r in parse_init_reports(text)] == [("invoke", "error", report_type)]
    assert emulator.environments(name) == []  # a failed init leaves no environment behind
    client.delete_function(FunctionName=name)
