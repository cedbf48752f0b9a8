"""How fast can perfdesk's load generator drive a trivial endpoint, and how precise are its open-loop send times?

Serves a fixed JSON answer from nginx on 127.0.0.1 (a C server, so the client is the bottleneck), then in the same
run measures:
  1. closed loop: perfdesk's hot path (AgentClient.predict -> request_row -> CSV row written and flushed) at several
     concurrency levels, against `wrk` (Debian package) with the same number of connections;
  2. open loop: at fixed rates, the achieved rate and the send-time error (actual - intended send time).

    apt-get install -y wrk nginx-light     # benchmark-only tools
    .venv/bin/python benchmarks/loadgen.py [--seconds 5] [--repeats 3]

Figures are medians of the repeats; compare as ratios (perfdesk / wrk) from one run on one box.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from perfdesk.controllers.loadgen import constant_schedule, run_closed_loop, run_open_loop
from perfdesk.controllers.results import REQUEST_COLUMNS, request_row
from perfdesk.controllers.session import _CsvFile
from perfdesk.controllers.workload import Payload
from perfdesk.remote.agent_target import AgentClient, AgentEndpoint
from perfdesk.remote.local import free_port

ANSWER = '{"predictions": [[{"label": "tabby", "index": 281, "prob": 0.9}]], "timings": {"inference_ms": 0.0}}'


def start_nginx(tmp: Path, port: int) -> subprocess.Popen:
    conf = tmp / "nginx.conf"
    conf.write_text(f"""
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp};
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port};
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
            import socket

            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return proc
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("nginx did not start")


def perfdesk_closed(port: int, concurrency: int, seconds: float, out: Path) -> float:
    client = AgentClient(AgentEndpoint("127.0.0.1", port, "x" * 32, time.time()), pool_size=concurrency)
    payload = Payload(["p"], [b""], b'{"images": ["AAAA"]}', 1)
    sink = _CsvFile(out / f"closed-{concurrency}.csv", REQUEST_COLUMNS)
    count = 0
    lock = threading.Lock()

    def send(seq, worker, intended):
        r = client.predict(payload)
        return request_row(r, intended_send=intended, session="b", trial="b", target="nginx", level=concurrency)

    def on_row(row):
        nonlocal count
        sink.write(row)
        with lock:
            count += 1

    t0 = time.time()
    run_closed_loop(send, on_row, concurrency=concurrency, cancel=threading.Event(), duration_s=seconds)
    elapsed = time.time() - t0
    sink.close()
    client.close()
    return count / elapsed


def perfdesk_open(port: int, rate: float, seconds: float, out: Path) -> dict:
    client = AgentClient(AgentEndpoint("127.0.0.1", port, "x" * 32, time.time()), pool_size=64)
    payload = Payload(["p"], [b""], b'{"images": ["AAAA"]}', 1)
    sink = _CsvFile(out / f"open-{rate}.csv", REQUEST_COLUMNS)
    rows = []

    def send(seq, worker, intended):
        r = client.predict(payload)
        return request_row(r, intended_send=intended, session="b", trial="b", target="nginx", level=rate)

    def on_row(row):
        sink.write(row)
        rows.append(row)

    offsets = constant_schedule(rate, duration_s=seconds)
    run_open_loop(send, on_row, offsets=offsets, cancel=threading.Event(), max_in_flight=64)
    sink.close()
    client.close()
    late = np.array([r["late_ms"] for r in rows])
    span = max(r["receive"] for r in rows) - min(r["intended_send"] for r in rows)
    ok = sum(1 for r in rows if r["status"] == "ok")
    return {
        "achieved_rps": ok / span,
        "late_p50_ms": float(np.percentile(late, 50)),
        "late_p99_ms": float(np.percentile(late, 99)),
        "late_over_5ms_pct": float(100.0 * (late > 5).mean()),
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
    ap.add_argument("--levels", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--rates", type=float, nargs="+", default=[100, 500, 1000, 2000])
    args = ap.parse_args()
    for tool in ("nginx", "wrk"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing: apt-get install -y wrk nginx-light")
    tmp = Path(tempfile.mkdtemp(prefix="perfdesk-bench-"))
    port = free_port()
    nginx = start_nginx(tmp, port)
    try:
        print(f"closed loop, {args.seconds:g} s per run, median of {args.repeats}")
        print(f"{'connections':>11} {'perfdesk req/s':>15} {'wrk req/s':>10} {'ratio':>6}")
        for c in args.levels:
            ours = statistics.median(perfdesk_closed(port, c, args.seconds, tmp) for _ in range(args.repeats))
            theirs = statistics.median(wrk(port, c, args.seconds) for _ in range(args.repeats))
            print(f"{c:>11} {ours:>15.0f} {theirs:>10.0f} {ours / theirs:>6.3f}")
        print(f"\nopen loop (constant arrivals), {args.seconds:g} s per run, median of {args.repeats}")
        print(f"{'target rps':>10} {'achieved':>9} {'late p50 ms':>12} {'late p99 ms':>12} {'late>5ms %':>11}")
        for rate in args.rates:
            runs = [perfdesk_open(port, rate, args.seconds, tmp) for _ in range(args.repeats)]
            med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            print(
                f"{rate:>10.0f} {med['achieved_rps']:>9.0f} {med['late_p50_ms']:>12.3f} {med['late_p99_ms']:>12.3f}"
                f" {med['late_over_5ms_pct']:>11.1f}"
            )
    finally:
        nginx.terminate()
        nginx.wait(5)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
