"""The ``http`` target and the event-driven client, against real local peers: a small aiohttp endpoint speaking
TF-Serving-like and KServe v2 JSON (tests/remote/http_peer.py), nginx on loopback where installed, and the perfdesk
agent; headless runs killed with SIGKILL and SIGTERM mid-trial keep every answered request."""

from __future__ import annotations

import base64
import csv
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import urllib3

from perfdesk.controllers.events import EventBus, RequestDone
from perfdesk.controllers.loadgen import constant_schedule, run_closed_loop, run_open_loop
from perfdesk.controllers.profile import ProfileError, load_profile
from perfdesk.controllers.session import SessionStore
from perfdesk.controllers.target import TargetContext, TargetError, target_class
from perfdesk.controllers.trials import ConcurrencySpec, RateSpec, TrialRun
from perfdesk.controllers.workload import Payload
from tests.conftest import PYTHON, agent_env
from tests.remote.conftest import free_port

PEER = Path(__file__).with_name("http_peer.py")
JPEG_A, JPEG_B = b"\xff\xd8fake-jpeg-a\xff\xd9", b"\xff\xd8fake-jpeg-bb\xff\xd9"
PAYLOADS = [
    Payload(["a"], [JPEG_A], json.dumps({"images": [base64.b64encode(JPEG_A).decode()]}).encode(), 1),
    Payload(["b"], [JPEG_B], json.dumps({"images": [base64.b64encode(JPEG_B).decode()]}).encode(), 1),
]


@pytest.fixture(scope="module")
def peer():
    proc = subprocess.Popen([PYTHON, str(PEER)], stdout=subprocess.PIPE, env=agent_env(), text=True)
    port = int(proc.stdout.readline())
    base = f"http://127.0.0.1:{port}"
    http = urllib3.PoolManager(retries=False, timeout=10)
    for _ in range(100):
        try:
            http.request("GET", base + "/")
            break
        except urllib3.exceptions.HTTPError:
            time.sleep(0.05)
    yield base
    proc.kill()  # not a graceful stop: it would wait for the answers still held
    proc.wait(10)


def _get(url: str) -> dict:
    return json.loads(urllib3.request("GET", url, retries=False, timeout=10).data)


class _Workload:
    name = "w"


def _target(tmp_path, **spec):
    events: list = []
    cls = target_class("http")
    target = cls(cls.spec_model(name="ep", kind="http", **spec), TargetContext(session_id="s", emit=events.append))
    return target, events


def _drive(target, tmp_path, *, mode="closed", level=4, requests=60, rate=200.0, stop=None, started=None):
    """One level through the trial machinery (recorder, event bus, session store); returns (rows, csv rows)."""
    bus = EventBus()
    store = SessionStore(tmp_path / "sessions", "t")
    bus.subscribe(store.handle)
    singles: list[dict] = []
    bus.subscribe(lambda e: singles.append(e.row) if isinstance(e, RequestDone) else None)
    spec = ConcurrencySpec(kind="concurrency", name="c") if mode == "closed" else RateSpec(kind="rate", name="r")
    run = TrialRun(spec, target, _Workload(), PAYLOADS, "s", bus.emit, threading.Event())
    rec = run.level(level)
    if stop is not None:
        rec.stop = stop
    if started is not None:
        started(rec)
    send = rec.sender(closed_loop=mode == "closed")
    if mode == "closed":
        run_closed_loop(send, lambda row: None, concurrency=level, cancel=rec.stop, count=requests)
    else:
        offsets = constant_schedule(rate, count=requests)
        run_open_loop(send, lambda row: None, offsets=offsets, cancel=rec.stop, max_in_flight=level)
    rec.finish()
    store.close("completed")
    with open(store.path / "requests.csv", newline="") as fh:
        written = list(csv.DictReader(fh))
    assert len(singles) == len(rec.rows)  # subscribers that take no batches get one RequestDone per row
    return rec.rows, written


