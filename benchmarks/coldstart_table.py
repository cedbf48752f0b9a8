"""Median cold-start figures per workload x target from a session's requests.csv (for benchmarks/README.md)."""

import sys

import pandas as pd

req = pd.read_csv(f"{sys.argv[1]}/requests.csv")
ok = req[req.status == "ok"]
cold = (
    ok[ok.trial == "cold"]
    .groupby(["workload", "target"])
    .agg(
        n=("init_ms", "size"),
        init_ms=("init_ms", "median"),
        first_request_ms=("latency_ms", "median"),
        max_memory_mb=("max_memory_used_mb", "max"),
    )
)
warm = (
    ok[ok.trial == "warm"]
    .groupby(["workload", "target"])
    .agg(warm_p50_ms=("latency_ms", "median"), billed_ms=("billed_ms", "median"))
)
print(cold.join(warm).round(1).to_string())
