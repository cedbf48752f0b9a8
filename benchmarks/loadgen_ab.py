"""A/B in one run: the load generator's whole path (benchmarks/loadgen.py's closed and open loops, every request a
row of requests.csv) with the event-driven client of another revision against this checkout's, alternating run by
run against the same nginx. The other revision's ``perfdesk/controllers/httpclient.py`` is taken from git and
swapped in for its runs (it needs what it imports installed: aiohttp for revisions before 2026-12-07).

    apt-get install -y nginx-light
    .venv/bin/pip install aiohttp
    .venv/bin/python benchmarks/loadgen_ab.py --old 92ec8c5

Figures: medians of ``--repeats`` runs; the closed-loop ratio is per pair (new / old).
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

import loadgen as lg  # noqa: E402

import perfdesk.controllers.httpclient as hc  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--old", required=True, help="git revision whose httpclient.py is the baseline")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--levels", type=int, nargs="+", default=[16, 256, 2000])
    ap.add_argument("--rate", type=float, default=5000)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="perfdesk-ab-"))
    old_file = tmp / "old_httpclient.py"
    old_file.write_bytes(
        subprocess.run(
            ["git", "show", f"{args.old}:perfdesk/controllers/httpclient.py"], cwd=ROOT, check=True, capture_output=True
        ).stdout
    )
    spec = importlib.util.spec_from_file_location("old_httpclient", old_file)
    assert spec is not None and spec.loader is not None
    old = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(old)
    clients = {"old": old.AsyncHttpClient, "new": hc.AsyncHttpClient}
    port = lg.free_port()
    nginx = lg.start_nginx(tmp, port)
    try:
        print(f"closed loop req/s, median of {args.repeats} x {args.seconds:g} s ({args.old} against this checkout)")
        print(f"{'connections':>11} {'old req/s':>10} {'new req/s':>10} {'ratio':>6}")
        for c in args.levels:
            res: dict[str, list[float]] = {k: [] for k in clients}
            for _ in range(args.repeats):
                for k, cls in clients.items():
                    hc.AsyncHttpClient = cls  # the targets import it from the module when a level starts
                    res[k].append(lg.perfdesk_closed(port, c, args.seconds, tmp))
            ratio = statistics.median(b / a for a, b in zip(res["old"], res["new"], strict=True))
            print(
                f"{c:>11} {statistics.median(res['old']):>10.0f} {statistics.median(res['new']):>10.0f} {ratio:>6.2f}"
            )
        print(f"\nopen loop {args.rate:g} req/s, at most 256 in flight, median of {args.repeats}")
        print(f"{'client':>6} {'achieved':>9} {'late p50 ms':>12} {'late p99 ms':>12} {'late>1ms %':>11}")
        for k, cls in clients.items():
            hc.AsyncHttpClient = cls
            runs = [lg.perfdesk_open(port, args.rate, args.seconds, tmp, 256) for _ in range(args.repeats)]
            med = {m: statistics.median(r[m] for r in runs) for m in runs[0]}
            print(
                f"{k:>6} {med['achieved_rps']:>9.0f} {med['late_p50_ms']:>12.3f} {med['late_p99_ms']:>12.3f}"
                f" {med['late_over_1ms_pct']:>11.2f}"
            )
    finally:
        hc.AsyncHttpClient = clients["new"]
        nginx.terminate()
        nginx.wait(5)


if __name__ == "__main__":
    main()
