"""Lambda Managed Instances on the emulator: the AWS CLI's capacity-provider commands, and many requests at once in
one execution environment (a worker process each, each with its own init, no per-request cold start)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from perfdesk.lambda_pkg.builders import in_memory_zip
from tests.lambda_pkg.conftest import HANDLERS, ROLE, lambda_client
from tests.lambda_pkg.test_faithful import _aws_exe


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    from perfdesk.lambda_pkg.emulator import Emulator

    emu = Emulator(work_dir=tmp_path_factory.mktemp("emu"), idle_s=60, account_concurrency=4).start()
    yield emu
    emu.stop()


@pytest.fixture(scope="module")
def managed_zip(tmp_path_factory):
    path = tmp_path_factory.mktemp("zip") / "managed.zip"
    path.write_bytes(in_memory_zip({"managed.py": (HANDLERS / "managed.py").read_bytes()}))
    return path


def _cli(emulator, home, *args: str) -> subprocess.CompletedProcess:
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
        [*_aws_exe(), "--endpoint-url", emulator.url, "--output", "json", "lambda", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=home,
        timeout=120,
    )


def test_aws_cli_drives_capacity_providers(emulator, managed_zip, tmp_path):
    def ok(*args: str) -> dict:
        proc = _cli(emulator, tmp_path, *args)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout) if proc.stdout.strip() else {}

    def fails(*args: str) -> str:
        proc = _cli(emulator, tmp_path, *args)
        assert proc.returncode != 0
        return proc.stderr

    cp = ok(
        "create-capacity-provider",
        "--capacity-provider-name",
        "cli-cp",
        "--vpc-config",
        "SubnetIds=subnet-0abc,SecurityGroupIds=sg-0abc",
        "--permissions-config",
        f"CapacityProviderOperatorRoleArn={ROLE}",
        "--instance-requirements",
        "Architectures=x86_64,AllowedInstanceTypes=m7i.large",
        "--capacity-provider-scaling-config",
        "ScalingMode=Auto,MaxVCpuCount=8",
    )["CapacityProvider"]
    arn = cp["CapacityProviderArn"]
    assert arn == "arn:aws:lambda:us-east-1:123456789012:capacity-provider:cli-cp" and cp["State"] == "Active"
    assert "ResourceConflictException" in fails(
        "create-capacity-provider",
        "--capacity-provider-name",
        "cli-cp",
        "--vpc-config",
        "SubnetIds=subnet-0abc,SecurityGroupIds=sg-0abc",
        "--permissions-config",
        f"CapacityProviderOperatorRoleArn={ROLE}",
    )
    got = ok("get-capacity-provider", "--capacity-provider-name", "cli-cp")["CapacityProvider"]
    assert got["InstanceRequirements"]["AllowedInstanceTypes"] == ["m7i.large"]
    assert got["CapacityProviderScalingConfig"]["MaxVCpuCount"] == 8
    assert [c["CapacityProviderArn"] for c in ok("list-capacity-providers")["CapacityProviders"]] == [arn]
    assert "ResourceNotFoundException" in fails("get-capacity-provider", "--capacity-provider-name", "nope")

    lmi = {"CapacityProviderArn": arn, "PerExecutionEnvironmentMaxConcurrency": 2}
    config = json.dumps({"LambdaManagedInstancesCapacityProviderConfig": lmi})
    common = ["--role", ROLE, "--handler", "managed.handler", "--zip-file", f"fileb://{managed_zip}"]
    refused = fails(
        "create-function", "--function-name", "cli-old", "--runtime", "python3.12", "--memory-size", "2048",
        *common, "--capacity-provider-config", config,
    )  # fmt: skip
    assert "python3.12 is not supported for Lambda Managed Instances" in refused
    fn = ok(
        "create-function", "--function-name", "cli-mi", "--runtime", "python3.13", "--memory-size", "2048",
        *common, "--capacity-provider-config", config,
    )  # fmt: skip
    assert fn["CapacityProviderConfig"]["LambdaManagedInstancesCapacityProviderConfig"]["CapacityProviderArn"] == arn
    version = ok("publish-version", "--function-name", "cli-mi")
    assert version["Version"] == "1" and version["State"] == "Pending"
    deadline = time.time() + 60
    while ok("get-function-configuration", "--function-name", "cli-mi", "--qualifier", "1")["State"] == "Pending":
        assert time.time() < deadline
        time.sleep(0.2)
    out = tmp_path / "out.json"
    answer = ok("invoke", "--function-name", "cli-mi", "--qualifier", "1", "--log-type", "Tail", str(out))
    body = json.loads(out.read_text())
    assert body["init_type"] == "lambda-managed-instances" and body["max_concurrency"] == "2"
    assert answer["ExecutedVersion"] == "1"
    assert "Init Duration" not in base64.b64decode(answer["LogResult"]).decode()  # the init ran at publish
    versions = ok("list-function-versions-by-capacity-provider", "--capacity-provider-name", "cli-cp")
    assert versions["FunctionVersions"] == [{"FunctionArn": f"{fn['FunctionArn']}:1", "State": "Active"}]
    assert "ResourceConflictException" in fails("delete-capacity-provider", "--capacity-provider-name", "cli-cp")
    ok("delete-function", "--function-name", "cli-mi")
    assert (
        ok("delete-capacity-provider", "--capacity-provider-name", "cli-cp")["CapacityProvider"]["State"] == "Deleting"
    )
    assert ok("list-capacity-providers")["CapacityProviders"] == []


def test_one_environment_serves_requests_at_once(emulator, managed_zip):
    client = lambda_client(emulator.url)
    arn = client.create_capacity_provider(
        CapacityProviderName="conc-cp",
        VpcConfig={"SubnetIds": ["subnet-1"], "SecurityGroupIds": ["sg-1"]},
        PermissionsConfig={"CapacityProviderOperatorRoleArn": ROLE},
        CapacityProviderScalingConfig={"ScalingMode": "Auto", "MaxVCpuCount": 2},  # one 1-vCPU environment... or 2
    )["CapacityProvider"]["CapacityProviderArn"]
    client.create_function(
        FunctionName="conc",
        Runtime="python3.13",
        Role=ROLE,
        Handler="managed.handler",
        Code={"ZipFile": managed_zip.read_bytes()},
        MemorySize=2048,
        Timeout=30,
        CapacityProviderConfig={
            "LambdaManagedInstancesCapacityProviderConfig": {
                "CapacityProviderArn": arn,
                "PerExecutionEnvironmentMaxConcurrency": 3,
            }
        },
    )
    # before a version is published nothing serves it (a Qualifier of $LATEST is the unqualified function)
    with pytest.raises(client.exceptions.InvalidParameterValueException, match="publish a version"):
        client.invoke(FunctionName="conc", Qualifier="$LATEST", Payload=b"{}")
    client.publish_version(FunctionName="conc")
    deadline = time.time() + 60
    while client.get_function_configuration(FunctionName="conc", Qualifier="1")["State"] != "Active":
        assert time.time() < deadline
        time.sleep(0.1)

    def invoke(_):
        resp = client.invoke(FunctionName="conc", Qualifier="1", Payload=json.dumps({"sleep_s": 1.0}), LogType="Tail")
        return json.loads(resp["Payload"].read()), base64.b64decode(resp["LogResult"]).decode()

    with ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(invoke, range(3)))
    bodies = [b for b, _ in answers]
    assert len({b["environment"] for b in bodies}) == 1  # one environment ...
    assert len({b["worker"] for b in bodies}) == 3  # ... three worker processes, each with its own init
    assert max(b["start"] for b in bodies) < min(b["end"] for b in bodies)  # all three at once
    assert all(b["loaded_at"] < min(x["start"] for x in bodies) for b in bodies)  # every init ran before
    assert all("Init Duration" not in log for _, log in answers)
    client.delete_function(FunctionName="conc")
    client.delete_capacity_provider(CapacityProviderName="conc-cp")


def _managed_function(client, name: str, zip_bytes: bytes, *, concurrency: int, max_vcpus: int | None = None) -> None:
    scaling = {"ScalingMode": "Auto", **({"MaxVCpuCount": max_vcpus} if max_vcpus else {})}
    arn = client.create_capacity_provider(
        CapacityProviderName=f"{name}-cp",
        VpcConfig={"SubnetIds": ["subnet-1"], "SecurityGroupIds": ["sg-1"]},
        PermissionsConfig={"CapacityProviderOperatorRoleArn": ROLE},
        CapacityProviderScalingConfig=scaling,
    )["CapacityProvider"]["CapacityProviderArn"]
    client.create_function(
        FunctionName=name,
        Runtime="python3.13",
        Role=ROLE,
        Handler="managed.handler",
        Code={"ZipFile": zip_bytes},
        MemorySize=2048,
        Timeout=30,
        Tags={"perfdesk:session": "sweep-me", "perfdesk:managed": "true"},
        CapacityProviderConfig={
            "LambdaManagedInstancesCapacityProviderConfig": {
                "CapacityProviderArn": arn,
                "PerExecutionEnvironmentMaxConcurrency": concurrency,
            }
        },
    )


def _publish(client, name: str) -> str:
    version = client.publish_version(FunctionName=name)["Version"]
    deadline = time.time() + 60
    while client.get_function_configuration(FunctionName=name, Qualifier=version)["State"] != "Active":
        assert time.time() < deadline
        time.sleep(0.1)
    return version


def test_throttled_when_every_worker_is_busy_then_scaled_on_utilisation(emulator, managed_zip):
    client = lambda_client(emulator.url)
    _managed_function(client, "scale", managed_zip.read_bytes(), concurrency=1, max_vcpus=2)  # at most 2 envs
    version = _publish(client, "scale")
    outcomes = []

    def invoke(_):
        try:
            client.invoke(FunctionName="scale", Qualifier=version, Payload=json.dumps({"sleep_s": 1.5}))
            return "ok"
        except client.exceptions.TooManyRequestsException:
            return "throttled"

    with ThreadPoolExecutor(3) as pool:
        outcomes = list(pool.map(invoke, range(3)))
    assert outcomes.count("ok") >= 1 and "throttled" in outcomes  # one environment of one worker: the rest throttle
    deadline = time.time() + 60  # a busy environment (100 % > 50 %) started another one in the background
    while emulator.capacity.version("scale", version).pool.describe()["environments"] < 2:
        assert time.time() < deadline
        time.sleep(0.2)
    with ThreadPoolExecutor(2) as pool:
        assert list(pool.map(invoke, range(2))) == ["ok", "ok"]
    assert emulator.capacity.version("scale", version).pool.describe()["environments"] == 2  # MaxVCpuCount


def test_a_deleted_version_ends_its_environments_and_teardown_sweeps_the_provider(emulator, managed_zip):
    from perfdesk.lambda_pkg.teardown import sweep

    client = lambda_client(emulator.url)
    _managed_function(client, "swept", managed_zip.read_bytes(), concurrency=2)
    first = _publish(client, "swept")
    pids = set(emulator.capacity.version("swept", first).pool.pids())
    assert len(pids) == 2
    client.update_function_configuration(FunctionName="swept", Environment={"Variables": {"NEW_CONFIG": "1"}})
    second = _publish(client, "swept")
    assert second != first
    client.delete_function(FunctionName="swept", Qualifier=first)
    assert not pids & set(emulator.environment_pids())
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.get_function_configuration(FunctionName="swept", Qualifier=first)
    body = json.loads(client.invoke(FunctionName="swept", Qualifier=second, Payload=b"{}")["Payload"].read())
    assert body["version"] == second

    base = {"region": "us-east-1", "lambda_endpoint": emulator.url, "local": True}
    entries = [{**base, "type": "function", "name": "swept"}, {**base, "type": "capacity-provider", "name": "swept-cp"}]
    removed = sweep("sweep-me", entries=entries, region=None)
    assert "function swept" in removed and "capacity provider swept-cp" in removed
    assert all(
        c["CapacityProviderArn"].split(":")[-1] != "swept-cp"
        for c in client.list_capacity_providers()["CapacityProviders"]
    )