def test_tf_serving_body_closed_loop_every_request_one_row(peer, tmp_path):
    target, events = _target(
        tmp_path, url=peer + "/v1/models/m:predict", body="tf-serving", server_time_header="X-Server-Ms"
    )
    target.deploy(_Workload())
    assert target.state == "ready" and target.supports_async
    rows, written = _drive(target, tmp_path, level=8, requests=120)
    assert len(rows) == len(written) == 120
    assert sorted(int(r["seq"]) for r in written) == list(range(120))
    assert {r["status"] for r in rows} == {"ok"}
    assert {r["worker"] for r in rows} <= set(range(8))
    # the peer's "model" puts the top score at len(image) % 3: both images were sent, decoded, and read back
    assert {r["top1"] for r in rows} == {str(len(JPEG_A) % 3), str(len(JPEG_B) % 3)}
    assert {r["server_total_ms"] for r in rows} == {1.25}
    target.teardown()
    assert target.state == "torn down"


def test_kserve_v2_body_open_loop_and_server_timing(peer, tmp_path):
    target, _ = _target(
        tmp_path,
        url=peer + "/v2/models/m/infer",
        body="kserve-v2",
        input_name="images",
        server_time_header="Server-Timing",
    )
    target.deploy(_Workload())
    rows, written = _drive(target, tmp_path, mode="open", level=16, requests=100, rate=500.0)
    assert len(written) == 100 and {r["status"] for r in rows} == {"ok"}
    assert {r["server_total_ms"] for r in rows} == {3.5}
    assert {r["top1"] for r in rows} == {str(len(JPEG_A) % 3), str(len(JPEG_B) % 3)}
    # open loop: latency counts from the intended send time, and intended times follow the schedule
    intended = np.array(sorted(r["intended_send"] for r in rows))
    assert np.allclose(np.diff(intended), 1 / 500.0, atol=1e-6)
    assert all(r["latency_ms"] >= r["service_ms"] - 1e-6 for r in rows)


def test_json_path_timing_and_sync_send(peer, tmp_path):
    target, _ = _target(
        tmp_path, url=peer + "/v2/models/m/infer", body="kserve-v2", server_time_json="timing.compute_ms"
    )
    target.deploy(_Workload())
    result = target.send(PAYLOADS[0])  # the thread-pool path (sequential trials, other callers)
    assert result.status == "ok" and result.server_total_ms == 2.5 and result.top1 == str(len(JPEG_A) % 3)


@pytest.mark.parametrize(
    "spec, body, ctype",
    [
        ({"body": "raw"}, JPEG_A, "image/jpeg"),
        ({"body": "wire"}, PAYLOADS[0].body, "application/json"),
        (
            {"body": "template", "template": '{"img": "{{image_b64}}", "all": {{images_b64}}, "n": {{batch_size}}}'},
            json.dumps({"img": base64.b64encode(JPEG_A).decode(), "all": [base64.b64encode(JPEG_A).decode()], "n": 1})
            .replace(", ", ", ")
            .encode(),
            "application/json",
        ),
        (
            {"body": "tf-serving", "signature_name": "serving_default"},
            json.dumps(
                {"instances": [{"b64": base64.b64encode(JPEG_A).decode()}], "signature_name": "serving_default"}
            ).encode(),
            "application/json",
        ),
    ],
)
def test_body_modes_send_what_they_say(peer, tmp_path, spec, body, ctype):
    target, _ = _target(tmp_path, url=peer + "/echo", **spec)
    target.deploy(_Workload())
    # the echo is no perfdesk answer: a wire-format target reads it as the error it is
    assert target.send(PAYLOADS[0]).status == ("error" if spec["body"] == "wire" else "ok")
    got = _get(peer + "/last")
    sent = got["body"].encode("latin-1")
    if spec["body"] == "template":
        assert json.loads(sent) == json.loads(body)
    else:
        assert sent == body
    assert got["headers"]["Content-Type"] == ctype


def test_raw_body_file_and_put(peer, tmp_path):
    body_file = tmp_path / "body.bin"
    body_file.write_bytes(b"\x00\x01fixed")
    target, _ = _target(
        tmp_path,
        url=peer + "/echo",
        body="raw",
        body_file=str(body_file),
        method="PUT",
        headers={"content-type": "application/octet-stream"},
    )
    target.deploy(_Workload())
    assert target.send(PAYLOADS[1]).status == "ok"
    got = _get(peer + "/last")
    assert got["method"] == "PUT" and got["body"].encode("latin-1") == b"\x00\x01fixed"
    assert got["headers"]["Content-Type"] == "application/octet-stream"


