"""``[load] engine = "locust"``: a real Locust master and two local workers on loopback send a rate trial's schedule
to a real local agent; every request is one row with the client that sent it, the clock offsets are stated, and
nothing is left running (a normal end and Ctrl-C)."""

import importlib.util
import json
import signal
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import psutil
import pytest

from perfdesk.controllers.distributed import NODE_FILE, LoadSection, LocustEngine
from perfdesk.controllers.events import LoadClients, RequestDone
from perfdesk.controllers.loadgen import constant_schedule
from perfdesk.controllers.profile import ProfileError, load_profile
from perfdesk.controllers.results import ERROR, OK, RequestResult
from perfdesk.controllers.target import HttpRequest, Target, TargetContext, TargetError, TargetSpec
from perfdesk.controllers.trials import RateSpec, TrialRun
from perfdesk.controllers.workload import WorkloadSpec, build_payloads
from tests.conftest import PYTHON, agent_env

# looked up, never imported: importing Locust monkey-patches the whole interpreter (gevent)
if importlib.util.find_spec("locust") is None:
    pytest.skip("Locust is not installed (the locust extra)", allow_module_level=True)

LOAD = '[load]\nengine = "locust"\nworkers = 2\n'


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


def serve_http():
    """A real HTTP server here answering every POST with 200; yields its URL (the ``http_url`` fixture)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/infer"
    server.shutdown()
    server.server_close()


http_url = pytest.fixture(serve_http, name="http_url")


def _parse(status: int, body: bytes, headers, t0: float, t1: float) -> RequestResult:
    assert headers.get("content-length") == headers.get("Content-Length") == str(len(body))  # the answer's headers
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


def _session(tmp_path: Path) -> Path:
    (session,) = list((tmp_path / "sessions").iterdir())
    return session


def _nodes_of(pid: int) -> list[psutil.Process]:
    try:
        kids = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    out = []
    for p in kids:
        try:
            if "locust_node.py" in " ".join(p.cmdline()):
                out.append(p)
        except psutil.Error:  # ended (or a zombie) meanwhile
            continue
    return out


def _watch_nodes(proc: subprocess.Popen, seen: dict) -> threading.Thread:
    def watch() -> None:
        while proc.poll() is None:
            for p in _nodes_of(proc.pid):
                seen[p.pid] = p
            time.sleep(0.2)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    return t


def _gone(nodes) -> bool:
    deadline = time.time() + 15
    while time.time() < deadline:
        if not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in nodes):
            return True
        time.sleep(0.2)
    return False


def test_the_load_section_is_checked(tiny_profile):
    with pytest.raises(ProfileError, match="needs workers"):
        load_profile(tiny_profile('[load]\nengine = "locust"\n\n[[trials]]\nkind = "rate"\n'))
    with pytest.raises(ProfileError, match="for engine = 'locust'"):
        load_profile(tiny_profile('[load]\nworkers = 2\n\n[[trials]]\nkind = "rate"\n'))
    with pytest.raises(ProfileError, match="did you mean 'workers'"):
        load_profile(tiny_profile('[load]\nengine = "locust"\nworker = 2\n\n[[trials]]\nkind = "rate"\n'))
    box = '[[targets]]\nname = "box"\nkind = "ssh"\nhost = "load-1.example.org"\n'
    hosts = '[load]\nengine = "locust"\nworker_hosts = ["box", "gpu-box"]\n'
    p = load_profile(tiny_profile(hosts + '\n[[trials]]\nkind = "rate"\n', extra_target="\n" + box))
    assert p.load.engine == "locust"
    assert p.load.host_spec("box").host == "load-1.example.org"  # an ssh target's settings
    assert p.load.host_spec("gpu-box") is None  # an SSH host or alias as written
    assert [t.name for t in p.targets] == ["server"]  # a worker host is a load machine, not measured
    with pytest.raises(ProfileError, match="is a local-server target"):
        load_profile(
            tiny_profile('[load]\nengine = "locust"\nworker_hosts = ["server"]\n\n[[trials]]\nkind = "rate"\n')
        )
    with pytest.raises(ProfileError, match="is a worker host"):
        trial = '\n[[trials]]\nkind = "rate"\ntargets = ["box"]\n'
        load_profile(tiny_profile(hosts + trial, extra_target="\n" + box))
    assert load_profile(tiny_profile('[[trials]]\nkind = "rate"\n')).load.engine == "perfdesk"


class _NotHttp(Target):
    kind = "not-http"

    def deploy(self, workload):
        pass

    def send(self, payload, *, timeout=None):
        return RequestResult(actual_send=0.0, receive=0.0)

    def teardown(self):
        pass


def test_a_target_without_an_http_endpoint_is_refused_before_anything_starts():
    target = _NotHttp(TargetSpec(name="fn", kind="not-http"), TargetContext("s", lambda e: None))
    wl = WorkloadSpec(name="w", images="synthetic", image_count=1)
    from perfdesk.controllers.workload import build_payloads

    run = TrialRun(
        RateSpec(kind="rate", name="rate"), target, wl, build_payloads(wl), "s", lambda e: None, threading.Event()
    )
    engine = LocustEngine(LoadSection(engine="locust", workers=2), run)
    with pytest.raises(TargetError, match="Locust needs an HTTP target"):
        engine.start()
    assert engine.master is None and not engine.local


@pytest.mark.slow
def test_two_local_workers_send_a_rate_trial_to_a_local_server(tiny_profile, tmp_path):
    profile = tiny_profile(
        LOAD + '\n[[trials]]\nkind = "rate"\nrates = [15, 30]\narrival = "constant"\nrequests = 30\n'
    )
    proc = subprocess.Popen(
        [PYTHON, "-m", "perfdesk", "--headless", str(profile)],
        env=agent_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seen: dict = {}
    _watch_nodes(proc, seen)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-5000:]
    session = _session(tmp_path)
    req = pd.read_csv(session / "requests.csv")
    assert len(req) == 60 and (req.status == "ok").all() and set(req.client) == {"local-1", "local-2"}
    for _, level in req.groupby("level"):
        assert sorted(level.seq) == list(range(30))  # the whole schedule, each request once
        assert level.groupby("client").size().tolist() == [15, 15]  # shared round robin
    assert (req.latency_ms >= req.service_ms - 1e-6).all()  # from the intended send time
    assert req.server_inference_ms.notna().all()  # the agent's timings parsed from the answers
    trials = pd.read_csv(session / "trials.csv")
    assert (trials.status == "completed").all() and trials["count"].tolist() == [30, 30]
    assert trials.note.str.contains("clock offsets to the master: local-1").all()
    manifest = json.loads((session / "manifest.json").read_text())
    assert [e["level"] for e in manifest["load"]] == [15.0, 30.0]
    for entry in manifest["load"]:
        assert set(entry["clients"]) == {"local-1", "local-2"}
        for c in entry["clients"].values():
            assert c["offset_ms"] is not None and c["rtt_ms"] >= 0 and c["sent"] == 15
    assert len(seen) >= 3, "a master and two workers ran"
    assert _gone(seen.values()), "every locust node ended with the run"


@pytest.mark.slow
def test_ctrl_c_stops_the_workers_and_keeps_their_rows(peer_url, tmp_path):
    trial = '[[trials]]\nkind = "rate"\nrates = [10]\narrival = "constant"\nduration_s = 60\n'
    profile = _http_profile(tmp_path, peer_url, trial)
    proc = subprocess.Popen(
        [PYTHON, "-m", "perfdesk", "--headless", str(profile)],
        env=agent_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seen: dict = {}
    _watch_nodes(proc, seen)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            sessions = list((tmp_path / "sessions").glob("*/requests.csv"))
            if sessions and len(sessions[0].read_text().splitlines()) > 12:
                break
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out[-3000:]
    session = _session(tmp_path)
    req = pd.read_csv(session / "requests.csv")
    assert len(req) >= 11 and set(req.client) == {"local-1", "local-2"}
    assert len(req) < 600  # stopped long before the schedule's end
    trials = pd.read_csv(session / "trials.csv")
    assert trials.iloc[0]["status"] == "interrupted" and trials.iloc[0]["count"] == len(req)
    assert len(seen) >= 3
    assert _gone(seen.values()), "no locust node outlives Ctrl-C"


def test_the_node_file_imports_nothing_of_perfdesk():
    """It is copied to worker hosts and run as a file: the standard library and Locust's stack only."""
    import ast

    tree = ast.parse(NODE_FILE.read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert {m.split(".")[0] for m in names} <= {
        "__future__",
        "argparse",
        "base64",
        "json",
        "os",
        "sys",
        "time",
        "typing",
        "gevent",
        "locust",
        "urllib3",
    }


@pytest.mark.slow
def test_a_worker_lost_mid_level_fails_the_level_and_keeps_the_rows_that_came_back(http_url):
    run, events = _run(http_url, requests=60)
    engine = LocustEngine(LoadSection(engine="locust", workers=2), run)
    try:
        engine.start()
        rec = run.level(30.0, expected=60)
        killer = threading.Timer(0.8, lambda: engine.local[1].kill())
        killer.start()
        facts = engine.open_loop(rec, constant_schedule(30, count=60), max_in_flight=4)
        summary = rec.finish("failed" if facts["lost"] else None)
    finally:
        engine.close()
    assert facts["lost"] == ["local-2"]
    assert summary["status"] == "failed" and "lost before the level ended: local-2" in summary["note"]
    rows = [e.row for e in events if isinstance(e, RequestDone)]
    assert {r["status"] for r in rows} == {OK}
    by = {c: sum(r["client"] == c for r in rows) for c in ("local-1", "local-2")}
    assert by["local-1"] == 30 and 0 < by["local-2"] < 30  # its rows up to the kill are kept
    (loaded,) = [e for e in events if isinstance(e, LoadClients)]
    assert loaded.facts["lost"] == ["local-2"]


@pytest.fixture
def peer_url():
    """The TF-Serving-like peer of tests/remote/http_peer.py (a real aiohttp endpoint here)."""
    from tests.remote.test_http_target import PEER

    peer = subprocess.Popen([PYTHON, str(PEER)], stdout=subprocess.PIPE, env=agent_env(), text=True)
    assert peer.stdout is not None
    yield f"http://127.0.0.1:{int(peer.stdout.readline())}/v1/models/m:predict"
    peer.terminate()
    peer.wait(10)


def _http_profile(tmp_path: Path, url: str, trials: str) -> Path:
    profile = tmp_path / "http.toml"
    profile.write_text(f"""
[session]
name = "h"
output = "{tmp_path / "sessions"}"

[[targets]]
name = "ep"
kind = "http"
url = "{url}"
body = "tf-serving"
server_time_header = "X-Server-Ms"

[[workloads]]
name = "w"
images = "synthetic"
synthetic_size = [64, 48]
image_count = 2

{LOAD}
{trials}
""")
    return profile


@pytest.mark.slow
def test_an_http_target_with_two_local_workers(peer_url, tmp_path):
    """The issue's case: an ``http`` target and two local Locust workers; every request one row from one of them,
    the server time read from the answer's header by the target."""
    trials = '[[trials]]\nkind = "rate"\nrates = [40]\narrival = "constant"\nrequests = 40\n\n'
    trials += '[[trials]]\nkind = "concurrency"\nlevels = [3]\nrequests = 12\n'
    proc = subprocess.run(
        [PYTHON, "-m", "perfdesk", "--headless", str(_http_profile(tmp_path, peer_url, trials))],
        env=agent_env(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    req = pd.read_csv(_session(tmp_path) / "requests.csv")
    assert len(req) == 52 and (req.status == "ok").all()
    for _, trial in req.groupby("trial"):
        assert set(trial.client) == {"local-1", "local-2"}
    closed = req[req.trial == "concurrency"]
    assert sorted(closed.seq) == list(range(12))  # 3 clients: 2 on one worker, 1 on the other, 12 requests in all
    assert closed.groupby("client").size().sort_values().tolist() == [4, 8]
    assert (closed.latency_ms == closed.service_ms).all()  # closed loop: from the actual send
    assert (req.server_total_ms == 1.25).all()  # the X-Server-Ms header, parsed here by the target
    assert req.top1.notna().all()
