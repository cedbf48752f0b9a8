"""The report's sections of the traffic verdict: a month of the profile's ``[traffic]`` per target, and the cold
starts side by side (see :mod:`perfdesk.verdict.traffic` and :mod:`perfdesk.verdict.coldstarts`)."""

from __future__ import annotations

import html

from perfdesk.verdict import coldstarts
from perfdesk.verdict.cost import PriceBook
from perfdesk.verdict.report import traffic_charts
from perfdesk.verdict.session_data import Session
from perfdesk.verdict.traffic import project, projection_lines


def _e(value) -> str:
    return html.escape(str(value))


def _img(png: bytes | None, alt: str, missing: str) -> str:
    from perfdesk.verdict.report.html import _img as img

    return img(png, alt, missing)


def _cells(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def traffic_sections(session: Session, book: PriceBook) -> list[str]:
    """HTML of the two sections (each says why it is empty when it is)."""
    parts: list[str] = []
    try:
        verdict = project(session, book)
    except Exception as exc:  # noqa: BLE001 - a moved trace file, a malformed CSV: said in the report
        verdict = None
        parts.append(
            "<section id='traffic'><h2>Your traffic, a month of it</h2>"
            f"<p class='missing'>cannot project the traffic: {_e(type(exc).__name__)}: {_e(exc)}</p></section>"
        )
    if verdict is not None:  # None: no [traffic] in the profile, nothing to project
        parts.append("<section id='traffic'><h2>Your traffic, a month of it</h2>")
        parts.append("<ul class='verdict'>" + "".join(f"<li>{_e(x)}</li>" for x in projection_lines(verdict)))
        parts.append("</ul>")
        parts.append(_img(traffic_charts.traffic_month(session, verdict), "traffic", "nothing priced"))
        header = ["target", "billing", "USD/month", "p99 ms", "cold share", "servers", "autoscaled USD/month"]
        rows = [
            [
                p.target + (" (emulation)" if p.emulated else ""),
                p.model,
                "n/a" if p.monthly_usd is None else f"{p.monthly_usd:,.2f}",
                "n/a" if p.p99_ms is None else f"{p.p99_ms:,.1f}",
                "-" if p.cold_share is None else f"{p.cold_share:.2%}",
                "-" if p.servers is None else str(p.servers),
                "-" if p.autoscaled_monthly_usd is None else f"{p.autoscaled_monthly_usd:,.2f}",
            ]
            for p in verdict.projections
        ]
        parts.append(_cells(header, rows))
        curves = [
            [name, c.source] + [f"{g:g} s: {p:.0%} of {n}" for g, p, n in zip(c.gaps_s, c.p_cold, c.samples)]
            for name, c in verdict.eviction.items()
        ]
        if curves:
            parts.append("<p class='note'>Eviction curves (P(cold) after an idle gap):</p>")
            parts.append("<ul class='note'>" + "".join(f"<li>{_e(', '.join(c))}</li>" for c in curves) + "</ul>")
        parts.append("</section>")
    items = coldstarts.cold_starts(session)
    parts.append("<section id='coldstarts'><h2>Cold starts side by side</h2>")
    if items:
        header, rows = coldstarts.table(items)
        parts.append(_cells(header, rows))
        notes = [f"{b.target}: {n}" for b in items for n in b.notes]
        if notes:
            parts.append("<ul class='note'>" + "".join(f"<li>{_e(n)}</li>" for n in notes) + "</ul>")
    parts.append(_img(traffic_charts.cold_start_phases(items), "cold start phases", "no cold start in this session"))
    parts.append("</section>")
    return parts
