"""Trials pane: the profile's trials with live progress, above the results table."""

from __future__ import annotations

import time
from dataclasses import dataclass

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from perfdesk.tui.fmt import level_text
from perfdesk.tui.widgets.results import STATUS_STYLE, MemoryFitLine, ResultsTable

COMMON = {"kind", "name", "max_error_pct", "late_threshold_ms"}


def params_text(spec) -> str:
    """The parameters that tell trials apart, short: ``levels=[1, 2, 4] duration_s=3.0``."""
    data = spec.model_dump(exclude=COMMON, exclude_none=True)
    return " ".join(f"{k}={v}" for k, v in data.items())


@dataclass
class Progress:
    target: str
    level: object
    expected: int | None
    duration_s: float | None
    started: float
    done: int = 0
    errors: int = 0
    status: str = "running"

    def text(self, now: float) -> Text:
        head = f"{self.target} @{level_text(self.level)} "
        if self.status != "running":
            return Text(f"{head}{self.status} ({self.done} req)", style=STATUS_STYLE.get(self.status, ""))
        if self.expected:
            frac = self.done / self.expected
        elif self.duration_s:
            frac = (now - self.started) / self.duration_s
        else:
            frac = 0.0
        frac = max(0.0, min(1.0, frac))
        bar = "█" * int(frac * 10) + "░" * (10 - int(frac * 10))
        rate = self.done / max(1e-6, now - self.started)
        err = f" [{self.errors} err]" if self.errors else ""
        return Text(f"{head}{bar} {frac:4.0%} {self.done} req {rate:.0f}/s{err}", style="yellow")


class TrialsPane(Vertical):
    """Trials (cursor selects the one to run or edit) and the results table."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.progress: dict[str, Progress] = {}

    def compose(self) -> ComposeResult:
        yield Static("Trials  [dim]r run · a run all · e edit · s stop[/]", classes="pane-title")
        yield DataTable(id="trials-table", cursor_type="row", zebra_stripes=True)
        yield Static("Results  [dim](ms; random weights time like trained ones)[/]", classes="pane-title")
        yield ResultsTable(id="results")
        yield MemoryFitLine(id="memory-fit")

    def on_mount(self) -> None:
        table = self.query_one("#trials-table", DataTable)
        table.add_column("trial", key="trial")
        table.add_column("kind", key="kind")
        table.add_column("progress", key="progress")
        table.add_column("parameters", key="params")

    def set_trials(self, specs: list) -> None:
        table = self.query_one("#trials-table", DataTable)
        table.clear()
        for spec in specs:
            table.add_row(spec.name, spec.kind, "", params_text(spec), key=spec.name)
        self.query_one(ResultsTable).trial_order = [s.name for s in specs]

    def update_trial(self, spec) -> None:
        table = self.query_one("#trials-table", DataTable)
        if spec.name in table.rows:
            table.update_cell(spec.name, "params", params_text(spec), update_width=True)

    def trial_started(self, event) -> None:
        self.progress[event.trial] = Progress(event.target, event.level, event.expected, event.duration_s, time.time())

    def rows_done(self, rows: list[dict]) -> None:
        for row in rows:
            p = self.progress.get(str(row.get("trial")))
            if p is not None and p.status == "running":
                p.done += 1
                if row.get("status") != "ok":
                    p.errors += 1

    def trials_finished(self, summaries: list[dict]) -> None:
        for s in summaries:
            p = self.progress.get(str(s.get("trial")))
            if p is not None:
                p.status = str(s.get("status", "done"))
        results = self.query_one(ResultsTable)
        results.add_summaries(summaries)
        if any(s.get("trial_kind") == "memory" for s in summaries):
            self.query_one(MemoryFitLine).show(results.summaries)

    def refresh_progress(self) -> None:
        table = self.query_one("#trials-table", DataTable)
        now = time.time()
        for name, p in self.progress.items():
            if name in table.rows:
                table.update_cell(name, "progress", p.text(now), update_width=True)

    @property
    def selected(self) -> str | None:
        table = self.query_one("#trials-table", DataTable)
        if not table.row_count:
            return None
        return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
