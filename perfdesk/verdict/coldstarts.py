"""Cold starts side by side: a function's phases against a server's, from what the targets recorded.

Per target, the median over its cold requests (requests.csv rows with ``cold`` true) of each phase, in one set of
rows so both paradigms read across:

==============================  ======================================  ==========================================
phase                           function                                server
==============================  ======================================  ==========================================
instance launch                 -                                       EC2 launch until running (manifest
                                                                        ``launch_s``)
provisioning                    -                                       venv, dependencies, code, weights on the
                                                                        host (manifest ``provision_s``)
environment / process start     the platform's part: the cold request   agent process start until it answers,
                                as the client saw it minus the          model load excluded (``start_ms``)
                                handler's init and REPORT's Duration
                                (environment creation, code fetch and
                                unpack, runtime start, the round trip)
imports                         the handler's module, perfdesk's        the agent's inference imports
                                inference and the runtime's imports     (``cold_phases`` import_ms)
weights                         weight load into the runtime            model load minus imports
first inference                 the warm-up inference inside INIT       -
first request                   REPORT Duration of the cold request     the cold request's service time
==============================  ======================================  ==========================================

The function's phases come from the handler's ``init`` answer (requests.csv ``cold_phases``) and the REPORT line
(``init_ms``, ``duration_ms``); the server's from :class:`ColdStart.phases` of the cold trial's forced restarts
(``cold_phases``, ``start_ms``, ``init_ms``) and its deploy facts in the manifest.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from perfdesk.controllers.results import parse_phases
from perfdesk.verdict.cost import FUNCTION, billing_model
from perfdesk.verdict.session_data import Session

PHASES = (
    "instance launch",
    "provisioning",
    "environment / process start",
    "imports",
    "weights",
    "first inference",
    "first request",
)


@dataclass
class ColdStartBreakdown:
    target: str
    model: str  # function | server
    cold_requests: int
    phases: dict[str, float | None] = field(default_factory=dict)  # PHASES -> median ms (None: not applicable)
    init_report_ms: float | None = None  # functions: REPORT Init Duration (median)
    notes: list[str] = field(default_factory=list)

    @property
    def total_ms(self) -> float:
        return float(sum(v for v in self.phases.values() if v is not None))


def _median(values: list[float]) -> float | None:
    clean = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.median(clean)) if clean else None


def _function_phases(rows: pd.DataFrame, out: ColdStartBreakdown) -> None:
    platform, imports, weights, first_inf, first_req, init, restores = [], [], [], [], [], [], []
    for _, row in rows.iterrows():
        ph = parse_phases(row.get("cold_phases"))
        init_ms, duration = row.get("init_ms"), row.get("duration_ms")
        service = row.get("service_ms")
        restore = row.get("restore_ms")
        if restore is not None and pd.notna(restore):
            # SnapStart: the init (imports, weights, warm-up inference) ran once at publish, before the snapshot;
            # this start restored it. Its platform part is everything the client waited beyond Duration.
            restores.append(float(restore))
            if pd.notna(service) and pd.notna(duration):
                platform.append(max(0.0, float(service) - float(duration)))
            if pd.notna(duration):
                first_req.append(float(duration))
            continue
        # the platform's part: what the client waited beyond the handler's own init (its module's start to the
        # end of INIT; the rest of REPORT's Init Duration is the runtime starting) and the invocation's Duration
        handler_init = ph.get("total_ms", init_ms)
        if pd.notna(service) and pd.notna(handler_init) and pd.notna(duration):
            platform.append(max(0.0, float(service) - float(handler_init) - float(duration)))
        if pd.notna(init_ms):
            init.append(float(init_ms))
        if pd.notna(duration):
            first_req.append(float(duration))
        if ph:
            runtime = ph.get("runtime_import_ms", 0.0)
            imports.append(ph.get("module_import_ms", 0.0) + ph.get("inference_import_ms", 0.0) + runtime)
            if "weight_load_ms" in ph:
                weights.append(max(0.0, ph["weight_load_ms"] - runtime))
            if "first_inference_ms" in ph:
                first_inf.append(ph["first_inference_ms"])
    out.phases = {
        "instance launch": None,
        "provisioning": None,
        "environment / process start": _median(platform),
        "imports": _median(imports),
        "weights": _median(weights),
        "first inference": _median(first_inf),
        "first request": _median(first_req),
    }
    out.init_report_ms = _median(init)
    if restores:
        out.notes.append(
            f"SnapStart: {len(restores)} of {len(rows)} cold starts restored a snapshot (REPORT Restore Duration "
            f"median {_median(restores):.0f} ms, in the environment / process start); their imports, weights and "
            "warm-up inference ran once at publish, not per cold start"
        )
    if not imports and not restores:
        out.notes.append("the function's answers carried no init phases (only REPORT's Init Duration)")


def _server_phases(session: Session, rows: pd.DataFrame, out: ColdStartBreakdown) -> None:
    facts = session.target_facts(out.target)
    start, imports, weights, first_req = [], [], [], []
    for _, row in rows.iterrows():
        ph = parse_phases(row.get("cold_phases"))
        if pd.notna(row.get("start_ms")):
            start.append(float(row["start_ms"]))
        load = ph.get("model_load_ms", row.get("init_ms"))
        imp = ph.get("import_ms")
        if imp is not None:
            imports.append(imp)
        if load is not None and pd.notna(load):
            weights.append(max(0.0, float(load) - (imp or 0.0)))
        if pd.notna(row.get("service_ms")):
            first_req.append(float(row["service_ms"]))
    launch = facts.get("launch_s")
    provision = facts.get("provision_s")
    out.phases = {
        "instance launch": float(launch) * 1000.0 if launch else None,
        "provisioning": float(provision) * 1000.0 if provision else None,
        "environment / process start": _median(start),
        "imports": _median(imports),
        "weights": _median(weights),
        "first inference": None,
        "first request": _median(first_req),
    }
    if launch is None and provision is None:
        out.notes.append("no instance launch or provisioning (a process on this machine)")


def cold_starts(session: Session) -> list[ColdStartBreakdown]:
    """One breakdown per target with cold requests (functions first)."""
    out = []
    reqs = session.requests
    for name in session.target_kinds():
        rows = reqs[(reqs["target"] == name) & reqs["cold"] & (reqs["status"] == "ok")]
        if not len(rows):
            continue
        model = billing_model(session.target_facts(name), reqs[reqs["target"] == name])
        item = ColdStartBreakdown(target=name, model=model, cold_requests=len(rows))
        if model == FUNCTION:
            _function_phases(rows, item)
        else:
            _server_phases(session, rows, item)
        out.append(item)
    out.sort(key=lambda b: (b.model != FUNCTION, b.target))
    return out


def table(items: list[ColdStartBreakdown]) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of text cells: one row per phase, one column per target, then the totals."""
    header = ["phase"] + [f"{b.target} ({b.model}, {b.cold_requests} cold)" for b in items]
    rows = []
    for phase in PHASES:
        cells = [phase]
        for b in items:
            v = b.phases.get(phase)
            cells.append("-" if v is None else f"{v:,.0f} ms")
        rows.append(cells)
    rows.append(["total"] + [f"{b.total_ms:,.0f} ms" for b in items])
    if any(b.init_report_ms is not None for b in items):
        rows.append(
            ["(REPORT Init Duration)"]
            + [f"{b.init_report_ms:,.0f} ms" if b.init_report_ms is not None else "-" for b in items]
        )
    return header, rows


def lines(items: list[ColdStartBreakdown]) -> list[str]:
    """The side-by-side in words (one line per target) for the headless summary and the desk."""
    out = []
    for b in items:
        parts = [f"{p} {v / 1000:.2f} s" for p, v in b.phases.items() if v is not None]
        out.append(f"Cold start of {b.target} ({b.model}): {b.total_ms / 1000:.2f} s = " + " + ".join(parts) + ".")
    return out
