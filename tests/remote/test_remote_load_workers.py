"""``[load] worker_hosts``: Locust workers started over SSH (the loopback sshd of conftest.py), reaching the master
through a reverse tunnel, next to a local worker; an ec2 worker host launched on the moto server and "reached" at
the same sshd (the address seam of the ec2 tests), then terminated. The requests go to a real HTTP server here."""

from __future__ import annotations

import importlib.util
import sys
import time

import psutil
import pytest

from perfdesk.controllers.distributed import LoadSection, LocustEngine
from perfdesk.controllers.events import LoadClients, RequestDone
from perfdesk.controllers.loadgen import constant_schedule
from perfdesk.controllers.results import OK
from perfdesk.controllers.target import TargetContext
from perfdesk.controllers.trials import run_rate
from tests.core.test_locust import _run, serve_http
from tests.remote.test_remote_ec2 import PUBKEY, REGION, aws, left, lifecycle  # noqa: F401 - aws is a fixture

# looked up, never imported: importing Locust monkey-patches the whole interpreter (gevent)
if importlib.util.find_spec("locust") is None:
    pytest.skip("Locust is not installed (the locust extra)", allow_module_level=True)

http_url = pytest.fixture(serve_http, name="http_url")


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
    try:
        run_rate(run)  # the rate trial as the experiment runs it
        assert load.engine_for(run) is load.engine_for(run)  # kept for the session's next trials
    finally:
        load.close()  # as the experiment's close does
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
