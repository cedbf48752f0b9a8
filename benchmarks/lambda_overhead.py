"""Emulator overhead per warm invocation (boto3 round trip minus the handler's Duration) and package sizes.

/work/main/.venv/bin/python benchmarks/lambda_overhead.py [--n 200] [--memory 1769]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from perfdesk.lambda_pkg import builders
from perfdesk.lambda_pkg.emulator import Emulator
from perfdesk.lambda_pkg.report import parse_log_result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--memory", type=int, default=1769)
    args = ap.parse_args()
    import boto3
    from botocore.config import Config

    code = builders.in_memory_zip({"noop.py": b"def handler(event, context):\n    return {'ok': True}\n"})
    with Emulator(idle_s=600) as emu:
        c = boto3.client(
            "lambda",
            endpoint_url=emu.url,
            region_name="us-east-1",
            aws_access_key_id="x",
            aws_secret_access_key="x",
            config=Config(retries={"total_max_attempts": 1}),
        )
        c.create_function(
            FunctionName="noop",
            Runtime="python3.11",
            Role="arn:aws:iam::123456789012:role/x",
            Handler="noop.handler",
            Code={"ZipFile": code},
            MemorySize=args.memory,
        )
        c.invoke(FunctionName="noop", Payload=b"{}")  # cold start, not measured
        overhead, rtt = [], []
        for _ in range(args.n):
            t0 = time.perf_counter()
            r = c.invoke(FunctionName="noop", Payload=b"{}", LogType="Tail")
            r["Payload"].read()
            ms = (time.perf_counter() - t0) * 1000
            rep = parse_log_result(r["LogResult"])[1]
            rtt.append(ms)
            overhead.append(ms - rep.duration_ms)
    q = statistics.quantiles(overhead, n=100)
    print(
        json.dumps(
            {
                "invocations": args.n,
                "memory_mb": args.memory,
                "cpu_limits": emu.limiter.active,
                "memory_limits": "cgroup" if emu.memory_limiter.active else "polled",
                "isolation": emu.isolation.mode,
                "round_trip_p50_ms": round(statistics.median(rtt), 2),
                "overhead_p50_ms": round(statistics.median(overhead), 2),
                "overhead_p90_ms": round(q[89], 2),
                "overhead_p99_ms": round(q[98], 2),
            }
        )
    )
    with tempfile.TemporaryDirectory() as d:
        z = builders.build_code_zip(Path(d) / "code.zip")
        unzipped = sum(i.file_size for i in zipfile.ZipFile(z).infolist())
        print(json.dumps({"code_zip_bytes": z.stat().st_size, "code_unzipped_bytes": unzipped}))


if __name__ == "__main__":
    main()
