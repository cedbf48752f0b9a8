"""Per-environment cgroups (v1): a hard memory limit at the function's memory size, and a CPU share of
memory / 1,769 MB of a vCPU (at most 6), as Lambda gives them.

Each controller gets a group of the emulator's own under the group the emulator runs in
(``<mount>/<own group>/perfdesk-emulator-<pid>/``), and each execution environment a child of it named after the
environment. The environment's launcher joins its groups itself before it executes the runtime, so nothing the
runtime allocates is ever charged elsewhere. Where a controller is missing or not writable (no root, cgroup v2 only,
a container without the delegation) the limiter says so in :attr:`reason`; the emulator then polls memory and runs
unthrottled, and its description (the session manifest) says which.

Groups left behind by an emulator that was killed hard are removed by the next one to start.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path

log = logging.getLogger(__name__)

MB_PER_VCPU = 1769
MAX_VCPUS = 6
MiB = 1024 * 1024
_PREFIX = "perfdesk-emulator-"


def vcpus_for_memory(memory_mb: int) -> float:
    """Lambda's CPU share: one vCPU per 1,769 MB, at most 6 (10,240 MB)."""
    return min(MAX_VCPUS, memory_mb / MB_PER_VCPU)


def _mount_point(controller: str) -> Path | None:
    """Where the cgroup v1 hierarchy holding ``controller`` is mounted (None: not mounted)."""
    try:
        lines = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split()
        if len(parts) >= 4 and parts[2] == "cgroup" and controller in parts[3].split(","):
            return Path(parts[1])
    return None


def _own_group(controller: str) -> str:
    """This process's group in the hierarchy of ``controller`` ("/" at the root)."""
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, names, path = line.split(":", 2)
            if controller in names.split(","):
                return path
    except (OSError, ValueError):
        pass
    return "/"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _rmdir_tree(path: Path) -> None:
    """Remove a cgroup directory and its children (cgroup directories are removed with rmdir, bottom up)."""
    for child in sorted((p for p in path.iterdir() if p.is_dir()), reverse=True) if path.exists() else []:
        _rmdir_tree(child)
    for _ in range(20):
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.05)  # the kernel frees a group a moment after its last process is reaped
    try:
        tasks = (path / "tasks").read_text().split()
    except OSError:
        tasks = []
    log.warning("cgroup %s still busy (tasks: %s); left behind", path, " ".join(tasks) or "none")


def _kill_tasks(path: Path) -> None:
    for tasks in path.rglob("tasks"):
        try:
            pids = [int(p) for p in tasks.read_text().split()]
        except (OSError, ValueError):
            continue
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


class _Controller:
    """One cgroup v1 controller: the emulator's group under it, one child group per environment."""

    controller = ""
    probe_file = ""
    what = ""

    def __init__(self, enabled: bool = True, root: str | None = None):
        self.base: Path | None = None
        self.reason = ""
        if not enabled:
            self.reason = f"{self.what} limits disabled by the emulator option"
            return
        if root:
            parent = Path(root)
        else:
            mount = _mount_point(self.controller)
            if mount is None:
                self.reason = f"no cgroup v1 {self.controller} controller is mounted"
                return
            parent = mount / _own_group(self.controller).lstrip("/")
        if not (parent / self.probe_file).exists():
            self.reason = f"no cgroup v1 {self.controller} controller at {parent}"
            return
        self._sweep(parent)
        base = parent / f"{_PREFIX}{os.getpid()}"
        try:
            base.mkdir(exist_ok=True)
            self._prepare_base(base)
            (base / self.probe_file).read_text()
        except OSError as exc:
            self.reason = f"cgroup v1 {self.controller} controller at {parent} is not writable ({exc.strerror})"
            try:
                base.rmdir()
            except OSError:
                pass
            return
        self.base = base

    @staticmethod
    def _sweep(parent: Path) -> None:
        """Remove the groups of emulators that died without cleaning up (their pid is gone)."""
        try:
            stale = [p for p in parent.glob(f"{_PREFIX}*") if p.is_dir()]
        except OSError:
            return
        for group in stale:
            pid = group.name[len(_PREFIX) :]
            if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
                _kill_tasks(group)  # what a function started and left behind when its emulator was killed
                _rmdir_tree(group)

    def _prepare_base(self, base: Path) -> None:
        pass

    @property
    def active(self) -> bool:
        return self.base is not None

    def group(self, env_id: str) -> Path | None:
        return None if self.base is None else self.base / env_id

    def procs_file(self, env_id: str) -> str | None:
        """The file a process writes its pid to to join the environment's group (None: no group)."""
        group = self.group(env_id)
        return None if group is None else str(group / "cgroup.procs")

    def attach(self, env_id: str, pid: int) -> bool:
        """Move process ``pid`` into the environment's group (the launcher normally joins by itself)."""
        path = self.procs_file(env_id)
        if path is None:
            return False
        try:
            Path(path).write_text(str(pid))
            return True
        except OSError as exc:
            log.warning("could not put pid %s in %s: %s", pid, path, exc)
            return False

    def release(self, env_id: str) -> None:
        """Remove the environment's group (its processes must be gone; retried briefly while the kernel lags)."""
        group = self.group(env_id)
        if group is not None:
            _rmdir_tree(group)

    def close(self) -> None:
        if self.base is not None:
            _rmdir_tree(self.base)


