"""CPU share proportional to memory, as Lambda gives it (1,769 MB = one vCPU), through the cgroup v1 cpu controller.

Each execution environment gets its own cgroup under ``<cpu root>/perfdesk-emulator-<pid>/`` with
``cpu.cfs_quota_us = period * memory_mb / 1769``. Where the controller is missing or not writable (no root, cgroup
v2 only, a container without the delegation) :class:`CpuLimiter` says so in :attr:`CpuLimiter.reason` and every
environment runs unthrottled; the emulator reports that in its description (the manifest).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

log = logging.getLogger(__name__)

MB_PER_VCPU = 1769
_CANDIDATES = ("/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/cpu")


def vcpus_for_memory(memory_mb: int) -> float:
    return memory_mb / MB_PER_VCPU


class CpuLimiter:
    """Creates one cpu cgroup per environment; a no-op (with a reason) where the OS does not allow it."""

    def __init__(self, enabled: bool = True, root: str | None = None):
        self.base: Path | None = None
        self.reason = ""
        if not enabled:
            self.reason = "CPU limits disabled by the emulator option"
            return
        candidates = [root] if root else list(_CANDIDATES)
        for cand in candidates:
            path = Path(cand)
            if (path / "cpu.cfs_quota_us").exists():
                base = path / f"perfdesk-emulator-{os.getpid()}"
                try:
                    base.mkdir(exist_ok=True)
                    (base / "cpu.cfs_quota_us").read_text()
                except OSError as exc:
                    self.reason = f"cgroup v1 cpu controller at {path} is not writable ({exc.strerror})"
                    continue
                self.base = base
                self.reason = ""
                return
        if not self.reason:
            self.reason = "no cgroup v1 cpu controller (looked in " + ", ".join(candidates) + ")"

    @property
    def active(self) -> bool:
        return self.base is not None

    def attach(self, env_id: str, pid: int, memory_mb: int) -> bool:
        """Put process ``pid`` in its own cgroup with a quota for ``memory_mb``; False where it could not."""
        if self.base is None:
            return False
        group = self.base / env_id
        try:
            group.mkdir(exist_ok=True)
            period = int((group / "cpu.cfs_period_us").read_text().strip() or 100000)
            quota = max(1000, int(period * vcpus_for_memory(memory_mb)))
            (group / "cpu.cfs_quota_us").write_text(str(quota))
            (group / "cgroup.procs").write_text(str(pid))
            return True
        except OSError as exc:
            log.warning("could not put environment %s in a cpu cgroup: %s", env_id, exc)
            return False

    def release(self, env_id: str) -> None:
        """Remove the environment's cgroup (its processes must be gone; retried briefly while the kernel lags)."""
        if self.base is None:
            return
        group = self.base / env_id
        for _ in range(20):
            try:
                group.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.05)
        log.warning("cgroup %s still busy; left behind", group)

    def close(self) -> None:
        if self.base is None:
            return
        for child in list(self.base.iterdir()) if self.base.exists() else []:
            if child.is_dir():
                self.release(child.name)
        try:
            self.base.rmdir()
        except OSError as exc:
            log.warning("cgroup %s not removed: %s", self.base, exc)
