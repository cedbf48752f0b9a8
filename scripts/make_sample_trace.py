"""Write profiles/traces/sample_invocations_per_function.csv: a small SYNTHETIC trace in the format of Azure's
public Functions trace 2019 (invocations_per_function_md.anon.d01.csv: HashOwner,HashApp,HashFunction,Trigger,
then 1440 per-minute invocation counts). No row comes from Azure's data: the counts are drawn here, seeded.

Rows: an HTTP function with a daily cycle (about 2 a minute at night, 12 at the afternoon peak, with idle minutes
at night), a timer firing every 10 minutes, and a queue function with a few bursts.

    python scripts/make_sample_trace.py
"""

import hashlib
import math
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[1] / "profiles" / "traces" / "sample_invocations_per_function.csv"


def h(text: str) -> str:
    return hashlib.sha256(f"perfdesk-synthetic-{text}".encode()).hexdigest()[:64]


def main() -> None:
    rng = np.random.default_rng(2019)
    minutes = np.arange(1440)
    mean = 7.0 + 5.0 * np.cos(2 * math.pi * (minutes / 1440.0 - 14.0 / 24.0))  # 2..12 a minute, peak at 14h
    http = rng.poisson(mean)
    http[(minutes < 6 * 60) & (rng.uniform(size=1440) < 0.5)] = 0  # idle minutes at night
    timer = np.where(minutes % 10 == 0, 1, 0)
    queue = rng.poisson(0.2, 1440)
    for start in (540, 545, 900, 1200):
        queue[start : start + 3] += rng.poisson(40, 3)
    rows = [
        (h("owner"), h("app-a"), h("classify"), "http", http),
        (h("owner"), h("app-a"), h("nightly-refresh"), "timer", timer),
        (h("owner"), h("app-b"), h("ingest"), "queue", queue),
    ]
    lines = [",".join(["HashOwner", "HashApp", "HashFunction", "Trigger"] + [str(m) for m in range(1, 1441)])]
    for owner, app, fn, trigger, counts in rows:
        lines.append(",".join([owner, app, fn, trigger] + [str(int(c)) for c in counts]))
    OUT.write_text("\n".join(lines) + "\n")
    print(f"wrote {OUT}: {', '.join(f'{r[3]} {int(r[4].sum())}' for r in rows)} invocations")


if __name__ == "__main__":
    main()
