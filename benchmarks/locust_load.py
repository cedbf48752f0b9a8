"""How precisely do Locust workers (``[load] engine = "locust"``) send an open-loop schedule, and what rate reaches
requests.csv?

Serves a fixed JSON answer from nginx on 127.0.0.1 (as benchmarks/loadgen.py), starts a Locust master and N local
workers through perfdesk's engine, and at each rate sends a constant schedule; every request goes through the
engine's whole path (worker -> master -> this process, parsed, one row each, written and flushed to a CSV file).
Reports the achieved rate (rows over the schedule's span), the send-time error (actual - intended) and latency.

    apt-get install -y nginx-light     # benchmark-only tool
    .venv/bin/python benchmarks/locust_load.py [--workers 2] [--seconds 5] [--rates 250 500 1000 2000]

Workers share this machine's cores with nginx and the master: on a small box the figures say where the engine's
own overhead lies, not what many machines reach.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.loadgen import start_nginx
from perfdesk.controllers.distributed import LoadSection, LocustEngine
from perfdesk.controllers.events import RequestDone
from perfdesk.controllers.loadgen import constant_schedule
from perfdesk.controllers.results import REQUEST_COLUMNS, result_from_response
from perfdesk.controllers.session import _CsvFile
from perfdesk.controllers.target import HttpRequest, Target, TargetContext, TargetSpec
from perfdesk.controllers.trials import RateSpec, TrialRun
from perfdesk.controllers.workload import WorkloadSpec, build_payloads
from perfdesk.remote.local import free_port


class Nginx(Target):
    kind = "nginx"

    def __init__(self, url: str, emit):
        super().__init__(TargetSpec(name="nginx", kind="nginx", request_timeout_s=10), TargetContext("b", emit))
        self.url = url

    def deploy(self, workload):
        pass

    def send(self, payload, *, timeout=None):
        raise NotImplementedError

    def http_endpoint(self, payload):
        return HttpRequest(
            self.url,
            {"Content-Type": payload.content_type},
            payload.body,
            parse=lambda status, body, headers, t0, t1: result_from_response(status, body, t0, t1),
        )

    def teardown(self):
        pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rates", type=float, nargs="+", default=[250, 500, 1000, 2000])
    ap.add_argument("--max-in-flight", type=int, default=64)
    args = ap.parse_args()
    if not shutil.which("nginx"):
        sys.exit("nginx is missing: apt-get install -y nginx-light")
    tmp = Path(tempfile.mkdtemp(prefix="perfdesk-bench-"))
    port = free_port()
    nginx = start_nginx(tmp, port)
    csv = _CsvFile(tmp / "requests.csv", REQUEST_COLUMNS)
    rows: list[dict] = []
    lock = threading.Lock()

    def emit(event) -> None:
        if isinstance(event, RequestDone):
            csv.write(event.row)
            with lock:
                rows.append(event.row)

    target = Nginx(f"http://127.0.0.1:{port}/predict", emit)
    wl = WorkloadSpec(name="b", images="synthetic", synthetic_size=(64, 64), image_count=1)
    spec = RateSpec(kind="rate", name="rate", rates=args.rates, arrival="constant", duration_s=args.seconds)
    run = TrialRun(spec, target, wl, build_payloads(wl), "b", emit, threading.Event())
    engine = LocustEngine(LoadSection(engine="locust", workers=args.workers), run)
    try:
        engine.start()
        print(f"{args.workers} local Locust workers, constant arrivals, {args.seconds:g} s per rate")
        print(
            f"{'target rps':>10} {'achieved':>9} {'ok %':>6} {'late p50 ms':>12} {'late p99 ms':>12} "
            f"{'latency p50':>12} {'latency p99':>12}"
        )
        for rate in args.rates:
            rows.clear()
            rec = run.level(rate)
            engine.open_loop(rec, constant_schedule(rate, duration_s=args.seconds), max_in_flight=args.max_in_flight)
            late = np.array([r["late_ms"] for r in rows])
            lat = np.array([r["latency_ms"] for r in rows])
            ok = sum(r["status"] == "ok" for r in rows)
            span = max(r["receive"] for r in rows) - min(r["intended_send"] for r in rows)
            print(
                f"{rate:>10.0f} {len(rows) / span:>9.0f} {100.0 * ok / len(rows):>6.1f} "
                f"{np.percentile(late, 50):>12.3f} {np.percentile(late, 99):>12.3f} "
                f"{np.percentile(lat, 50):>12.3f} {np.percentile(lat, 99):>12.3f}"
            )
    finally:
        engine.close()
        csv.close()
        nginx.terminate()
        nginx.wait(5)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
