"""Default intra-op thread counts per runtime.

Chosen by measurement on a 2-core machine (benchmarks/models.md, "Thread counts"): one intra-op thread per
usable core is best for every runtime; more threads than cores only adds contention.
"""

from __future__ import annotations

import os


def usable_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def default_threads(runtime: str) -> int:
    return usable_cores()
