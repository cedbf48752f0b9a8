"""One request's outcome, and the columns of every session CSV (the single source of truth for them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from perfdesk.shipped.wire import parse_response

#: Status values of a request row.
OK, ERROR, THROTTLED, TIMEOUT, CANCELLED, DROPPED = "ok", "error", "throttled", "timeout", "cancelled", "dropped"
STATUSES = (OK, ERROR, THROTTLED, TIMEOUT, CANCELLED, DROPPED)

#: Lambda's error type for an invocation whose execution environment ran out of memory (the Invoke answer's
#: ``errorType`` and the REPORT line's ``Error Type``). A function target's error rows start with their error type,
#: so a row ran out of memory exactly when its ``error`` starts with this.
OUT_OF_MEMORY_ERROR = "Runtime.OutOfMemory"
#: trials.csv status of a memory-sweep level at which the function ran out of memory: a measured result (the size
#: is too small), not a failed run.
LEVEL_OUT_OF_MEMORY = "out of memory"


def is_out_of_memory(row: dict | RequestResult) -> bool:
    """Did this request (a requests.csv row or a :class:`RequestResult`) end in ``Runtime.OutOfMemory``?"""
    status, error = (row.status, row.error) if isinstance(row, RequestResult) else (row.get("status"), row.get("error"))
    return status == ERROR and isinstance(error, str) and error.startswith(OUT_OF_MEMORY_ERROR)


@dataclass
class RequestResult:
    """What :meth:`Target.send` returns. Times are epoch seconds (``time.time()``), durations milliseconds.

    The target fills what it knows (send/receive times, status, server-side timings, function REPORT figures);
    the load generator fills the rest (trial, level, intended send time) before the row is written.
    """

    actual_send: float
    receive: float
    status: str = OK
    http_status: int | None = None
    error: str = ""
    # server-side per-phase timings, as the agent or the function reports them
    server_decode_ms: float | None = None
    server_preprocess_ms: float | None = None
    server_inference_ms: float | None = None
    server_postprocess_ms: float | None = None
    server_total_ms: float | None = None
    # cold start figures (first request after a fresh start)
    cold: bool = False
    start_ms: float | None = None
    init_ms: float | None = None
    restore_ms: float | None = None  # a SnapStart cold start: Restore Duration (no init_ms)
    billed_restore_ms: float | None = None
    # function figures from the REPORT line
    duration_ms: float | None = None
    billed_ms: float | None = None
    memory_size_mb: int | None = None
    max_memory_used_mb: int | None = None
    response_bytes: int = 0
    top1: str = ""
    request_id: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def service_ms(self) -> float:
        return (self.receive - self.actual_send) * 1000.0


def result_from_response(status: int, data: bytes, t0: float, t1: float) -> RequestResult:
    """A :class:`RequestResult` from an agent's or a function's answer (see :mod:`perfdesk.shipped.wire`)."""
    r = parse_response(status, data)
    if not r.ok:
        return RequestResult(
            actual_send=t0, receive=t1, status=ERROR, http_status=status, error=r.error, response_bytes=r.response_bytes
        )
    t = r.timings
    return RequestResult(
        actual_send=t0,
        receive=t1,
        status=OK,
        http_status=status,
        server_decode_ms=t.get("decode_ms"),
        server_preprocess_ms=t.get("preprocess_ms"),
        server_inference_ms=t.get("inference_ms"),
        server_postprocess_ms=t.get("postprocess_ms"),
        server_total_ms=r.server_total_ms,
        response_bytes=r.response_bytes,
        top1=r.top1,
    )


#: requests.csv, one row per request, in this order.
REQUEST_COLUMNS = [
    "session",
    "workload",
    "trial",
    "trial_kind",
    "target",
    "target_kind",
    "level",
    "seq",
    "worker",
    "client",  # the load engine's worker that sent it (``[load] engine = "locust"``); empty: this machine
    "intended_send",
    "actual_send",
    "receive",
    "latency_ms",
    "service_ms",
    "late_ms",
    "server_decode_ms",
    "server_preprocess_ms",
    "server_inference_ms",
    "server_postprocess_ms",
    "server_total_ms",
    "cold",
    "start_ms",
    "init_ms",
    "duration_ms",
    "billed_ms",
    "memory_size_mb",
    "max_memory_used_mb",
    "status",
    "http_status",
    "error",
    "payload_bytes",
    "response_bytes",
    "batch_size",
    "top1",
    "request_id",
    "cold_phases",
    "restore_ms",
    "billed_restore_ms",
]

#: trials.csv, one row per trial x target x level.
TRIAL_COLUMNS = [
    "session",
    "workload",
    "trial",
    "trial_kind",
    "target",
    "target_kind",
    "level",
    "status",
    "loop",
    "count",
    "ok",
    "errors",
    "throttled",
    "timeouts",
    "cancelled",
    "dropped",
    "not_sent",
    "late_sends",
    "cold_starts",
    "started",
    "finished",
    "duration_s",
    "throughput_rps",
    "images_per_s",
    "p50_ms",
    "p90_ms",
    "p95_ms",
    "p99_ms",
    "p999_ms",
    "latency_samples",
    "failed",
    "p50_ci_low_ms",
    "p50_ci_high_ms",
    "p99_ci_low_ms",
    "p99_ci_high_ms",
    "warm_p50_ms",
    "warm_p99_ms",
    "cold_p50_ms",
    "max_ms",
    "mean_ms",
    "mean_ci_low_ms",
    "mean_ci_high_ms",
    "server_inference_p50_ms",
    "init_p50_ms",
    "billed_ms_mean",
    "max_memory_used_mb",
    "invoke_path",
    "invoke_overhead_p50_ms",
    "burst_environments",
    "burst_all_warm_ms",
    # capacity trials: the p99 bound, and the highest sustained rate under it (see controllers/capacity.py)
    "slo_p99_ms",
    "capacity_rps",
    "capacity_p99_ms",
    "capacity_samples",
    "note",
    "restore_p50_ms",
]

#: metrics.csv, one row per resource sample.
METRIC_COLUMNS = [
    "session",
    "workload",
    "trial",
    "target",
    "time",
    "cpu_percent",
    "cpu_per_core",
    "rss_mb",
    "mem_percent",
    "load1",
    "load5",
    "load15",
    "threads",
]


def format_phases(phases: Any) -> str | None:
    """A cold start's phases for requests.csv: ``name=ms`` pairs joined by ``;`` (the numeric ``*_ms`` entries of
    a server's :class:`ColdStart.phases` or a function's ``init`` answer); None when there are none."""
    if not isinstance(phases, dict):
        return None
    pairs = [
        f"{k}={float(v):.3f}"
        for k, v in phases.items()
        if str(k).endswith("_ms") and isinstance(v, int | float) and not isinstance(v, bool)
    ]
    return ";".join(pairs) or None


def parse_phases(text: Any) -> dict[str, float]:
    """The inverse of :func:`format_phases` (empty for an empty cell)."""
    out: dict[str, float] = {}
    if not isinstance(text, str):
        return out
    for pair in text.split(";"):
        name, _, value = pair.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            continue
    return out


def request_row(result: RequestResult, **context: Any) -> dict[str, Any]:
    """Flatten a result plus its trial context into a requests.csv row (dict in REQUEST_COLUMNS order)."""
    # a shallow copy of the fields (``asdict`` deep-copies, and this runs once per request on the hot path)
    data = result.__dict__.copy()
    data["cold_phases"] = format_phases(result.extra.get("cold_phases") or result.extra.get("init"))
    data.pop("extra", None)
    data.update(context)
    intended = data.get("intended_send")
    if intended is None:
        intended = data["intended_send"] = result.actual_send
    data["service_ms"] = result.service_ms
    data["late_ms"] = max(0.0, (result.actual_send - intended) * 1000.0)
    if data.get("latency_ms") is None:
        # open loop: from the intended send time (coordinated omission); closed loop: intended == actual
        data["latency_ms"] = (result.receive - intended) * 1000.0
    return dict(zip(REQUEST_COLUMNS, map(data.get, REQUEST_COLUMNS), strict=True))
