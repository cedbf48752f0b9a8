"""The agent's overhead: throughput at saturation through the agent (HTTP, JSON, base64, gunicorn) against the
in-process ceiling of the same model and runtime, in the same run.

    .venv/bin/python benchmarks/agent_overhead.py [--model mobilenet_v2] [--runtime onnx] [--seconds 8]

In process: ``engine.predict`` called back to back from 1..N threads (the ceiling). Through the agent: perfdesk's
closed loop at the same concurrency levels against a local agent (one gunicorn worker, as many request threads as the
highest level). Same photo, same threads setting. Figures are medians over repeats; read the ratio.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from perfdesk.controllers.events import EventBus
from perfdesk.controllers.loadgen import run_closed_loop
from perfdesk.controllers.target import TargetContext
from perfdesk.controllers.workload import WorkloadSpec, build_payloads
from perfdesk.remote.local import LocalServerSpec, LocalServerTarget


def in_process(engine, image: bytes, concurrency: int, seconds: float) -> float:
    count = 0
    lock = threading.Lock()

    def send(seq, worker, intended):
        engine.predict([image])
        return {}

    def on_row(_):
        nonlocal count
        with lock:
            count += 1

    t0 = time.time()
    run_closed_loop(send, on_row, concurrency=concurrency, cancel=threading.Event(), duration_s=seconds)
    return count / (time.time() - t0)


def through_agent(target, payload, concurrency: int, seconds: float) -> float:
    ok = 0
    lock = threading.Lock()

    def send(seq, worker, intended):
        return {"status": target.send(payload).status}

    def on_row(row):
        nonlocal ok
        with lock:
            ok += row["status"] == "ok"

    t0 = time.time()
    run_closed_loop(send, on_row, concurrency=concurrency, cancel=threading.Event(), duration_s=seconds)
    return ok / (time.time() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="mobilenet_v2")
    ap.add_argument("--runtime", default="onnx")
    ap.add_argument("--threads", type=int, default=1, help="runtime intra-op threads, same on both sides")
    ap.add_argument("--levels", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    spec = WorkloadSpec(
        name="bench", model=args.model, runtime=args.runtime, threads=args.threads, images="bundled", image_count=1
    )
    payload = build_payloads(spec)[0]

    from perfdesk.shipped.inference import EngineConfig, load_engine

    engine = load_engine(EngineConfig.from_dict(spec.model_options()))
    engine.predict(payload.images)
    target = LocalServerTarget(
        LocalServerSpec(name="agent", kind="local-server", wsgi_threads=max(args.levels)),
        TargetContext(session_id="bench", emit=EventBus().emit),
    )
    target.deploy(spec)
    try:
        for _ in range(3):
            target.send(payload)
        print(
            f"{args.model} on {args.runtime}, {args.threads} runtime thread(s), {args.seconds:g} s per run, "
            f"median of {args.repeats}"
        )
        print(f"{'clients':>7} {'in-process img/s':>17} {'agent img/s':>12} {'agent/in-process':>17}")
        for level in args.levels:
            ours, ceiling = [], []
            for _ in range(args.repeats):  # interleaved, so load changes hit both alike
                ceiling.append(in_process(engine, payload.images[0], level, args.seconds))
                ours.append(through_agent(target, payload, level, args.seconds))
            c, a = statistics.median(ceiling), statistics.median(ours)
            print(f"{level:>7} {c:>17.1f} {a:>12.1f} {a / c:>17.2f}")
    finally:
        target.teardown()


if __name__ == "__main__":
    main()
