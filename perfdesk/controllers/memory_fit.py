"""The smallest memory that works: what a memory sweep found, per workload x trial x function target.

Each level of a sweep ends ``completed`` (the function ran at that size), ``out of memory`` (its environment ran
out: a measured result, see :data:`~perfdesk.controllers.results.LEVEL_OUT_OF_MEMORY`), or failed / interrupted (no
verdict on the size). :func:`memory_fits` reads trials.csv rows (dicts: live summaries or the file's records) and
says, for each sweep, the smallest size that worked and the sizes that ran out of memory. The headless summary,
the desk and the HTML report all print :attr:`MemoryFit.text`, so they say the same thing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from perfdesk.controllers.results import LEVEL_OUT_OF_MEMORY
from perfdesk.controllers.stats import num


def _text(value) -> str:
    """A CSV cell as text; blank for None and NaN (pandas reads an empty cell as NaN)."""
    return "" if value is None or (isinstance(value, float) and value != value) else str(value)


def _mb(sizes: Iterable[int]) -> str:
    return ", ".join(f"{mb:,} MB" for mb in sizes)


@dataclass(frozen=True)
class MemoryFit:
    """One sweep's answer. ``works_mb``: the smallest size whose level completed (None: none did)."""

    workload: str
    trial: str
    target: str
    works_mb: int | None
    out_of_memory_mb: tuple[int, ...] = ()
    tried_mb: tuple[int, ...] = ()

    @property
    def label(self) -> str:
        workload = f"{self.workload}/" if self.workload else ""
        return f"{workload}{self.trial} on {self.target}"

    @property
    def text(self) -> str:
        """``smallest memory that works: 1,536 MB; out of memory at 1,024 MB`` (or what the sweep found instead)."""
        oom = self.out_of_memory_mb
        if self.works_mb is None:
            return f"no size tried works: out of memory at {_mb(oom)}" if oom else "no size tried completed"
        head = f"smallest memory that works: {self.works_mb:,} MB"
        if oom:
            return f"{head}; out of memory at {_mb(oom)}"
        if self.tried_mb and self.works_mb == min(self.tried_mb):
            return f"{head} (the smallest size tried)"
        return head

    @property
    def line(self) -> str:
        return f"{self.label}: {self.text}"


def memory_fits(summaries: Iterable[dict]) -> list[MemoryFit]:
    """One :class:`MemoryFit` per memory sweep in ``summaries`` (trials.csv rows), in the order they first appear.

    A later row for the same level replaces an earlier one (the desk reruns trials); whole-trial rows with no
    level (a skipped sweep) are left out.
    """
    levels: dict[tuple[str, str, str], dict[int, str]] = {}
    for row in summaries:
        if row.get("trial_kind") != "memory":
            continue
        mb = num(row.get("level"))
        if mb is None:
            continue
        key = (_text(row.get("workload")), _text(row.get("trial")), _text(row.get("target")))
        levels.setdefault(key, {})[int(mb)] = str(row.get("status") or "")
    out = []
    for (workload, trial, target), status in levels.items():
        works = sorted(mb for mb, s in status.items() if s == "completed")
        oom = sorted(mb for mb, s in status.items() if s == LEVEL_OUT_OF_MEMORY)
        out.append(MemoryFit(workload, trial, target, works[0] if works else None, tuple(oom), tuple(sorted(status))))
    return out
