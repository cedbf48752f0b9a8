"""How fast can perfdesk's load generator drive a trivial endpoint, and how precise are its open-loop send times?

Serves a fixed JSON answer from nginx on 127.0.0.1 (a C server, so the client is the bottleneck), then in the same
run, interleaved, measures:
  1. closed loop: perfdesk's whole hot path through the trial machinery (an ``http`` target's event-driven client
     -> LevelRecorder row -> event bus -> session store: every request one row of requests.csv) at several
     concurrency levels, against `wrk` (Debian package) with the same number of connections; ``--threads`` adds the
     thread-pool fallback (the same target driven through its sync send) for comparison;
  2. open loop: at fixed rates, the achieved rate and the send-time error (actual - intended send time).

    apt-get install -y wrk nginx-light     # benchmark-only tools
    .venv/bin/python benchmarks/loadgen.py [--seconds 5] [--repeats 3]

Figures are medians of the repeats; compare as ratios (perfdesk / wrk) from one run on one box.
"""

from __future__ import annotations

import argparse
import csv
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from perfdesk.controllers.events import EventBus
from perfdesk.controllers.loadgen import Send, constant_schedule, run_closed_loop, run_open_loop
from perfdesk.controllers.session import SessionStore
from perfdesk.controllers.target import TargetContext, target_class
from perfdesk.controllers.trials import ConcurrencySpec, RateSpec, TrialRun
from perfdesk.controllers.workload import Payload
from perfdesk.remote.local import free_port

ANSWER = '{"predictions": [[{"label": "tabby", "index": 281, "prob": 0.9}]], "timings": {"inference_ms": 0.0}}'
BODY = b'{"images": ["AAAA"]}'


def start_nginx(tmp: Path, port: int) -> subprocess.Popen:
    conf = tmp / "nginx.conf"
    conf.write_text(f"""
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {tmp};
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            client_max_body_size 1m;
            default_type application/json;
            return 200 '{ANSWER}';
        }}
    }}
}}
""")
    proc = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(tmp)])
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return proc
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("nginx did not start")


class _Workload:
    name = "bench"


def _level(port: int, out: Path, spec, level):
    """An http target on nginx (wire body: the agent's answer format, parsed) and one level's recorder, its rows
    going through the event bus to a real session store (requests.csv)."""
    bus = EventBus()
    store = SessionStore(out, "bench")
    bus.subscribe(store.handle)
    cls = target_class("http")
    target = cls(
        cls.spec_model(name="nginx", kind="http", url=f"http://127.0.0.1:{port}/predict", pool_size=4096),
        TargetContext(session_id=store.session_id, emit=bus.emit),
    )
    target.deploy(_Workload())
    payload = Payload(["p"], [b""], BODY, 1)
    run = TrialRun(spec, target, _Workload(), [payload], store.session_id, bus.emit, threading.Event())
    return target, store, run.level(level)


def _csv_rows(store: SessionStore) -> int:
    with open(store.path / "requests.csv", newline="") as fh:
        return sum(1 for _ in csv.reader(fh)) - 1


def perfdesk_closed(port: int, concurrency: int, seconds: float, out: Path, threads: bool = False) -> float:
    target, store, rec = _level(port, out, ConcurrencySpec(kind="concurrency", name="closed"), concurrency)
    send = rec.sender(closed_loop=True)
    if threads:
        send = Send(send.fn)  # no event-driven twin: the thread-pool fallback
    t0 = time.time()
    run_closed_loop(send, lambda row: None, concurrency=concurrency, cancel=rec.stop, duration_s=seconds)
    elapsed = time.time() - t0
    rec.finish()
    store.close("completed")
    target.teardown()
    ok = sum(1 for r in rec.rows if r["status"] == "ok")
    assert _csv_rows(store) == len(rec.rows), "every request is one row of requests.csv"
    return ok / elapsed


