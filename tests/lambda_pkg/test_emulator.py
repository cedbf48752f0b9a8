"""The emulator through boto3, with the tiny handlers: Lambda's behaviour where perfdesk measures it."""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest

from perfdesk.lambda_pkg.functions import FunctionManager
from perfdesk.lambda_pkg.report import parse_log_result

from .conftest import ROLE, create_tiny


def invoke(client, name: str, event: dict | None = None):
    resp = client.invoke(FunctionName=name, Payload=json.dumps(event or {}), LogType="Tail")
    text, rep = parse_log_result(resp.get("LogResult"))
    return resp, json.loads(resp["Payload"].read()), text, rep


def test_cold_then_warm_then_forced_cold(client, tiny_zip, tmp_path):
    zpath = tmp_path / "code.zip"
    zpath.write_bytes(tiny_zip)
    mgr = FunctionManager(client, "sess-1")
    cfg = mgr.deploy_function(
        "coldwarm",
        zip_path=zpath,
        role_arn=ROLE,
        handler="tiny.echo",
        runtime="python3.11",
        memory_mb=256,
        timeout_s=10,
        architecture="x86_64",
        variables={"PERFDESK_COLD_NONCE": "a", "TINY_INIT_SLEEP": "0.2"},
    )
    assert cfg["State"] == "Active" and cfg["MemorySize"] == 256
    _, first, text, rep1 = invoke(client, "coldwarm", {"n": 1})
    _, second, _, rep2 = invoke(client, "coldwarm", {"n": 2})
    assert first["event"] == {"n": 1} and first["invocations"] == 1
    assert rep1.cold and rep1.init_ms >= 200  # the module-scope sleep is part of init
    assert "tiny handler invocation 1" in text
    assert second["instance"] == first["instance"] and second["invocations"] == 2
    assert not rep2.cold and rep2.init_ms is None
    assert rep2.memory_size_mb == 256 and rep2.max_memory_used_mb > 5 and rep2.billed_ms >= rep2.duration_ms

    mgr.set_variables("coldwarm", PERFDESK_COLD_NONCE="b")  # a configuration change retires the environment
    _, third, _, rep3 = invoke(client, "coldwarm")
    assert third["instance"] != first["instance"] and third["env_nonce"] == "b" and rep3.cold

    mgr.update("coldwarm", MemorySize=512)  # memory sweep step: a fresh environment at the new size
    _, fourth, _, rep4 = invoke(client, "coldwarm")
    assert fourth["memory_limit_mb"] == 512 and rep4.memory_size_mb == 512 and rep4.cold
    assert mgr.session_functions() == ["coldwarm"]
    assert mgr.teardown() == ["function coldwarm"]
    assert not mgr.exists("coldwarm")


def test_reserved_concurrency_throttles(client, tiny_zip, emulator):
    create_tiny(client, "narrow", tiny_zip)
    client.put_function_concurrency(FunctionName="narrow", ReservedConcurrentExecutions=1)
    assert client.get_function_concurrency(FunctionName="narrow")["ReservedConcurrentExecutions"] == 1

    def call(_):
        try:
            client.invoke(FunctionName="narrow", Payload=json.dumps({"sleep_s": 1.0}))
            return "ok"
        except client.exceptions.TooManyRequestsException as exc:
            assert exc.response["ResponseMetadata"]["HTTPStatusCode"] == 429
            return "throttled"

    with ThreadPoolExecutor(3) as pool:
        outcomes = list(pool.map(call, range(3)))
    assert outcomes.count("ok") >= 1 and outcomes.count("throttled") >= 1, outcomes
    client.delete_function(FunctionName="narrow")


def test_timeout_kills_the_environment(client, tiny_zip):
    create_tiny(client, "slow", tiny_zip, timeout=1)
    resp, body, text, rep = invoke(client, "slow", {"sleep_s": 5})
    assert resp["FunctionError"] == "Unhandled"
    assert body["errorType"] == "Sandbox.Timedout" and "Task timed out after 1.00 seconds" in body["errorMessage"]
    assert rep.status == "timeout" and "Task timed out after 1.00 seconds" in text
    _, after, _, rep2 = invoke(client, "slow")  # the timed-out environment is gone: a new one starts
    assert rep2.cold and after["invocations"] == 1
    client.delete_function(FunctionName="slow")