def test_secret_from_env_and_file_reach_the_endpoint_not_the_manifest(peer, tmp_path, monkeypatch):
    monkeypatch.setenv("PERFDESK_TEST_API_TOKEN", "s3cr3t-from-env")
    key_file = tmp_path / "key"
    key_file.write_text("k3y-from-file\n")
    target, _ = _target(
        tmp_path,
        url=peer + "/echo",
        body="raw",
        headers={
            "Authorization": "Bearer ${env:PERFDESK_TEST_API_TOKEN}",
            "X-Api-Key": f"${{file:{key_file}}}",
            "X-Client": "perfdesk-tests",
        },
    )
    target.deploy(_Workload())
    assert target.send(PAYLOADS[0]).status == "ok"
    headers = _get(peer + "/last")["headers"]
    assert headers["Authorization"] == "Bearer s3cr3t-from-env"
    assert headers["X-Api-Key"] == "k3y-from-file"
    assert headers["X-Client"] == "perfdesk-tests"
    described = json.dumps(target.describe())
    assert "s3cr3t" not in described and "k3y" not in described


def test_missing_secret_fails_deploy_naming_the_variable(peer, tmp_path, monkeypatch):
    monkeypatch.delenv("PERFDESK_TEST_NO_SUCH_VAR", raising=False)
    target, _ = _target(
        tmp_path, url=peer + "/echo", headers={"Authorization": "Bearer ${env:PERFDESK_TEST_NO_SUCH_VAR}"}
    )
    with pytest.raises(TargetError, match="PERFDESK_TEST_NO_SUCH_VAR is not set"):
        target.deploy(_Workload())
    assert target.state == "failed"


def _profile(tmp_path, target_toml: str) -> Path:
    path = tmp_path / "p.toml"
    path.write_text(f"""
[session]
name = "t"
output = "{tmp_path / "sessions"}"

[[targets]]
name = "ep"
kind = "http"
{target_toml}

[[workloads]]
name = "w"
model = "mobilenet_v2"
images = "synthetic"

[[trials]]
kind = "warm"
warmup = 0
count = 2
""")
    return path


@pytest.mark.parametrize(
    "toml, message",
    [
        ('url = "http://127.0.0.1:1/p"\nheaders = { Authorization = "Bearer abc123" }', "literal credential"),
        ('url = "http://127.0.0.1:1/p"\nheaders = { X-Api-Key = "abc123" }', "literal credential"),
        ('url = "http://127.0.0.1:1/p?api_key=abc123"', "looks like a secret"),
        ('url = "http://user:pw@127.0.0.1:1/p"', "credentials in the URL"),
        ('url = "ftp://127.0.0.1/p"', "not an http"),
        ('url = "http://127.0.0.1:1/p"\nbody = "template"', "exactly one of template"),
    ],
)
def test_profile_refuses_literal_secrets_and_bad_bodies(tmp_path, toml, message):
    with pytest.raises(ProfileError, match=message):
        load_profile(_profile(tmp_path, toml))


def test_profile_accepts_references(tmp_path):
    profile = load_profile(
        _profile(
            tmp_path,
            'url = "http://127.0.0.1:1/p?api_key=${env:K}"\nheaders = { Authorization = "Bearer ${env:TOKEN}" }',
        )
    )
    assert profile.targets[0].kind == "http"


def test_deploy_checks_the_endpoint_answers(peer, tmp_path):
    target, _ = _target(tmp_path, url=f"http://127.0.0.1:{free_port()}/nothing-listens")
    with pytest.raises(TargetError, match="no answer"):
        target.deploy(_Workload())
    target, _ = _target(tmp_path, url=peer + "/echo", health_url=peer + "/no-such-health")
    with pytest.raises(TargetError, match="answered HTTP 404"):
        target.deploy(_Workload())
    target, _ = _target(tmp_path, url=peer + "/echo", health_url=peer + "/healthz")
    target.deploy(_Workload())
    assert target.state == "ready"


