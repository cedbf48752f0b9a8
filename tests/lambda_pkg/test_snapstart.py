"""SnapStart on the emulator: enabled, published, restored, through the AWS CLI and boto3, with the runtime hooks."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from perfdesk.lambda_pkg.builders import in_memory_zip
from perfdesk.lambda_pkg.report import parse_init_reports, parse_log_result, parse_report
from tests.lambda_pkg.conftest import HANDLERS, ROLE, lambda_client


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """An emulator whose CloudWatch stand-in is kept: (emulator, {function: [log texts]})."""
    from perfdesk.lambda_pkg.emulator import Emulator

    logs: dict[str, list[str]] = {}
    emu = Emulator(
        work_dir=tmp_path_factory.mktemp("emu-snap"),
        idle_s=60,
        account_concurrency=4,
        log_sink=lambda name, text: logs.setdefault(name, []).append(text),
    ).start()
    yield emu, logs
    emu.stop()


@pytest.fixture(scope="module")
def client(logged):
    return lambda_client(logged[0].url)


def _zip() -> bytes:
    return in_memory_zip({"snappy.py": (HANDLERS / "snappy.py").read_bytes()})


def _aws(emu, home: Path, *args: str) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent / "aws"
    cmd = [str(exe)] if exe.exists() else [shutil.which("aws") or "aws"]
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
    return subprocess.run(
        [*cmd, "--endpoint-url", emu.url, "lambda", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=home,
        timeout=120,
    )


def test_snapstart_through_the_aws_cli(logged, client, tmp_path):
    emu, logs = logged
    (tmp_path / "f.zip").write_bytes(_zip())
    made = _aws(
        emu, tmp_path, "create-function", "--function-name", "snapcli", "--runtime", "python3.12", "--role", ROLE,
        "--handler", "snappy.handler", "--zip-file", f"fileb://{tmp_path / 'f.zip'}", "--memory-size", "256",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["SnapStart"] == {"ApplyOn": "None", "OptimizationStatus": "Off"}
    on = _aws(emu, tmp_path, "update-function-configuration", "--function-name", "snapcli",
              "--snap-start", "ApplyOn=PublishedVersions")  # fmt: skip
    assert on.returncode == 0, on.stderr
    assert json.loads(on.stdout)["SnapStart"]["ApplyOn"] == "PublishedVersions"
    published = _aws(emu, tmp_path, "publish-version", "--function-name", "snapcli")
    assert published.returncode == 0, published.stderr
    version = json.loads(published.stdout)
    assert version["Version"] == "1" and version["FunctionArn"].endswith(":snapcli:1")
    assert version["SnapStart"] == {"ApplyOn": "PublishedVersions", "OptimizationStatus": "On"}
    waited = _aws(emu, tmp_path, "wait", "published-version-active", "--function-name", "snapcli", "--qualifier", "1")
    assert waited.returncode == 0, waited.stderr
    # the init ran once, at publish, with the before-snapshot hook, and logged INIT_REPORT
    publish_log = logs["snapcli"][0]
    assert publish_log.startswith("INIT_START Runtime Version: python:3.12")
    assert "snappy: before snapshot" in publish_log
    assert [(r.phase, r.status) for r in parse_init_reports(publish_log)] == [("init", "success")]

    out = tmp_path / "out.json"
    cold = _aws(emu, tmp_path, "invoke", "--function-name", "snapcli", "--qualifier", "1", "--log-type", "Tail",
                str(out))  # fmt: skip
    assert cold.returncode == 0, cold.stderr
    answer = json.loads(cold.stdout)
    assert answer["ExecutedVersion"] == "1"
    text, report = parse_log_result(answer["LogResult"])
    assert report is not None and report.init_ms is None and report.cold, text
    assert report.restore_ms is not None and report.billed_restore_ms is not None
    assert report.billed_restore_ms <= report.restore_ms + 1
    assert "Restore Duration:" in text and "Billed Restore Duration:" in text and "Init Duration" not in text
    body = json.loads(out.read_text())
    assert body["before_snapshot"] == 1 and body["after_restore"] == 1 and body["init_type"] == "snap-start"
    assert body["version"] == "1"
    restore_log = logs["snapcli"][-1]
    assert restore_log.startswith("RESTORE_START Runtime Version: python:3.12")
    assert "snappy: after restore" in restore_log and "RESTORE_REPORT Restore Duration:" in restore_log

    warm = client.invoke(FunctionName="snapcli", Qualifier="1", LogType="Tail")
    warm_report = parse_report(base64.b64decode(warm["LogResult"]).decode())
    assert warm_report is not None and not warm_report.cold
    assert json.loads(warm["Payload"].read())["invocations"] == 2

    latest = client.invoke(FunctionName="snapcli", LogType="Tail")  # $LATEST: no SnapStart, an ordinary init
    latest_report = parse_report(base64.b64decode(latest["LogResult"]).decode())
    assert latest_report is not None and latest_report.init_ms is not None and latest_report.restore_ms is None
    assert json.loads(latest["Payload"].read())["init_type"] == "on-demand"


def test_restored_environments_share_the_snapshot_not_the_restore(client):
    client.create_function(
        FunctionName="snapmany", Runtime="python3.13", Role=ROLE, Handler="snappy.handler",
        Code={"ZipFile": _zip()}, MemorySize=256, Timeout=10, SnapStart={"ApplyOn": "PublishedVersions"},
        Environment={"Variables": {"SNAPPY_SLEEP": "0.5"}},
    )  # fmt: skip
    number = client.publish_version(FunctionName="snapmany")["Version"]
    client.get_waiter("published_version_active").wait(FunctionName="snapmany", Qualifier=number)
    with ThreadPoolExecutor(3) as pool:
        answers = list(
            pool.map(lambda _: json.loads(client.invoke(FunctionName=f"snapmany:{number}")["Payload"].read()), range(3))
        )
    assert len({a["instance"] for a in answers}) == 1  # one init, at publish
    assert len({a["restored"] for a in answers}) == 3  # three restores, each with its own after-restore hook
    assert all(a["before_snapshot"] == 1 and a["after_restore"] == 1 for a in answers)


def test_snapstart_refused_where_aws_refuses_it(client):
    with pytest.raises(client.exceptions.InvalidParameterValueException, match="python3.11 is not supported for SnapS"):
        client.create_function(
            FunctionName="snapold", Runtime="python3.11", Role=ROLE, Handler="snappy.handler",
            Code={"ZipFile": _zip()}, SnapStart={"ApplyOn": "PublishedVersions"},
        )  # fmt: skip
    client.create_function(
        FunctionName="snapdown", Runtime="python3.12", Role=ROLE, Handler="snappy.handler",
        Code={"ZipFile": _zip()}, SnapStart={"ApplyOn": "PublishedVersions"},
    )  # fmt: skip
    with pytest.raises(client.exceptions.InvalidParameterValueException, match="python3.11 is not supported for SnapS"):
        client.update_function_configuration(FunctionName="snapdown", Runtime="python3.11")
    with pytest.raises(client.exceptions.InvalidParameterValueException, match="ephemeral storage larger than 512"):
        client.update_function_configuration(FunctionName="snapdown", EphemeralStorage={"Size": 1024})
    client.delete_function(FunctionName="snapdown")
    with pytest.raises(client.exceptions.InvalidParameterValueException, match="PublishedVersions, None"):
        client.create_function(
            FunctionName="snapbad", Runtime="python3.12", Role=ROLE, Handler="snappy.handler",
            Code={"ZipFile": _zip()}, SnapStart={"ApplyOn": "Always"},
        )  # fmt: skip


def test_failing_hooks(client):
    for name, fail in (("snapbefore", "before"), ("snapafter", "after")):
        client.create_function(
            FunctionName=name, Runtime="python3.12", Role=ROLE, Handler="snappy.handler", Code={"ZipFile": _zip()},
            Timeout=5, SnapStart={"ApplyOn": "PublishedVersions"}, Environment={"Variables": {"SNAPPY_FAIL": fail}},
        )  # fmt: skip
    before = client.publish_version(FunctionName="snapbefore")["Version"]
    with pytest.raises(Exception, match="Failed"):
        client.get_waiter("published_version_active").wait(
            FunctionName="snapbefore", Qualifier=before, WaiterConfig={"Delay": 1, "MaxAttempts": 30}
        )
    config = client.get_function_configuration(FunctionName="snapbefore", Qualifier=before)
    assert config["State"] == "Failed" and "before-snapshot hook failed" in config["StateReason"]
    with pytest.raises(client.exceptions.ResourceConflictException, match="Failed"):
        client.invoke(FunctionName="snapbefore", Qualifier=before)

    after = client.publish_version(FunctionName="snapafter")["Version"]
    client.get_waiter("published_version_active").wait(FunctionName="snapafter", Qualifier=after)
    answer = client.invoke(FunctionName="snapafter", Qualifier=after, LogType="Tail")
    assert answer.get("FunctionError") == "Unhandled"
    error = json.loads(answer["Payload"].read())
    assert "after-restore hook failed" in json.dumps(error)