def test_memory_above_size_ends_the_environment(client, tiny_zip, emulator):
    create_tiny(client, "hog", tiny_zip, handler="tiny.hog", memory=128)
    resp, body, text, rep = invoke(client, "hog", {"mb": 300, "hold_s": 2})
    assert resp["FunctionError"] == "Unhandled"
    # as Lambda answers: the invoke's payload says the runtime was killed, the REPORT line says why
    assert body["errorType"] == "Runtime.ExitError"
    assert "Runtime exited with error: signal: killed" in body["errorMessage"]
    assert rep.status == "error" and rep.error_type == "Runtime.OutOfMemory" and rep.max_memory_used_mb == 128
    assert emulator.environments("hog") == []
    client.delete_function(FunctionName="hog")


def test_function_error_bad_payload_and_size_limit(client, tiny_zip):
    create_tiny(client, "failing", tiny_zip, handler="tiny.fail")
    resp, body, _, rep = invoke(client, "failing", {"why": "no images"})
    assert resp["FunctionError"] == "Unhandled" and body["errorType"] == "ValueError"
    assert "bad input: no images" in body["errorMessage"] and rep is not None
    with pytest.raises(client.exceptions.InvalidRequestContentException):
        client.invoke(FunctionName="failing", Payload=b"{not json")
    with pytest.raises(client.exceptions.ClientError) as big:  # AWS answers this code, not the model's
        client.invoke(FunctionName="failing", Payload=json.dumps({"x": "a" * (6 * 1024 * 1024)}))
    assert big.value.response["Error"]["Code"] == "RequestEntityTooLargeException"
    assert big.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413
    assert "Request must be smaller than 6291456 bytes for the InvokeFunction operation" in str(big.value)
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.invoke(FunctionName="no-such-function", Payload=b"{}")
    client.delete_function(FunctionName="failing")


def test_idle_environments_are_reclaimed(client, tiny_zip, emulator):
    create_tiny(client, "idler", tiny_zip)
    _, body, _, _ = invoke(client, "idler")
    (env,) = emulator.environments("idler")
    assert psutil.pid_exists(env.pid)
    emulator.idle_s = 0.5
    try:
        deadline = time.time() + 10
        while emulator.environments("idler") and time.time() < deadline:
            time.sleep(0.1)
        assert emulator.environments("idler") == []
        _, again, _, rep = invoke(client, "idler")
        assert rep.cold and again["instance"] != body["instance"] and not psutil.pid_exists(env.pid)
    finally:
        emulator.idle_s = 60
    client.delete_function(FunctionName="idler")


def test_cpu_share_follows_memory(client, tiny_zip, emulator):
    if not emulator.limiter.active:
        pytest.skip(f"no cpu cgroup here: {emulator.limiter.reason}")
    create_tiny(client, "cpu", tiny_zip, memory=1769)
    invoke(client, "cpu")
    (env,) = emulator.environments("cpu")
    group = emulator.limiter.base / env.env_id
    period = int((group / "cpu.cfs_period_us").read_text())
    assert int((group / "cpu.cfs_quota_us").read_text()) == period  # 1,769 MB = one vCPU
    assert str(env.pid) in (group / "cgroup.procs").read_text().split()
    client.delete_function(FunctionName="cpu")


def test_layers_tags_and_listing(client, tiny_zip):
    from perfdesk.lambda_pkg.builders import in_memory_zip

    layer = client.publish_layer_version(
        LayerName="helpers",
        Content={"ZipFile": in_memory_zip({"python/helper_mod.py": b"VALUE = 42\n"})},
        CompatibleRuntimes=["python3.11"],
    )
    assert layer["Version"] == 1 and layer["LayerVersionArn"].endswith(":layer:helpers:1")
    code = in_memory_zip({"uses_layer.py": b"import helper_mod\n\ndef handler(e, c):\n    return helper_mod.VALUE\n"})
    fn = client.create_function(
        FunctionName="layered",
        Runtime="python3.11",
        Role=ROLE,
        Handler="uses_layer.handler",
        Code={"ZipFile": code},
        Layers=[layer["LayerVersionArn"]],
        Tags={"a": "1"},
    )
    assert json.loads(client.invoke(FunctionName="layered")["Payload"].read()) == 42
    client.tag_resource(Resource=fn["FunctionArn"], Tags={"b": "2"})
    client.untag_resource(Resource=fn["FunctionArn"], TagKeys=["a"])
    assert client.list_tags(Resource=fn["FunctionArn"])["Tags"] == {"b": "2"}
    assert "layered" in [f["FunctionName"] for f in client.list_functions()["Functions"]]
    assert [v["Version"] for v in client.list_layer_versions(LayerName="helpers")["LayerVersions"]] == [1]
    client.delete_layer_version(LayerName="helpers", VersionNumber=1)
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.get_layer_version(LayerName="helpers", VersionNumber=1)
    client.delete_function(FunctionName="layered")


