"""The session store: one folder per run with requests.csv, trials.csv, metrics.csv and manifest.json.

Rows are appended and flushed as they complete (a killed run keeps every finished request): one at a time from
the thread pool, or in the batches of one event-loop tick (:class:`RequestsDone`) from the event-driven client. The
manifest is written at the start (status "running") and rewritten at the end, so even a killed run says what was
measured.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import re
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from perfdesk import __version__
from perfdesk.controllers.events import (
    Event,
    LoadClients,
    MetricSample,
    RequestDone,
    RequestsDone,
    TrialFinished,
    takes_batches,
)
from perfdesk.controllers.results import METRIC_COLUMNS, REQUEST_COLUMNS, TRIAL_COLUMNS

_SECRET_KEY = re.compile(r"(token|secret|password|passphrase|access_key|session_key|credential)", re.I)


def redact(obj: Any) -> Any:
    """A copy of a profile/manifest structure with secret-looking keys replaced (nothing secret reaches a file)."""
    if isinstance(obj, dict):
        return {
            k: ("<redacted>" if _SECRET_KEY.search(str(k)) and v not in (None, "") else redact(v))
            for k, v in obj.items()
        }
    if isinstance(obj, list):
        return [redact(v) for v in obj]
    return obj


def _iso(t: float | None) -> str | None:
    return datetime.fromtimestamp(t, UTC).isoformat() if t else None


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def package_versions() -> dict[str, str]:
    from perfdesk.controllers.provenance import software_versions

    return software_versions()


class _CsvFile:
    def __init__(self, path: Path, columns: list[str]):
        self.path = path
        self.columns = columns
        new = not path.exists()
        self._fh = open(path, "a", newline="", encoding="utf-8")
        self._writer = csv.DictWriter(self._fh, fieldnames=columns, extrasaction="ignore")
        self._plain = csv.writer(self._fh)
        if new:
            self._writer.writeheader()
            self._fh.flush()
        self._lock = threading.Lock()
        self.rows = 0

    def write(self, row: dict) -> None:
        clean = {k: ("" if v is None else v) for k, v in row.items()}
        with self._lock:
            if self._fh.closed:
                return
            self._writer.writerow(clean)
            self._fh.flush()
            self.rows += 1

    def write_many(self, rows: list[dict]) -> None:
        """Several rows, one write and one flush (the event-driven load generator's batches)."""
        columns = self.columns
        lines = [list(map(row.get, columns)) for row in rows]  # the csv module writes None as ""
        with self._lock:
            if self._fh.closed:
                return
            self._plain.writerows(lines)
            self._fh.flush()
            self.rows += len(lines)

    def close(self) -> None:
        with self._lock:
            if not self._fh.closed:
                self._fh.flush()
                os.fsync(self._fh.fileno())
                self._fh.close()


class SessionStore:
    """Subscribes to the event bus and writes the session folder."""

    def __init__(self, root: str | Path, session_name: str, *, clock=time.time):
        stamp = datetime.fromtimestamp(clock()).strftime("%Y%m%d-%H%M%S")
        base = Path(root)
        base.mkdir(parents=True, exist_ok=True)
        path = base / f"{session_name}-{stamp}"
        n = 1
        while path.exists():
            n += 1
            path = base / f"{session_name}-{stamp}-{n}"
        path.mkdir()
        self.path = path
        self.session_id = path.name
        self.requests = _CsvFile(path / "requests.csv", REQUEST_COLUMNS)
        self.trials = _CsvFile(path / "trials.csv", TRIAL_COLUMNS)
        self.metrics = _CsvFile(path / "metrics.csv", METRIC_COLUMNS)
        self.manifest: dict[str, Any] = {}
        self.started = clock()
        self._clock = clock

    @takes_batches
    def handle(self, event: Event) -> None:
        if isinstance(event, RequestDone):
            self.requests.write(event.row)
        elif isinstance(event, RequestsDone):
            self.requests.write_many(event.rows)
        elif isinstance(event, MetricSample):
            self.metrics.write(event.row)
        elif isinstance(event, TrialFinished):
            self.trials.write(event.summary)
        elif isinstance(event, LoadClients):
            # the manifest's "load": per level, which clients sent it and their clock offsets
            entry = {"workload": event.workload, "trial": event.trial, "target": event.target, "level": event.level}
            self.manifest.setdefault("load", []).append({**entry, **event.facts})
            self.write_manifest()

    def write_manifest(self, **fields: Any) -> None:
        self.manifest.update(fields)
        data = {
            "session_id": self.session_id,
            "perfdesk_version": __version__,
            "python": sys.version.split()[0],
            "os": platform.platform(),
            "cpu_model": cpu_model(),
            "cores": os.cpu_count(),
            "client_host": platform.node(),
            "packages": package_versions(),
            "started": _iso(self.started),
            **self.manifest,
        }
        tmp = self.path / "manifest.json.tmp"
        tmp.write_text(json.dumps(redact(data), indent=2, default=str))
        tmp.replace(self.path / "manifest.json")

    def close(self, status: str) -> None:
        for f in (self.requests, self.trials, self.metrics):
            f.close()
        self.write_manifest(
            status=status,
            finished=_iso(self._clock()),
            rows={"requests": self.requests.rows, "trials": self.trials.rows, "metrics": self.metrics.rows},
        )
