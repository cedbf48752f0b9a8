"""The ssh target end to end against a real sshd on loopback: provision, agent, trials, failures, teardown."""

from __future__ import annotations

import csv
import os
import signal
import sys
from pathlib import Path

import pytest

from perfdesk.controllers.results import ERROR, OK
from perfdesk.controllers.workload import WorkloadSpec

pytestmark = pytest.mark.slow

WORKLOAD = WorkloadSpec(
    name="mnv2",
    model="mobilenet_v2",
    runtime="torch",
    weights="random",
    images="synthetic",
    synthetic_size=(160, 120),
    image_count=2,
    threads=1,
)


def ssh_spec(sshd, remote_dir: Path, **kw):
    from perfdesk.remote.ssh_target import SshSpec

    opts = dict(
        name="box",
        kind="ssh",
        host=sshd.host,
        port=sshd.port,
        user=sshd.user,
        identity_file=sshd.identity_file,
        known_hosts=sshd.known_hosts,
        use_ssh_agent=False,
        ssh_config="",
        venv=sys.executable,
        remote_dir=str(remote_dir),
        keep_cache=False,
        startup_timeout_s=120,
        request_timeout_s=30,
    )
    opts.update(kw)
    return SshSpec(**opts)


def agent_processes(marker: str) -> list[int]:
    """Processes on this machine (the "host") whose command line names ``marker``."""
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if marker in cmd and "perfdesk.shipped.agent" in cmd:
                found.append(int(pid))
    return found


def test_profile_with_an_ssh_target_runs_end_to_end_headless(sshd, tmp_path):
    """Provisioned over SSH, trials run, the link dropped (reconnects), the agent killed mid-trial (errors recorded,
    rows kept), session CSVs written, agent stopped, nothing left running, only the cache kept."""
    from perfdesk.controllers.events import EventBus, RequestDone
    from perfdesk.controllers.experiment import Experiment
    from perfdesk.controllers.profile import load_profile

    remote_dir = tmp_path / "host"
    profile = tmp_path / "ssh.toml"
    profile.write_text(f"""
[session]
name = "ssh-e2e"
output = "{tmp_path / "sessions"}"
metrics_interval_s = 0.2  # the trials last seconds: sample often enough to catch them

[[targets]]
name = "box"
kind = "ssh"
host = "{sshd.host}"
port = {sshd.port}
user = "{sshd.user}"
identity_file = "{sshd.identity_file}"
known_hosts = "{sshd.known_hosts}"
use_ssh_agent = false
ssh_config = ""
venv = "{sys.executable}"
remote_dir = "{remote_dir}"
keep_cache = true
request_timeout_s = 20

[[workloads]]
name = "mnv2"
model = "mobilenet_v2"
weights = "random"
images = "synthetic"
synthetic_size = [160, 120]
image_count = 2
threads = 1

[[trials]]
kind = "warm"
warmup = 1
count = 6
max_error_pct = 20  # the request in flight when the link drops may fail: one of six

[[trials]]
kind = "concurrency"
levels = [2]
requests = 12
""")
    bus = EventBus()
    exp = Experiment(load_profile(profile), bus=bus)
    target = exp.targets["box"]
    seen: dict[str, int] = {}
    checks: dict[str, object] = {}

    def chaos(event) -> None:
        if not isinstance(event, RequestDone):
            return
        kind = event.row["trial_kind"]
        seen[kind] = seen.get(kind, 0) + 1
        if kind == "warm" and seen[kind] == 2:
            token = (remote_dir / "run" / "token").read_text().strip()
            checks["token_mode"] = oct((remote_dir / "run" / "token").stat().st_mode & 0o777)
            checks["token_visible"] = any(
                token in Path(f"/proc/{pid}/cmdline").read_text()
                or token in Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
                for pid in agent_processes(str(remote_dir))
            )
            target.transport.drop_connection_for_test()  # the SSH link drops under the port forward
        if kind == "concurrency" and seen[kind] == 4:
            os.killpg(int((remote_dir / "run" / "launcher.pid").read_text()), signal.SIGKILL)  # the agent dies

    bus.subscribe(chaos)
    outcome = exp.run()

    assert checks == {"token_mode": "0o600", "token_visible": False}
    rows = list(csv.DictReader(open(outcome.session_path / "requests.csv")))
    warm = [r for r in rows if r["trial_kind"] == "warm"]
    conc = [r for r in rows if r["trial_kind"] == "concurrency"]
    assert len(warm) == 6 and sum(r["status"] == OK for r in warm) >= 5  # at most the request on the dropped link
    assert target.transport is None or target.transport.reconnects >= 1
    trials = {r["trial_kind"]: r for r in csv.DictReader(open(outcome.session_path / "trials.csv"))}
    # the error budget (10 % of 12) is spent at the second failure: the level ends there, the rest is not sent
    assert len(conc) + int(trials["concurrency"]["not_sent"]) == 12, "every request sent is a row"
    assert sum(r["status"] == OK for r in conc) >= 4
    failed = [r for r in conc if r["status"] == ERROR]
    assert failed and all(r["error"] for r in failed)
    assert trials["warm"]["status"] == "completed" and trials["concurrency"]["status"] == "failed"
    assert trials["concurrency"]["note"].startswith(("error budget spent: 2 of 12", "target lost"))
    assert list(csv.DictReader(open(outcome.session_path / "metrics.csv"))), "agent /metrics sampled"
    log = (outcome.session_path / "log.txt").read_text()
    assert "reconnecting" in log and "Booting worker" in log  # ssh notes and the agent's own log, streamed
    assert agent_processes(str(remote_dir)) == []  # nothing left running
    assert not (remote_dir / "run").exists() and (remote_dir / "stamp.json").exists()  # only the cache is kept