class CpuLimiter(_Controller):
    """``cpu.cfs_quota_us = period * memory_mb / 1769`` (at most 6 vCPUs) per environment."""

    controller = "cpu"
    probe_file = "cpu.cfs_quota_us"
    what = "CPU"

    def create(self, env_id: str, memory_mb: int) -> bool:
        """Create the environment's group with its quota; False where it could not."""
        group = self.group(env_id)
        if group is None:
            return False
        try:
            group.mkdir(exist_ok=True)
            period = int((group / "cpu.cfs_period_us").read_text().strip() or 100000)
            quota = max(1000, int(period * vcpus_for_memory(memory_mb)))
            (group / "cpu.cfs_quota_us").write_text(str(quota))
            return True
        except OSError as exc:
            log.warning("could not create the cpu cgroup of environment %s: %s", env_id, exc)
            return False


class MemoryLimiter(_Controller):
    """A hard limit (``memory.limit_in_bytes``, and the same for memory+swap) at the function's memory size.

    Going over it makes the kernel's OOM killer end the runtime, as Lambda's does in its microVM; the group's
    ``oom_kill`` counter tells that death from others. Its peak usage (``memory.max_usage_in_bytes``, page cache
    included, as in a microVM) is the REPORT line's Max Memory Used.
    """

    controller = "memory"
    probe_file = "memory.limit_in_bytes"
    what = "memory"

    def _prepare_base(self, base: Path) -> None:
        use_hierarchy = base / "memory.use_hierarchy"
        if use_hierarchy.exists() and use_hierarchy.read_text().strip() != "1":
            try:
                use_hierarchy.write_text("1")
            except OSError:
                pass

    def create(self, env_id: str, memory_mb: int) -> bool:
        group = self.group(env_id)
        if group is None:
            return False
        limit = str(memory_mb * MiB)
        try:
            group.mkdir(exist_ok=True)
            (group / "memory.limit_in_bytes").write_text(limit)
            memsw = group / "memory.memsw.limit_in_bytes"
            if memsw.exists():  # no swapping either: a microVM has none
                memsw.write_text(limit)
            swappiness = group / "memory.swappiness"
            if swappiness.exists():
                swappiness.write_text("0")
            return True
        except OSError as exc:
            log.warning("could not create the memory cgroup of environment %s: %s", env_id, exc)
            return False

    def _read(self, env_id: str, name: str) -> str:
        group = self.group(env_id)
        if group is None:
            return ""
        try:
            return (group / name).read_text()
        except OSError:
            return ""

    def peak_bytes(self, env_id: str) -> int:
        """The group's peak memory use since it was created (0 if unknown)."""
        raw = self._read(env_id, "memory.max_usage_in_bytes").strip()
        return int(raw) if raw.isdigit() else 0

    def oom_kills(self, env_id: str) -> int:
        """How many processes of the group the OOM killer ended."""
        for line in self._read(env_id, "memory.oom_control").splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill" and value.strip().isdigit():
                return int(value)
        return 0
