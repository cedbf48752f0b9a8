"""Lambda's REPORT and INIT_REPORT log lines: written by the emulator, parsed by the targets (one format, both sides).

Real Lambda ends every invocation's log with a line such as::

    REPORT RequestId: 3c1f...  Duration: 102.25 ms  Billed Duration: 2974 ms  Memory Size: 1536 MB
    Max Memory Used: 412 MB  Init Duration: 2871.03 ms

(one line, tab separated; ``Init Duration`` only after a cold start whose init phase succeeded; a ``Status:
timeout`` / ``Status: error  Error Type: ...`` tail on failures). Since 1 August 2025 Lambda bills the init phase of
zip functions on managed runtimes, so a cold start's Billed Duration is ``ceil(Duration + Init Duration)``.
An init phase that fails or times out is logged before the invocation as::

    INIT_REPORT Init Duration: 10008.61 ms  Phase: init  Status: timeout

and again with ``Phase: invoke`` when the init retried inside the invocation fails too. A SnapStart version's init
runs when it is published and logs ``INIT_REPORT Init Duration: ... ms`` (no phase or status when it succeeds); a
cold start of that version logs ``RESTORE_START`` and ``RESTORE_REPORT Restore Duration: ... ms`` before START, and
its REPORT line ends with ``Restore Duration: ... ms  Billed Restore Duration: ... ms`` instead of Init Duration.
This module imports nothing from perfdesk so the emulator and the shipped side can both use it.
"""

from __future__ import annotations

import base64
import math
import re
from dataclasses import dataclass

_FIELDS = {
    "request_id": re.compile(r"RequestId:\s*([0-9A-Za-z-]+)"),
    "duration_ms": re.compile(r"(?<!Billed )(?<!Init )(?<!Restore )Duration:\s*([0-9.]+)\s*ms"),
    "billed_ms": re.compile(r"Billed Duration:\s*([0-9.]+)\s*ms"),
    "memory_size_mb": re.compile(r"Memory Size:\s*([0-9]+)\s*MB"),
    "max_memory_used_mb": re.compile(r"Max Memory Used:\s*([0-9]+)\s*MB"),
    "init_ms": re.compile(r"Init Duration:\s*([0-9.]+)\s*ms"),
    "restore_ms": re.compile(r"(?<!Billed )Restore Duration:\s*([0-9.]+)\s*ms"),
    "billed_restore_ms": re.compile(r"Billed Restore Duration:\s*([0-9.]+)\s*ms"),
    "status": re.compile(r"Status:\s*([A-Za-z]+)"),
    "error_type": re.compile(r"Error Type:\s*([A-Za-z.]+)"),
}


@dataclass
class Report:
    """The figures of one REPORT line. ``init_ms`` is set only for a cold start."""

    request_id: str = ""
    duration_ms: float | None = None
    billed_ms: float | None = None
    memory_size_mb: int | None = None
    max_memory_used_mb: int | None = None
    init_ms: float | None = None
    status: str = ""
    error_type: str = ""
    restore_ms: float | None = None  # a SnapStart version's cold start: restored from its snapshot
    billed_restore_ms: float | None = None

    @property
    def cold(self) -> bool:
        return self.init_ms is not None or self.restore_ms is not None


def parse_report(log_text: str) -> Report | None:
    """The last REPORT line of a tail log (plain text), or None when the log holds none (it was cut)."""
    lines = [ln for ln in log_text.splitlines() if ln.startswith("REPORT ")]
    if not lines:
        return None
    line = lines[-1]
    rep = Report()
    for name, rx in _FIELDS.items():
        m = rx.search(line)
        if not m:
            continue
        raw = m.group(1)
        if name in ("memory_size_mb", "max_memory_used_mb"):
            setattr(rep, name, int(raw))
        elif name in ("request_id", "status", "error_type"):
            setattr(rep, name, raw)
        else:
            setattr(rep, name, float(raw))
    return rep


def parse_log_result(header_value: str | None) -> tuple[str, Report | None]:
    """Decode the base64 ``LogResult`` of an Invoke (LogType=Tail) and parse its REPORT line."""
    if not header_value:
        return "", None
    text = base64.b64decode(header_value).decode("utf-8", errors="replace")
    return text, parse_report(text)


def format_report(
    request_id: str,
    duration_ms: float,
    memory_size_mb: int,
    max_memory_used_mb: int,
    init_ms: float | None = None,
    status: str = "",
    error_type: str = "",
    restore_ms: float | None = None,
    billed_restore_ms: float | None = None,
) -> str:
    """A REPORT line in Lambda's format: the billed duration is rounded up to the millisecond, and includes the
    init phase of a cold start (``init_ms``), as Lambda bills zip functions on managed runtimes since August 2025.
    A SnapStart cold start has no Init Duration (the init ran when the version was published) but ``Restore
    Duration`` and ``Billed Restore Duration`` (the after-restore hooks, billed apart from the duration)."""
    billed = duration_ms + (init_ms or 0.0)
    parts = [
        f"REPORT RequestId: {request_id}",
        f"Duration: {duration_ms:.2f} ms",
        f"Billed Duration: {max(1, math.ceil(round(billed, 6)))} ms",
        f"Memory Size: {memory_size_mb} MB",
        f"Max Memory Used: {max_memory_used_mb} MB",
    ]
    if init_ms is not None:
        parts.append(f"Init Duration: {init_ms:.2f} ms")
    if restore_ms is not None:
        parts.append(f"Restore Duration: {restore_ms:.2f} ms")
        parts.append(f"Billed Restore Duration: {max(0, math.ceil(round(billed_restore_ms or 0.0, 6)))} ms")
    if status:
        parts.append(f"Status: {status}")
    if error_type:
        parts.append(f"Error Type: {error_type}")
    return "\t".join(parts) + "\t"


def format_init_report(phase: str, duration_ms: float, status: str, error_type: str = "") -> str:
    """Lambda's INIT_REPORT line (with its newline) for an init phase (``init`` or ``invoke``) that failed or timed
    out; ``error_type`` only with ``status == "error"``."""
    parts = [f"INIT_REPORT Init Duration: {duration_ms:.2f} ms", f"Phase: {phase}", f"Status: {status}"]
    if error_type:
        parts.append(f"Error Type: {error_type}")
    return "\t".join(parts) + "\n"


@dataclass
class InitReport:
    duration_ms: float
    phase: str
    status: str
    error_type: str = ""


_INIT_RX = re.compile(
    r"INIT_REPORT Init Duration:\s*([0-9.]+)\s*ms(?:\s+Phase:\s*(\w+)\s+Status:\s*(\w+))?"
    r"(?:\s+Error Type:\s*([A-Za-z.]+))?"
)


def format_snapstart_init_report(duration_ms: float) -> str:
    """The INIT_REPORT a SnapStart version logs when its init (with the before-snapshot hooks) succeeded."""
    return f"INIT_REPORT Init Duration: {duration_ms:.2f} ms\n"


def format_restore_report(restore_ms: float) -> str:
    """The RESTORE_REPORT line of a SnapStart cold start, before its START line."""
    return f"RESTORE_REPORT Restore Duration: {restore_ms:.2f} ms\n"


def parse_init_reports(log_text: str) -> list[InitReport]:
    """Every INIT_REPORT line of a log, in order."""
    out = []
    for line in log_text.splitlines():
        m = _INIT_RX.match(line)
        if m:
            out.append(InitReport(float(m.group(1)), m.group(2) or "init", m.group(3) or "success", m.group(4) or ""))
    return out