def perfdesk_open(port: int, rate: float, seconds: float, out: Path, max_in_flight: int) -> dict:
    target, store, rec = _level(port, out, RateSpec(kind="rate", name="open"), rate)
    offsets = constant_schedule(rate, duration_s=seconds)
    run_open_loop(
        rec.sender(closed_loop=False), lambda row: None, offsets=offsets, cancel=rec.stop, max_in_flight=max_in_flight
    )
    rec.finish()
    store.close("completed")
    target.teardown()
    rows = rec.rows
    assert _csv_rows(store) == len(rows), "every request is one row of requests.csv"
    late = np.array([r["late_ms"] for r in rows])
    span = max(r["receive"] for r in rows) - min(r["intended_send"] for r in rows)
    ok = sum(1 for r in rows if r["status"] == "ok")
    return {
        "achieved_rps": ok / span,
        "late_p50_ms": float(np.percentile(late, 50)),
        "late_p99_ms": float(np.percentile(late, 99)),
        "late_over_1ms_pct": float(100.0 * (late > 1).mean()),
        "errors": len(rows) - ok,
    }


def wrk(port: int, connections: int, seconds: float) -> float:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "-s", "/dev/stdin", f"http://127.0.0.1:{port}/predict"],
        input='wrk.method = "POST"\nwrk.body = \'{"images": ["AAAA"]}\'\n'
        'wrk.headers["Content-Type"] = "application/json"\nwrk.headers["Authorization"] = "Bearer x"\n',
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--levels", type=int, nargs="+", default=[16, 64, 256, 2000])
    ap.add_argument("--rates", type=float, nargs="+", default=[1000, 2000, 5000])
    ap.add_argument("--max-in-flight", type=int, default=256, help="open loop: requests in flight at most")
    ap.add_argument("--threads", action="store_true", help="also the thread-pool fallback, closed loop")
    args = ap.parse_args()
    for tool in ("nginx", "wrk"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing: apt-get install -y wrk nginx-light")
    tmp = Path(tempfile.mkdtemp(prefix="perfdesk-bench-"))
    port = free_port()
    nginx = start_nginx(tmp, port)
    try:
        print(f"closed loop, {args.seconds:g} s per run, median of {args.repeats} (perfdesk and wrk interleaved)")
        head = f"{'connections':>11} {'perfdesk req/s':>15} {'wrk req/s':>10} {'ratio':>6}"
        print(head + (f" {'threads req/s':>14}" if args.threads else ""))
        for c in args.levels:
            ours, theirs, pool = [], [], []
            for _ in range(args.repeats):
                ours.append(perfdesk_closed(port, c, args.seconds, tmp))
                theirs.append(wrk(port, c, args.seconds))
                if args.threads and c <= 256:
                    pool.append(perfdesk_closed(port, c, args.seconds, tmp, threads=True))
            ratio = statistics.median(o / t for o, t in zip(ours, theirs, strict=True))
            line = f"{c:>11} {statistics.median(ours):>15.0f} {statistics.median(theirs):>10.0f} {ratio:>6.3f}"
            if args.threads:
                line += f" {statistics.median(pool):>14.0f}" if pool else f" {'-':>14}"
            print(line, flush=True)
        print(
            f"\nopen loop (constant arrivals, at most {args.max_in_flight} in flight), {args.seconds:g} s per run, "
            f"median of {args.repeats}"
        )
        print(f"{'target rps':>10} {'achieved':>9} {'late p50 ms':>12} {'late p99 ms':>12} {'late>1ms %':>11}")
        for rate in args.rates:
            runs = [perfdesk_open(port, rate, args.seconds, tmp, args.max_in_flight) for _ in range(args.repeats)]
            med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            print(
                f"{rate:>10.0f} {med['achieved_rps']:>9.0f} {med['late_p50_ms']:>12.3f} {med['late_p99_ms']:>12.3f}"
                f" {med['late_over_1ms_pct']:>11.1f}",
                flush=True,
            )
    finally:
        nginx.terminate()
        nginx.wait(5)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
