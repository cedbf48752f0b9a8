"""The verdict of one session folder: cost per 1,000 inferences, the break-even in words, monthly cost against rate.

The figures come from the cost model (:mod:`perfdesk.verdict.cost`) on the folder's CSVs, computed in a thread
worker (:func:`perfdesk.tui.verdict_data.compute_verdict`); the screen only draws the result. ``r`` recomputes,
which on the live session picks up the rows written since.
"""

from __future__ import annotations

import math
from pathlib import Path

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static
from textual_plotext import PlotextPlot

from perfdesk.tui.messages import VerdictComputed
from perfdesk.tui.verdict_data import COLUMNS, Verdict, compute_verdict


class VerdictScreen(Screen):
    """The verdict of ``path``; ``live`` marks the desk's own session (still being written)."""

    BINDINGS = [
        Binding("escape,v", "app.pop_screen", "Back"),
        Binding("r", "recompute", "Recompute"),
    ]

    def __init__(self, path: Path, *, live: bool = False) -> None:
        super().__init__()
        self.path = Path(path)
        self.live = live
        self.verdict: Verdict | None = None  # the latest result shown
        self.computing = False

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="verdict-box"):
            yield Static("", id="verdict-text", classes="verdict-text")
            yield DataTable(id="verdict-table", zebra_stripes=True, cursor_type="row")
            yield PlotextPlot(id="verdict-plot", classes="chart")
        yield Footer()

    def on_mount(self) -> None:
        self.title = "verdict"
        self.sub_title = f"{self.path.name}{' (live session)' if self.live else ' (read-only)'}"
        table = self.query_one(DataTable)
        for col in COLUMNS:
            table.add_column(col, key=col)
        self.action_recompute()

    def action_recompute(self) -> None:
        if self.computing:
            return
        self.computing = True
        self.query_one("#verdict-text", Static).update(f"[dim]computing the verdict of {self.path} ...[/]")
        self.compute()

    @work(thread=True, exit_on_error=False, group="verdict")
    def compute(self) -> None:
        self.post_message(VerdictComputed(self.path, compute_verdict(self.path)))

    def on_verdict_computed(self, message: VerdictComputed) -> None:
        self.computing = False
        verdict: Verdict = message.verdict
        self.verdict = verdict
        text = self.query_one("#verdict-text", Static)
        table = self.query_one(DataTable)
        table.clear()
        plot = self.query_one(PlotextPlot)
        plt = plot.plt
        plt.clear_figure()
        if verdict.error:
            text.update(f"[red]{_escape(verdict.error)}[/]")
            plt.title("Monthly cost against request rate: nothing to draw yet")
            plot.refresh()
            return
        text.update("\n".join(_escape(line) for line in verdict.lines))
        for i, row in enumerate(verdict.table_rows()):
            # Text cells: a DataTable reads a str cell as markup, and notes quote keys such as [prices.targets.x]
            table.add_row(*(Text(cell) for cell in row), key=str(i))
        self._draw(plt, verdict)
        plot.refresh()

    def _draw(self, plt, verdict: Verdict) -> None:
        if not verdict.curves:
            plt.title("Monthly cost against request rate: no priced target (see the notes above)")
            return
        plt.title(f"Monthly cost (USD) against sustained request rate, {verdict.basis}")
        plt.xlabel("requests/s (log10)")
        for target, (rates, monthly) in verdict.curves.items():
            # log10 by hand: plotext's log scale drops the labels of most ticks at this width
            plt.plot([math.log10(r) for r in rates], monthly, label=target, marker="braille")
        for rate in verdict.break_even_rps:
            plt.vline(math.log10(rate), "red")
        lows = [math.log10(r) for rates, _ in verdict.curves.values() for r in rates]
        ticks = list(range(math.floor(min(lows)), math.ceil(max(lows)) + 1))
        plt.xticks(ticks, [f"{10**t:g}" for t in ticks])


def _escape(text: str) -> str:
    """Rich markup off: notes quote profile keys such as [prices.targets.server]."""
    return text.replace("[", r"\[")
