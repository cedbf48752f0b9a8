"""Write synthetic session folders with the core's columns (results.py), for the verdict's tests.

The traffic is simulated the way the load generator produces it: closed-loop workers that each send the next
request when the previous one returns, so throughput follows latency as it does in a real run. Latencies are
lognormal around a per-target median, and a server saturates at ``cores`` concurrent requests.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from perfdesk.controllers.results import REQUEST_COLUMNS, TRIAL_COLUMNS

T0 = 1_700_000_000.0


@dataclass
class SynthTarget:
    name: str
    kind: str  # local-server | lambda | ...
    median_ms: float
    cores: int = 2  # servers: concurrency at which latency starts growing
    memory_mb: int = 1024  # functions
    overhead_ms: float = 15.0  # functions: client latency - billed duration
    init_ms: float = 800.0  # functions: INIT of a cold start
    cold_ms: float = 3000.0  # servers: process start + model load + first inference
    describe: dict[str, Any] = field(default_factory=dict)


def default_targets() -> list[SynthTarget]:
    return [
        SynthTarget("srv", "local-server", median_ms=20.0, cores=2),
        SynthTarget(
            "fn",
            "lambda",
            median_ms=100.0,
            memory_mb=1024,
            describe={"memory_mb": 1024, "architecture": "x86_64", "region": "us-east-1"},
        ),
    ]


def _row(
    session: str,
    target: SynthTarget,
    trial: str,
    kind: str,
    level: Any,
    seq: int,
    worker: int,
    send: float,
    latency_ms: float,
    cold: bool = False,
) -> dict[str, Any]:
    row = {c: "" for c in REQUEST_COLUMNS}
    receive = send + latency_ms / 1000.0
    row.update(
        session=session,
        workload="resnet50",
        trial=trial,
        trial_kind=kind,
        target=target.name,
        target_kind=target.kind,
        level=level,
        seq=seq,
        worker=worker,
        intended_send=send,
        actual_send=send,
        receive=receive,
        latency_ms=latency_ms,
        service_ms=latency_ms,
        late_ms=0.0,
        cold=cold,
        status="ok",
        http_status=200,
        payload_bytes=20000,
        response_bytes=300,
        batch_size=1,
        top1="tabby",
    )
    if target.kind in ("lambda", "local-lambda"):
        memory = level if kind == "memory" else target.memory_mb
        duration = max(1.0, latency_ms - target.overhead_ms)
        row.update(
            duration_ms=round(duration, 2), billed_ms=math.ceil(duration), memory_size_mb=memory, max_memory_used_mb=400
        )
        if cold:
            row["init_ms"] = target.init_ms
    else:
        row["server_total_ms"] = latency_ms * 0.9
    return row


def _closed_loop(rng, session, target, trial, kind, level, workers, start, duration_s, median_ms, sigma, slow):
    rows = []
    seq = 0
    for worker in range(workers):
        t = start
        while t < start + duration_s:
            latency = median_ms * slow * float(rng.lognormal(0.0, sigma))
            rows.append(_row(session, target, trial, kind, level, seq, worker, t, latency))
            seq += 1
            t += latency / 1000.0
    return rows


def _summary(rows: list[dict[str, Any]], duration_s: float) -> dict[str, Any]:
    lat = np.array([r["latency_ms"] for r in rows])
    first = rows[0]
    out = {c: "" for c in TRIAL_COLUMNS}
    started = min(r["intended_send"] for r in rows)
    out.update({k: first[k] for k in ("session", "workload", "trial", "trial_kind", "target", "target_kind", "level")})
    out.update(
        status="completed",
        loop="closed",
        count=len(rows),
        ok=len(rows),
        errors=0,
        throttled=0,
        timeouts=0,
        cancelled=0,
        late_sends=0,
        cold_starts=sum(bool(r["cold"]) for r in rows),
        started=started,
        finished=started + duration_s,
        duration_s=duration_s,
        throughput_rps=len(rows) / duration_s,
        images_per_s=len(rows) / duration_s,
        p50_ms=np.quantile(lat, 0.5),
        p90_ms=np.quantile(lat, 0.9),
        p95_ms=np.quantile(lat, 0.95),
        p99_ms=np.quantile(lat, 0.99),
        p999_ms=np.quantile(lat, 0.999),
        max_ms=lat.max(),
        mean_ms=lat.mean(),
        mean_ci_low_ms=lat.mean(),
        mean_ci_high_ms=lat.mean(),
    )
    return out


def write_session(
    path: Path,
    *,
    seed: int = 0,
    targets: list[SynthTarget] | None = None,
    slow: dict[str, float] | None = None,
    levels=(1, 2, 4),
    duration_s: float = 4.0,
    warm_n: int = 150,
    cold_n: int = 5,
    memory_levels=(512, 1024, 2048),
    memory_n: int = 40,
    prices: dict[str, Any] | None = None,
    thresholds: dict[str, Any] | None = None,
    sigma: float = 0.25,
    cold_sweep: bool = True,
) -> Path:
    """Write a session folder (requests.csv, trials.csv, metrics.csv, manifest.json) and return its path.

    ``slow``: target name -> factor every latency of that target is multiplied by (a planted regression).
    Trials: cold (``cold_n`` fresh starts), warm (``warm_n`` sequential), concurrency (``levels``, closed loop for
    ``duration_s`` each), memory (functions only, ``memory_levels``).
    """
    targets = targets or default_targets()
    slow = slow or {}
    rng = np.random.default_rng(seed)
    path.mkdir(parents=True, exist_ok=True)
    sid = path.name
    requests: list[dict[str, Any]] = []
    trials: list[dict[str, Any]] = []
    t = T0
    for target in targets:
        factor = slow.get(target.name, 1.0)
        fn = target.kind in ("lambda", "local-lambda")
        # cold: each a fresh start
        cold_rows = []
        for i in range(cold_n):
            extra = target.init_ms + 600.0 if fn else target.cold_ms
            latency = (target.median_ms + extra) * factor * float(rng.lognormal(0.0, 0.1))
            cold_rows.append(_row(sid, target, "cold", "cold", "", i, 0, t, latency, cold=True))
            t += latency / 1000.0 + 1.0
        if cold_rows:
            trials.append(_summary(cold_rows, cold_n * 2.0))
        requests += cold_rows
        # warm: sequential
        warm_rows: list[dict[str, Any]] = []
        clock = t
        for i in range(warm_n):
            latency = target.median_ms * factor * float(rng.lognormal(0.0, sigma))
            warm_rows.append(_row(sid, target, "warm", "warm", "", i, 0, clock, latency))
            clock += latency / 1000.0
        trials.append(_summary(warm_rows, clock - t))
        requests += warm_rows
        t = clock + 1.0
        # concurrency sweep, closed loop
        for level in levels:
            median = target.median_ms * (max(1.0, level / target.cores) if not fn else 1.0)
            rows = _closed_loop(
                rng, sid, target, "sweep", "concurrency", level, level, t, duration_s, median, sigma, factor
            )
            if fn and cold_sweep:  # each extra worker's first request starts a new execution environment
                for worker in range(1, level):
                    row = next(r for r in rows if r["worker"] == worker)
                    row.update(cold=True, init_ms=target.init_ms)
            trials.append(_summary(rows, duration_s))
            requests += rows
            t += duration_s + 1.0
        if fn:
            for memory in memory_levels:
                median = target.median_ms * (target.memory_mb / memory) ** 0.8  # more memory, more CPU
                rows = []
                clock = t
                for i in range(memory_n):
                    latency = median * factor * float(rng.lognormal(0.0, sigma))
                    rows.append(_row(sid, target, "memory", "memory", memory, i, 0, clock, latency))
                    clock += latency / 1000.0
                trials.append(_summary(rows, clock - t))
                requests += rows
                t = clock + 1.0
    _write_csv(path / "requests.csv", REQUEST_COLUMNS, requests)
    _write_csv(path / "trials.csv", TRIAL_COLUMNS, trials)
    (path / "metrics.csv").write_text(
        "session,workload,trial,target,time,cpu_percent,cpu_per_core,rss_mb,mem_percent,load1,load5,load15,threads\n"
    )
    profile: dict[str, Any] = {
        "session": {"name": "synthetic", "output": str(path.parent)},
        "targets": [
            {"name": tg.name, "kind": tg.kind, **({"memory_mb": tg.memory_mb} if tg.kind == "lambda" else {})}
            for tg in targets
        ],
        "workloads": [{"name": "resnet50", "model": "resnet50"}],
        "trials": [{"kind": "cold"}, {"kind": "warm"}, {"kind": "concurrency", "levels": list(levels)}],
    }
    if prices is not None:
        profile["prices"] = prices
    if thresholds is not None:
        profile["thresholds"] = thresholds
    manifest = {
        "session_id": sid,
        "profile_path": "synthetic.toml",
        "profile": profile,
        "targets": {tg.name: {"name": tg.name, "kind": tg.kind, **tg.describe} for tg in targets},
        "perfdesk_version": "0.1.0",
        "python": "3.11",
        "os": "Linux",
        "cpu_model": "synthetic",
        "cores": 2,
        "packages": {"numpy": np.__version__},
        "started": T0,
        "finished": t,
    }
    (path / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return path


def _write_csv(path: Path, columns: list[str], rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def add_capacity_trial(
    path: Path,
    target: SynthTarget,
    *,
    slo_ms: float,
    capacity_rps: float | None,
    rates: tuple[float, ...],
    duration_s: float = 4.0,
    cold_every: int = 0,
    seed: int = 0,
    sigma: float = 0.0,
) -> None:
    """Append a capacity trial of ``target`` to a session written by :func:`write_session`: open-loop rows at each
    rate (latency around the target's median up to ``capacity_rps``, ten times it beyond), one trials.csv row per
    rate and the result row (level "capacity") as the capacity trial writes them. ``cold_every``: every n-th
    request of a function starts cold. A function's billed duration stays its median's: the extra latency past its
    capacity is waiting (throttles, queueing at the client), not billed time."""
    from perfdesk.controllers.stats import latency_samples, percentile

    rng = np.random.default_rng(seed)
    sid = path.name
    t = T0 + 100_000.0
    requests: list[dict[str, Any]] = []
    trials: list[dict[str, Any]] = []
    at_capacity: list[dict[str, Any]] = []
    for rate in rates:
        n = int(rate * duration_s)
        over = capacity_rps is None or rate > capacity_rps
        rows = []
        for i in range(n):
            base = target.median_ms * float(rng.lognormal(0.0, sigma))
            latency = base * (10.0 if over else 1.0)
            cold = bool(cold_every) and i % cold_every == 0
            row = _row(sid, target, "capacity", "capacity", rate, i, 0, t + i / rate, latency, cold=cold)
            if row["billed_ms"] != "":
                duration = max(1.0, base - target.overhead_ms)
                row.update(duration_ms=round(duration, 2), billed_ms=math.ceil(duration))
            rows.append(row)
        summary = _summary(rows, duration_s)
        summary.update(loop="open", slo_p99_ms=slo_ms, note=("breaks" if over else "meets") + " the SLO")
        trials.append(summary)
        requests += rows
        if rate == capacity_rps:
            at_capacity = rows
        t += duration_s + 1.0
    result = dict(trials[-1])
    samples = latency_samples(at_capacity)
    result.update(
        level="capacity",
        capacity_rps=capacity_rps if capacity_rps is not None else "",
        capacity_p99_ms=percentile(samples, 99) if capacity_rps is not None else "",
        capacity_samples=len(samples),
        note="synthetic capacity",
    )
    trials.append(result)
    _append_csv(path / "requests.csv", REQUEST_COLUMNS, requests)
    _append_csv(path / "trials.csv", TRIAL_COLUMNS, trials)


def _append_csv(path: Path, columns: list[str], rows: list[dict[str, Any]]) -> None:
    with path.open("a", newline="") as fh:
        csv.DictWriter(fh, fieldnames=columns).writerows(rows)
