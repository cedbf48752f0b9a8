"""Default intra-op thread counts: half the usable cores, at least one.

Chosen by measurement on the 2-core development machine (benchmarks/models.md, "Thread counts"): there one
PyTorch thread beat two by 1.4-7x in every round (ResNet-50 and MobileNetV2, batch 1 and 8, separate processes,
alternating), and one ONNX Runtime thread beat two except for MobileNetV2 at batch 1 (10 % behind). The machine
was shared (load average 3-7): a spin-waiting OpenMP thread that loses its core stalls the whole operator, so
oversubscribing costs far more than leaving a core to image decoding, the HTTP server and neighbours. Pass
``threads`` explicitly on a dedicated host where measurement says otherwise.
"""

from __future__ import annotations

import os


def usable_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def default_threads(runtime: str) -> int:
    """The intra-op thread count used when the profile gives none (the same rule for every runtime)."""
    return max(1, usable_cores() // 2)
