"""The verdict of one session folder, computed for the TUI's verdict screen (plain data, no widgets).

:func:`compute_verdict` reads the folder's CSVs (the live session's are flushed as rows complete, so it works mid-run)
and runs the cost model (:mod:`perfdesk.verdict.cost`): cost per 1,000 inferences per trial x target x level,
the break-even between every server and function in words, and the monthly cost curves. It blocks on file reads:
call it from a thread worker. It never raises: what went wrong is in :attr:`Verdict.error`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from perfdesk.controllers.memory_fit import memory_fits
from perfdesk.verdict import words
from perfdesk.verdict.cost import BreakEven, PriceBook, TrialCost, break_even, trial_costs
from perfdesk.verdict.session_data import SessionError, load_session

#: Columns of the verdict table, in order.
COLUMNS = ("trial", "level", "target", "billing", "ok", "seconds", "cost $", "$ / 1k inf", "note")


@dataclass
class Verdict:
    """What the verdict screen shows. ``error`` set: nothing else is (the message says what to do)."""

    path: Path
    costs: list[TrialCost] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)  # the break-even in words, then notes
    curves: dict[str, tuple[list[float], list[float]]] = field(default_factory=dict)  # target -> (req/s, $/month)
    break_even_rps: list[float] = field(default_factory=list)  # marks on the chart
    prices_as_of: str = ""
    #: what the chart compares: at equal service (capacity under the SLO) or servers at saturation
    basis: str = ""
    error: str = ""

    def table_rows(self) -> list[tuple[str, ...]]:
        """One row of text cells per trial x target x level (see :data:`COLUMNS`)."""
        return [
            (
                c.trial,
                c.level,
                c.target,
                c.model + (" (emulation)" if c.emulation else ""),
                str(c.ok),
                _num(c.duration_s, 2),
                _usd(c.cost_usd),
                _usd(c.cost_per_1k_usd),
                c.note if c.cost_usd is None else "",
            )
            for c in self.costs
        ]


def _num(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _usd(value: float | None) -> str:
    """Dollars with 4 significant figures (costs per trial run from $1e-7 to dollars)."""
    return "-" if value is None else f"{value:.4g}"


def verdict_lines(result: BreakEven) -> list[str]:
    """The break-even in words (:func:`perfdesk.verdict.words.verdict_lines`, shared with the headless summary and
    the report)."""
    return words.verdict_lines(result)


def compute_verdict(path: str | Path) -> Verdict:
    """Read ``path`` (a session folder) and compute its verdict; errors become :attr:`Verdict.error`."""
    folder = Path(path)
    out = Verdict(path=folder)
    try:
        session = load_session(folder)
        if not len(session.requests):
            out.error = (
                f"no requests yet in {folder / 'requests.csv'}: run a trial (r or a), then press v (or r here) again"
            )
            return out
        book = PriceBook.for_session(session)
        out.costs = trial_costs(session, book)
        result = break_even(session, book)
    except SessionError as exc:
        out.error = str(exc)
        return out
    except Exception as exc:  # noqa: BLE001 - bad [prices] (pydantic) or a malformed CSV: say so, keep the desk up
        out.error = f"cannot compute the verdict of {folder}: {type(exc).__name__}: {exc}"
        return out
    out.lines = verdict_lines(result)
    if len(session.trials):
        out.lines += [f"Memory sweep {fit.line}." for fit in memory_fits(session.trials.to_dict("records"))]
    from perfdesk.verdict.traffic import cold_start_lines, safe_projection_lines

    out.lines += safe_projection_lines(session, book) + cold_start_lines(session)
    out.prices_as_of = result.prices_as_of
    for curve in result.curves:
        pairs = [(r, m) for r, m in zip(result.rates_rps, curve.monthly_usd) if m is not None]
        if pairs:
            out.curves[curve.target] = ([p[0] for p in pairs], [p[1] for p in pairs])
    out.break_even_rps = [c.break_even_rps for c in result.crossovers if c.break_even_rps]
    equal = any(c.equal_service for c in result.crossovers)
    emulated = [name for name, t in result.targets.items() if t.pricing.emulation]
    out.basis = ("at equal service (capacity under the SLO)" if equal else "servers at saturation throughput") + (
        f"; EMULATION: {', '.join(emulated)}" if emulated else ""
    )
    return out