def test_http_errors_and_timeouts_are_rows(peer, tmp_path):
    target, _ = _target(tmp_path, url=peer + "/fail", body="raw")
    target.deploy(_Workload())
    rows, _ = _drive(target, tmp_path, level=2, requests=6)
    assert {r["status"] for r in rows} == {"error"} and {r["http_status"] for r in rows} == {500}
    assert all("model exploded" in r["error"] for r in rows)
    # the sweeper ends requests past request_timeout_s: timeout rows, and the level ends soon after
    target, _ = _target(tmp_path, url=peer + "/slow?ms=3000&tag=timeout", body="raw", request_timeout_s=0.3)
    target.deploy(_Workload())
    t0 = time.time()
    rows, written = _drive(target, tmp_path, level=3, requests=3)
    assert time.time() - t0 < 2.5
    assert len(written) == 3 and {r["status"] for r in rows} == {"timeout"}


def test_stop_ends_the_level_and_keeps_rows(peer, tmp_path):
    target, _ = _target(tmp_path, url=peer + "/slow?ms=5&tag=stop", body="raw")
    target.deploy(_Workload())
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    rows, written = _drive(target, tmp_path, level=4, requests=1_000_000, stop=stop)
    assert 0 < len(rows) < 1_000_000 and len(written) == len(rows)
    assert _get(peer + "/stats?tag=stop")["served"] == len(rows)  # in-flight requests finished and were kept


def test_two_thousand_requests_in_flight(peer, tmp_path):
    target, _ = _target(tmp_path, url=peer + "/slow?ms=3000&tag=many", body="raw")
    target.deploy(_Workload())
    rows, written = _drive(target, tmp_path, level=2000, requests=2000)
    assert len(written) == 2000 and {r["status"] for r in rows} == {"ok"}
    assert _get(peer + "/stats?tag=many")["max_in_flight"] == 2000


@pytest.fixture(scope="module")
def nginx(tmp_path_factory):
    if not shutil.which("nginx"):
        pytest.skip("nginx is not installed (apt-get install nginx-light)")
    tmp = tmp_path_factory.mktemp("nginx")
    port = free_port()
    (tmp / "nginx.conf").write_text(f"""
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp};
    server {{
        listen 127.0.0.1:{port};
        location / {{ default_type application/json; add_header X-Upstream-Ms 0.5;
                     return 200 '{{"predictions": [[0.1, 0.2, 0.7]]}}'; }}
    }}
}}
""")
    proc = subprocess.Popen(["nginx", "-c", str(tmp / "nginx.conf"), "-p", str(tmp)])
    for _ in range(100):
        try:
            urllib3.request("GET", f"http://127.0.0.1:{port}/", retries=False, timeout=1)
            break
        except urllib3.exceptions.HTTPError:
            time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)


def test_nginx_closed_and_open_loop(nginx, tmp_path):
    target, _ = _target(
        tmp_path, url=nginx + "/v1/models/m:predict", body="tf-serving", server_time_header="X-Upstream-Ms"
    )
    target.deploy(_Workload())
    rows, written = _drive(target, tmp_path, level=16, requests=2000)
    assert len(written) == 2000 and {r["status"] for r in rows} == {"ok"} and {r["top1"] for r in rows} == {"2"}
    assert {r["server_total_ms"] for r in rows} == {0.5}
    rows, written = _drive(target, tmp_path, mode="open", level=64, requests=500, rate=1000.0)
    assert len(written) == 500 and {r["status"] for r in rows} == {"ok"}


# -- whole runs: the agent through an http target; a run killed mid-trial ----------------------------------------
TOKEN = "http-target-test-token-0123456789abcdef"


@pytest.fixture(scope="module")
def agent_url(tmp_path_factory):
    port = free_port()
    token_file = tmp_path_factory.mktemp("agent") / "token"
    token_file.write_text(TOKEN)
    proc = subprocess.Popen(
        [
            PYTHON,
            "-m",
            "perfdesk.shipped.agent",
            "--port",
            str(port),
            "--token-file",
            str(token_file),
            "--model",
            "mobilenet_v2",
            "--threads",
            "1",
            "--wsgi-threads",
            "2",
        ],
        env=agent_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    http = urllib3.PoolManager(retries=False, timeout=30)
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if (
                http.request(
                    "GET", f"http://127.0.0.1:{port}/healthz", headers={"Authorization": f"Bearer {TOKEN}"}
                ).status
                == 200
            ):
                break
        except urllib3.exceptions.HTTPError:
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail(proc.stdout.read().decode())
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)


