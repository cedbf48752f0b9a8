"""``[load] worker_hosts``: Locust workers started over SSH (the loopback sshd of conftest.py), reaching the master
through a reverse tunnel, next to a local worker; an ec2 worker host launched on the moto server and "reached" at
the same sshd (the address seam of the ec2 tests), then terminated. The requests go to a real HTTP server here."""

from __future__ import annotations

import importlib.util
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psutil
import pytest

from perfdesk.controllers.distributed import LoadSection, LocustEngine
from perfdesk.controllers.events import LoadClients, RequestDone
from perfdesk.controllers.loadgen import constant_schedule
from perfdesk.controllers.results import ERROR, OK, RequestResult
from perfdesk.controllers.target import HttpRequest, Target, TargetContext, TargetSpec
from perfdesk.controllers.trials import RateSpec, TrialRun, run_rate
from perfdesk.controllers.workload import WorkloadSpec, build_payloads
from tests.remote.test_remote_ec2 import PUBKEY, REGION, aws, left, lifecycle  # noqa: F401 - aws is a fixture

# looked up, never imported: importing Locust monkey-patches the whole interpreter (gevent)
if importlib.util.find_spec("locust") is None:
    pytest.skip("Locust is not installed (the locust extra)", allow_module_level=True)


class _Answer(BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def http_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/infer"
    server.shutdown()
    server.server_close()


def _parse(status: int, body: bytes, t0: float, t1: float) -> RequestResult:
    return RequestResult(actual_send=t0, receive=t1, status=OK if status == 200 else ERROR, http_status=status)


class _Endpoint(Target):
    """Any HTTP endpoint (what the load engine needs of a target: :meth:`Target.http_endpoint`)."""

    kind = "endpoint"

    def __init__(self, url: str, events: list):
        super().__init__(
            TargetSpec(name="api", kind="endpoint", request_timeout_s=10), TargetContext("s", events.append)
        )
        self.url = url

    def deploy(self, workload):
        pass

    def send(self, payload, *, timeout=None):
        raise AssertionError("the load engine sends, not this process")

    def http_endpoint(self, payload):
        return HttpRequest(self.url, {"Content-Type": payload.content_type}, payload.body, parse=_parse)

    def teardown(self):
        pass


def _run(url: str, requests: int = 20):
    events: list = []
    target = _Endpoint(url, events)
    wl = WorkloadSpec(name="w", images="synthetic", synthetic_size=(64, 64), image_count=2)
    spec = RateSpec(kind="rate", name="rate", rates=[20], arrival="constant", requests=requests)
    run = TrialRun(spec, target, wl, build_payloads(wl), "s", events.append, threading.Event())
    return run, events


def _workers_named(name: str) -> list[psutil.Process]:
    out = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if "locust_node.py" in cmd and f"--name {name}" in cmd:
            out.append(p)
    return out


def _none_left(name: str) -> bool:
    deadline = time.time() + 15
    while time.time() < deadline:
        if not [p for p in _workers_named(name) if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]:
            return True
        time.sleep(0.2)
    return False


def _ssh_spec(sshd, tmp_path, **kw):
    from perfdesk.remote.ssh_target import SshSpec

    return SshSpec(
        name="box",
        host=sshd.host,
        port=sshd.port,
        user=sshd.user,
        identity_file=sshd.identity_file,
        known_hosts=sshd.known_hosts,
        use_ssh_agent=False,
        ssh_config="",
        **kw,
    )


@pytest.mark.slow
def test_an_ssh_worker_host_and_a_local_worker_share_the_schedule(sshd, http_url, tmp_path):
    load = LoadSection(
        engine="locust", workers=1, worker_hosts=["box"], python=sys.executable, remote_dir=str(tmp_path / "host")
    )
    load.attach_targets([_ssh_spec(sshd, tmp_path)])
    run, events = _run(http_url)
    run.load = load
    run_rate(run)  # the rate trial as the experiment runs it
    rows = [e.row for e in events if isinstance(e, RequestDone)]
    assert len(rows) == 20 and {r["status"] for r in rows} == {OK}
    assert {r["client"] for r in rows} == {"local-1", "box"}
    assert sorted(r["seq"] for r in rows) == list(range(20))
    (facts,) = [e.facts for e in events if isinstance(e, LoadClients)]
    assert facts["clients"]["box"]["sent"] == 10 and facts["clients"]["box"]["rtt_ms"] >= 0
    assert (tmp_path / "host" / "locust_node.py").is_file()  # copied to the host
    assert _none_left("box"), "the worker on the SSH host ended with the trial"


@pytest.mark.slow
def test_an_ec2_worker_host_is_launched_used_and_terminated(aws, sshd, http_url, tmp_path):  # noqa: F811 - fixture
    from perfdesk.remote.ec2_target import Ec2Spec, Ec2Target
    from perfdesk.remote.load_workers import SshWorker

    ec2, _ssm, ami, endpoint = aws
    pub = tmp_path / "id.pub"
    pub.write_text(PUBKEY + "\n")
    spec = Ec2Spec(
        name="cloud-load",
        kind="ec2",
        region=REGION,
        instance_type="t3.micro",
        ami=ami,
        public_key=str(pub),
        identity_file=sshd.identity_file,
        user=sshd.user,
        use_ssh_agent=False,
        ssh_config="",
        endpoint_url=endpoint,
    )
    load = LoadSection(
        engine="locust", worker_hosts=["cloud-load"], python=sys.executable, remote_dir=str(tmp_path / "ec2host")
    )
    load.attach_targets([spec])
    run, events = _run(http_url, requests=10)
    ctx = TargetContext(session_id="locust-e2e", emit=lambda e: None, work_dir=str(tmp_path))

    def worker(host, load, spec, log, ctx=ctx):
        inst = Ec2Target(spec, ctx, lifecycle=lifecycle(aws, "locust-e2e"), address=lambda i: (sshd.host, sshd.port))
        return SshWorker(host, load, spec, log, ctx=ctx, ec2=inst)

    engine = LocustEngine(load, run, remote_worker=worker)
    try:
        engine.start()
        rec = run.level(20.0, expected=10)
        engine.open_loop(rec, constant_schedule(20, count=10), max_in_flight=4)
        rec.finish()
    finally:
        engine.close()
    rows = [e.row for e in events if isinstance(e, RequestDone)]
    assert len(rows) == 10 and {r["client"] for r in rows} == {"cloud-load"}
    assert {r["status"] for r in rows} == {OK}
    assert left(ec2, "locust-e2e") == {"instances": [], "addresses": [], "groups": [], "keys": []}
    assert _none_left("cloud-load")