def test_init_error_is_reported(client):
    from perfdesk.lambda_pkg.builders import in_memory_zip

    create_tiny(
        client,
        "broken",
        in_memory_zip({"broken.py": b"raise RuntimeError('weights missing')\n"}),
        handler="broken.handler",
    )
    resp, body, _, _ = invoke(client, "broken")
    assert resp["FunctionError"] == "Unhandled" and "weights missing" in body["errorMessage"]
    client.delete_function(FunctionName="broken")


def test_no_orphans_after_shutdown(tmp_path, tiny_zip):
    """The CLI emulator, stopped by SIGTERM, leaves no environment process behind."""
    import signal
    import subprocess
    import sys

    from .conftest import free_port, lambda_client, wait_port

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "perfdesk.lambda_pkg.cli", "--port", str(port), "--quiet", "--no-cpu-limits"],
        cwd=Path(__file__).resolve().parents[2],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port, proc)
        c = lambda_client(f"http://127.0.0.1:{port}")
        create_tiny(c, "orphan", tiny_zip)
        with ThreadPoolExecutor(2) as pool:
            bodies = list(
                pool.map(
                    lambda _: json.loads(
                        c.invoke(FunctionName="orphan", Payload=json.dumps({"sleep_s": 0.5}))["Payload"].read()
                    ),
                    range(2),
                )
            )
        assert len({b["instance"] for b in bodies}) == 2
        pids = {p.pid for p in psutil.Process(proc.pid).children(recursive=True)}  # supervisors and runtimes
        assert len(pids) >= 4 and all(psutil.pid_exists(p) for p in pids)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    deadline = time.time() + 5
    while any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids):
        assert time.time() < deadline, f"environment processes left behind: {pids}"
        time.sleep(0.1)


def test_nothing_outlives_an_emulator_killed_hard(tmp_path):
    """SIGKILL to the emulator: its environments die (PR_SET_PDEATHSIG), and so does what a function started
    (the runtime is PID 1 of its own PID namespace, whose end ends everything in it)."""
    import signal
    import subprocess
    import sys

    from perfdesk.lambda_pkg.builders import in_memory_zip

    from .conftest import free_port, lambda_client, wait_port

    if os.geteuid() != 0:
        pytest.skip("PID namespaces need root")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "perfdesk.lambda_pkg.cli", "--port", str(port), "--quiet"],
        cwd=Path(__file__).resolve().parents[2],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    family: list[psutil.Process] = []
    try:
        wait_port(port, proc)
        c = lambda_client(f"http://127.0.0.1:{port}")
        code = b"import subprocess\nCHILD = subprocess.Popen(['sleep', '300'])\n\ndef handler(e, c):\n    return 1\n"
        c.create_function(
            FunctionName="spawner",
            Runtime="python3.12",
            Role=ROLE,
            Handler="app.handler",
            Code={"ZipFile": in_memory_zip({"app.py": code})},
        )
        assert json.loads(c.invoke(FunctionName="spawner", Payload=b"{}")["Payload"].read()) == 1
        family = psutil.Process(proc.pid).children(recursive=True)
        sleeper = [p for p in family if p.name() == "sleep"]
        assert len(sleeper) == 1 and any(p.cmdline()[-1].endswith("bootstrap.py") for p in family)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    deadline = time.time() + 10
    while any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in family):
        assert time.time() < deadline, f"left behind: {[p.cmdline() for p in family if p.is_running()]}"
        time.sleep(0.1)
