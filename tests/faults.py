"""Helpers of the fault tests: inject a fault at the Nth answered request, then read what the session saved."""

from __future__ import annotations

import csv
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from perfdesk.controllers.events import RequestDone, TrialFinished


class Chaos:
    """A bus subscriber: runs ``fault`` once, when the ``after``-th request of trial ``trial`` was answered ok, and
    notes when each level ended. ``fault`` runs in a thread of its own (a fault may take a moment: a kill over SSH)."""

    def __init__(self, fault: Callable[[], None], *, after: int, trial: str):
        self.fault, self.after, self.trial = fault, after, trial
        self.fault_at: float | None = None
        self.ok_seen: list[dict] = []
        self.ended: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()
        self._done = threading.Event()

    def __call__(self, event) -> None:
        if isinstance(event, RequestDone) and event.row["status"] == "ok":
            with self._lock:
                self.ok_seen.append(event.row)
                mine = sum(1 for r in self.ok_seen if r["trial"] == self.trial)
                go = mine == self.after and self.fault_at is None
                if go:
                    self.fault_at = time.time()
            if go:
                self.fault()
                self._done.set()
        elif isinstance(event, TrialFinished):
            s = event.summary
            self.ended.setdefault((s["trial"], s["target"]), time.time())

    def noticed_s(self, trial: str, target: str) -> float:
        """Seconds from the fault to the end of the trial's (first) level."""
        assert self.fault_at is not None, "the fault was never injected"
        seconds = self.ended[(trial, target)] - self.fault_at
        print(f"\n{trial} on {target}: level ended {seconds:.1f} s after the fault")  # the README's fault table
        return seconds


def rows(session: Path, name: str) -> list[dict]:
    return list(csv.DictReader(open(Path(session) / name)))


def level(session: Path, trial: str, target: str | None = None) -> dict:
    found = [
        r for r in rows(session, "trials.csv") if r["trial"] == trial and (target is None or r["target"] == target)
    ]
    assert found, f"no trials.csv row for {trial}"
    return found[0]


def assert_answers_kept(session: Path, chaos: Chaos) -> None:
    """Every request answered ok during the run is a row of requests.csv."""
    saved = {
        (r["trial"], r["target"], r["level"], r["seq"]) for r in rows(session, "requests.csv") if r["status"] == "ok"
    }
    seen = {(r["trial"], r["target"], str(r["level"]), str(r["seq"])) for r in chaos.ok_seen}
    assert seen and seen <= saved and len(saved) == len(seen)


def processes(*markers: str) -> list[int]:
    """Processes on this machine whose command line holds every one of ``markers``."""
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if all(m in cmd for m in markers):
                found.append(int(pid))
    return found


def local_agents() -> list[int]:
    """Local-server agents this test process started (they carry --parent-pid <this pid>)."""
    return processes("perfdesk.shipped.agent", f"--parent-pid {os.getpid()}")