def _headless_profile(tmp_path, url: str, trials: str, extra: str = "") -> Path:
    path = tmp_path / "run.toml"
    path.write_text(f"""
[session]
name = "h"
output = "{tmp_path / "sessions"}"

[[targets]]
name = "ep"
kind = "http"
url = "{url}"
{extra}

[[workloads]]
name = "w"
model = "mobilenet_v2"
images = "synthetic"
synthetic_size = [160, 120]
image_count = 2

{trials}
""")
    return path


def _rows(tmp_path) -> list[dict]:
    (session,) = (tmp_path / "sessions").iterdir()
    with open(session / "requests.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_headless_run_against_the_agent_reads_its_timings(agent_url, tmp_path):
    profile = _headless_profile(
        tmp_path,
        agent_url + "/predict",
        '[[trials]]\nkind = "warm"\nwarmup = 1\ncount = 3\n\n'
        '[[trials]]\nkind = "concurrency"\nlevels = [2]\nrequests = 8\n',
        'headers = { Authorization = "Bearer ${env:PERFDESK_TEST_AGENT_TOKEN}" }',
    )
    env = {**agent_env(), "PERFDESK_TEST_AGENT_TOKEN": TOKEN}
    proc = subprocess.run(
        [PYTHON, "-m", "perfdesk", "--headless", str(profile)], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = _rows(tmp_path)
    assert [r["trial"] for r in rows].count("warm") == 3 and [r["trial"] for r in rows].count("concurrency") == 8
    assert {r["status"] for r in rows} == {"ok"}
    assert all(float(r["server_inference_ms"]) > 0 and r["top1"] for r in rows)
    (session,) = (tmp_path / "sessions").iterdir()
    assert TOKEN not in (session / "manifest.json").read_text()


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_a_killed_run_keeps_every_answered_request(peer, tmp_path, sig):
    tag = f"kill{int(sig)}"
    concurrency = 4
    profile = _headless_profile(
        tmp_path,
        f"{peer}/slow?ms=3&tag={tag}",
        f'[[trials]]\nkind = "concurrency"\nlevels = [{concurrency}]\nduration_s = 60\n',
        'body = "raw"',
    )
    proc = subprocess.Popen(
        [PYTHON, "-m", "perfdesk", "--headless", str(profile)],
        env=agent_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            sessions = list((tmp_path / "sessions").glob("*/requests.csv"))
            if sessions and sessions[0].stat().st_size > 30_000:
                break
            time.sleep(0.05)
        else:
            pytest.fail("no rows within 60 s")
        os.kill(proc.pid, sig)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    time.sleep(0.3)
    served = _get(f"{peer}/stats?tag={tag}")["served"]
    rows = _rows(tmp_path)  # every line parses: no row was cut in half
    assert all(r["status"] == "ok" and r["receive"] for r in rows)
    assert len({r["seq"] for r in rows}) == len(rows)
    if sig == signal.SIGKILL:
        # only what was in flight when the process died (at most one per client) can be missing
        assert served - concurrency <= len(rows) <= served
    else:
        assert len(rows) == served  # SIGTERM: sends stop, requests in flight finish, every row is written


def test_the_level_watchdog_abandons_requests_in_flight(peer, tmp_path):
    target, _ = _target(tmp_path, url=peer + "/slow?ms=5000&tag=abandon", body="raw")
    target.deploy(_Workload())

    def trip_soon(rec):
        threading.Timer(0.5, rec.watch.trip, args=("failed", "target lost: test")).start()

    t0 = time.time()
    rows, written = _drive(target, tmp_path, level=6, requests=100, started=trip_soon)
    assert time.time() - t0 < 3.0  # not the 5 s the answers would take
    assert len(rows) == len(written) == 6
    assert {r["status"] for r in rows} == {"cancelled"} and {r["error"] for r in rows} == {
        "abandoned: target lost: test"
    }
