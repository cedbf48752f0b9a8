"""`perfdesk report SESSION`: one self-contained HTML file (charts inlined as base64 PNG) from a session folder."""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from perfdesk.controllers.memory_fit import MemoryFit, memory_fits
from perfdesk.verdict import words
from perfdesk.verdict.cost import BreakEven, PriceBook, TrialCost, break_even, trial_costs
from perfdesk.verdict.paradigms import paradigms, paradigms_chart
from perfdesk.verdict.report import charts
from perfdesk.verdict.session_data import Session, load_session
from perfdesk.verdict.slo import capacities

#: (section id, title, what to say when the session has nothing to draw)
SECTIONS = [
    ("latency", "Latency distributions", "no successful sustained request in this session"),
    ("throughput", "Throughput against concurrency", "no concurrency trial in this session"),
    ("cold", "Cold against warm", "no cold start in this session"),
    ("memory", "Memory sweep", "no memory trial in this session"),
    ("capacity", "Capacity under the SLO", "no capacity trial in this session"),
    ("cost", "Cost per 1,000 inferences", "no priced trial (see the notes under Break-even)"),
    ("breakeven", "Break-even", "no target could be priced"),
    ("paradigms", "Paradigms: monthly cost against traffic, cold start and p99", "no target could be priced"),
]

CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
h1{font-size:1.5em} h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;font-size:12px;margin:.5em 0} td,th{border:1px solid #ddd;padding:2px 6px}
th{background:#f3f3f3} td.n{text-align:right;font-variant-numeric:tabular-nums}
.missing{color:#888;font-style:italic} .verdict li{margin:.3em 0} pre{background:#f6f6f6;padding:1em;overflow:auto;
font-size:12px} img{max-width:100%} .note{color:#555;font-size:13px}
"""


def _e(value: Any) -> str:
    return html.escape(str(value))


def _money(value: float | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"${value:,.{digits}f}" if value >= 0.01 else f"${value:.3g}"


def _img(png: bytes | None, alt: str, missing: str) -> str:
    if png is None:
        return f'<p class="missing">{_e(missing)}</p>'
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def _table(frame: pd.DataFrame) -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in frame.columns)
    body = []
    for _, row in frame.iterrows():
        cells = []
        for value in row:
            if isinstance(value, float):
                text = "" if math.isnan(value) else f"{value:.4g}"
                cells.append(f'<td class="n">{_e(text)}</td>')
            else:
                cells.append(f"<td>{_e('' if value is None else value)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def session_memory_fits(session: Session) -> list[MemoryFit]:
    """What each memory sweep of the session found (from trials.csv)."""
    return memory_fits(session.trials.to_dict("records")) if len(session.trials) else []


def verdict_lines(session: Session, costs: list[TrialCost], result: BreakEven) -> list[str]:
    """The answer in a few sentences: who is faster warm and cold, who is cheaper at which rate, and the smallest
    memory that works for each function swept."""
    lines = []
    rows = session.requests[session.requests["status"] == "ok"]
    warm = rows[(rows["trial_kind"] == "warm") & ~rows["cold"]].groupby("target")["latency_ms"].median()
    if len(warm):
        ranked = ", ".join(f"{t} {v:.1f} ms" for t, v in warm.sort_values().items())
        lines.append(f"Warm median latency: {ranked}.")
    cold = rows[rows["cold"]].groupby("target")["latency_ms"].median()
    if len(cold):
        lines.append(
            "First request after a fresh start (median): "
            + ", ".join(f"{t} {v / 1000:.2f} s" for t, v in cold.items())
            + "."
        )
    startup = charts._startup_ms(rows[rows["cold"]])
    if len(startup):
        lines.append(
            "Startup as the targets report it (start + init, median): "
            + ", ".join(f"{t} {v / 1000:.2f} s" for t, v in startup.items())
            + "."
        )
    for name, target in result.targets.items():
        if target.cost_per_1k_at_saturation_usd is not None:
            lines.append(
                f"{name}: {_money(target.cost_per_1k_at_saturation_usd, 5)} per 1k inferences when one "
                f"instance runs saturated at {target.saturation_rps:.3g} req/s "
                f"({_money(target.pricing.hourly_usd)}/h, {target.pricing.label})."
            )
        elif target.cost_per_request_usd is not None:
            lines.append(
                f"{name}: {_money(target.cost_per_request_usd * 1000, 5)} per 1k inferences "
                f"({target.pricing.memory_mb or '?'} MB {target.pricing.architecture}, cold-start share "
                f"{target.cold_start_fraction:.2%}, {target.cold_fraction_source}; {target.pricing.label})."
            )
    lines += words.verdict_lines(result)
    lines += [f"Memory sweep {fit.line}." for fit in session_memory_fits(session)]
    return lines


def render_report(session: Session | str | Path, book: PriceBook | None = None) -> str:
    """The report of a session as one HTML string."""
    session = session if isinstance(session, Session) else load_session(session)
    book = book or PriceBook.for_session(session)
    costs = trial_costs(session, book)
    result = break_even(session, book)
    # EC2 server, on-demand Lambda, SnapStart Lambda and Managed Instances: one chart, one table (paradigms.py)
    across = paradigms(session, book)
    makers: dict[str, Callable[[], bytes | None]] = {
        "latency": lambda: charts.latency_cdf(session),
        "throughput": lambda: charts.throughput_vs_concurrency(session),
        "cold": lambda: charts.cold_vs_warm(session),
        "memory": lambda: charts.memory_sweep(session, costs),
        "capacity": lambda: charts.capacity_chart(session),
        "cost": lambda: charts.cost_per_1k(costs),
        "breakeven": lambda: charts.break_even_chart(result),
        "paradigms": lambda: paradigms_chart(across),
    }
    m = session.manifest
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>perfdesk report {_e(session.session_id)}"
        f"</title><style>{CSS}</style></head><body>",
        f"<h1>perfdesk report: {_e(session.session_id)}</h1>",
        f"<p class='note'>Session folder {_e(session.path)}; started {_e(m.get('started', '?'))}, finished "
        f"{_e(m.get('finished', '?'))}; {len(session.requests)} requests. Prices as of {_e(book.as_of)} "
        f"({_e(book.table.get('source', ''))})</p>",
        "<section id='verdict'><h2>Verdict</h2><ul class='verdict'>"
        + "".join(f"<li>{_e(line)}</li>" for line in verdict_lines(session, costs, result))
        + "</ul></section>",
    ]
    for key, title, missing in SECTIONS:
        parts.append(f"<section id='{key}'><h2>{_e(title)}</h2>{_img(makers[key](), title, missing)}")
        if key == "memory" and (fits := session_memory_fits(session)):
            parts.append("<ul class='memory-fit'>" + "".join(f"<li>{_e(f.line)}</li>" for f in fits) + "</ul>")
        if key == "capacity" and (caps := capacities(session)):
            parts.append("<ul class='capacity'>" + "".join(f"<li>{_e(c.line())}</li>" for c in caps.values()) + "</ul>")
        if key == "cost":
            parts.append(
                _table(
                    pd.DataFrame(
                        [
                            {
                                "target": c.target,
                                "trial": c.trial,
                                "level": c.level,
                                "model": c.model + (" (EMULATION)" if c.emulation else ""),
                                "ok": c.ok,
                                "duration_s": c.duration_s,
                                "cost_usd": c.cost_usd,
                                "per_1k_usd": c.cost_per_1k_usd,
                                "gb_seconds": c.gb_seconds,
                                "billed_init_ms": c.billed_init_ms,
                                "note": c.note,
                            }
                            for c in costs
                        ]
                    )
                )
            )
        if key == "paradigms":
            parts.append(_table(across.table()) + "<ul class='note'>")
            parts.append("".join(f"<li>{_e(n)}</li>" for n in across.notes) + "</ul>")
        if key == "breakeven":
            parts.append(
                _table(
                    pd.DataFrame(
                        [
                            {
                                "server": c.server,
                                "function": c.function,
                                "break_even_rps": c.break_even_rps,
                                "always_cheaper_from_rps": c.server_always_cheaper_from_rps,
                                "monthly_usd_at_break_even": c.monthly_usd_at_break_even,
                                "function_cold_share": c.function_cold_start_fraction,
                                "cold_share_source": c.cold_fraction_source,
                                "equal_service": c.equal_service,
                                "server_basis": c.server_basis,
                                "note": c.note,
                            }
                            for c in result.crossovers
                        ]
                    )
                )
                if result.crossovers
                else ""
            )
            assumptions = [
                f"{result.hours_per_month:g} hours a month; servers: ceil(rate / the rate one instance carries) "
                "instances at the hourly price, that rate being its capacity under the SLO where a capacity trial "
                "measured it (equal service), else the highest throughput over the concurrency levels (whatever "
                "the latency there); functions: rate x expected cost per request (warm and cold mixed, the cold "
                "share measured at the capacity rate where there is one); no free tier, data transfer or API "
                "Gateway."
            ]
            assumptions += [
                f"{name}: one instance carries {t.per_instance_rps:.3g} req/s ({t.basis})"
                for name, t in result.targets.items()
                if t.pricing.model == "server" and t.per_instance_rps
            ]
            assumptions += words.emulation_lines(result) + result.notes
            parts.append("<ul class='note'>" + "".join(f"<li>{_e(a)}</li>" for a in assumptions) + "</ul>")
        parts.append("</section>")
    trials = session.trials.copy()
    if len(trials):
        per_1k = {(c.workload, c.trial, c.target, c.level): c.cost_per_1k_usd for c in costs}
        trials["cost_per_1k_usd"] = [
            per_1k.get(k) for k in zip(trials["workload"], trials["trial"], trials["target"], trials["level"])
        ]
        keep = [
            c
            for c in (
                "workload",
                "trial",
                "trial_kind",
                "target",
                "level",
                "status",
                "loop",
                "count",
                "ok",
                "errors",
                "cold_starts",
                "duration_s",
                "throughput_rps",
                "p50_ms",
                "p90_ms",
                "p99_ms",
                "max_ms",
                "mean_ms",
                "cost_per_1k_usd",
                "note",
            )
            if c in trials.columns
        ]
        trials_html = _table(trials[keep])
    else:
        trials_html = "<p class='missing'>no trials.csv in this session</p>"
    from perfdesk.verdict.report.traffic_html import traffic_sections

    parts += traffic_sections(session, book)
    parts.append(f"<section id='trials'><h2>Trials</h2>{trials_html}</section>")
    parts.append(
        f"<section id='manifest'><h2>Manifest</h2><pre>{_e(json.dumps(m, indent=2, default=str))}"
        "</pre></section></body></html>"
    )
    return "\n".join(parts)


def write_report(session_dir: str | Path, output: str | Path | None = None) -> Path:
    """Write the report (default: SESSION/report.html) and return its path."""
    session = load_session(session_dir)
    out = Path(output) if output else session.path / "report.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_report(session), encoding="utf-8")
    return out
