"""Capacity under an SLO, read back from a session: what each target's ``capacity`` trial found.

The capacity trial (:mod:`perfdesk.controllers.capacity`) writes one trials.csv row per target with level
``capacity``: ``slo_p99_ms`` (the bound), ``capacity_rps`` (the highest sustained rate that met it),
``capacity_p99_ms`` and ``capacity_samples``. The break-even (:mod:`perfdesk.verdict.cost`) prices servers at that
rate per instance, so a server is compared with a function at the same p99, not at whatever throughput it reached.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from perfdesk.controllers.capacity import RESULT_LEVEL
from perfdesk.controllers.stats import min_samples
from perfdesk.verdict.session_data import Session


@dataclass
class Capacity:
    """A target's capacity under its SLO. ``rps`` None: no rate tried met the bound."""

    target: str
    workload: str
    trial: str
    slo_p99_ms: float
    rps: float | None
    p99_ms: float | None
    samples: int
    note: str = ""

    @property
    def enough_samples(self) -> bool:
        return self.samples >= min_samples(99)

    def line(self) -> str:
        """One sentence for people."""
        if self.rps is None:
            return f"{self.target}: no rate met p99 <= {self.slo_p99_ms:g} ms ({self.note})"
        few = "" if self.enough_samples else f"; fewer than the {min_samples(99)} samples a p99 needs"
        return (
            f"{self.target} sustains {self.rps:g} req/s with p99 <= {self.slo_p99_ms:g} ms "
            f"(p99 {self.p99_ms:.1f} ms over {self.samples} requests{few})"
        )


def _num(value) -> float | None:
    v = pd.to_numeric(value, errors="coerce")
    return None if pd.isna(v) else float(v)


def capacities(session: Session) -> dict[str, Capacity]:
    """The last capacity result of every target (the profile's first workload's, when several ran)."""
    trials = session.trials
    if not len(trials) or "capacity_rps" not in trials.columns:
        return {}
    rows = trials[(trials["trial_kind"] == "capacity") & (trials["level"] == RESULT_LEVEL)]
    out: dict[str, Capacity] = {}
    for _, r in rows.iterrows():
        target = str(r["target"])
        if target in out and out[target].workload != str(r["workload"]):
            continue  # one workload per verdict: the first one measured
        rps = _num(r.get("capacity_rps"))
        samples = _num(r.get("capacity_samples"))
        out[target] = Capacity(
            target=target,
            workload=str(r["workload"]),
            trial=str(r["trial"]),
            slo_p99_ms=_num(r.get("slo_p99_ms")) or math.nan,
            rps=rps if rps and rps > 0 else None,
            p99_ms=_num(r.get("capacity_p99_ms")),
            samples=int(samples or 0),
            note=str(r.get("note") or ""),
        )
    return out


def cold_share_at_capacity(session: Session, capacity: Capacity) -> tuple[float, int, int] | None:
    """(share, cold, requests) of a function's requests that started cold at its capacity rate: the scale-out a
    sustained rate of that size brings; None without rows there."""
    if capacity.rps is None:
        return None
    req = session.requests
    rows = req[
        (req["target"] == capacity.target)
        & (req["trial"] == capacity.trial)
        & (req["workload"] == capacity.workload)
        & (pd.to_numeric(req["level"], errors="coerce") == capacity.rps)
    ]
    if not len(rows):
        return None
    cold = int(rows["cold"].sum())
    return cold / len(rows), cold, len(rows)
