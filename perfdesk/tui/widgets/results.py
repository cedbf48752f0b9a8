"""Results table: trials.csv summaries (p50/p90/p99, throughput, errors, cold starts) per target and level,
grouped so that the targets of one trial and level sit next to each other; under it, what each memory sweep found
(the smallest memory that works)."""

from __future__ import annotations

from rich.markup import escape
from rich.text import Text
from textual.widgets import DataTable, Static

from perfdesk.controllers.memory_fit import memory_fits
from perfdesk.controllers.results import LEVEL_OUT_OF_MEMORY
from perfdesk.controllers.stats import percentile_text
from perfdesk.tui.chart_data import num
from perfdesk.tui.fmt import fmt, level_text

COLUMNS = ("trial", "level", "target", "status", "ok", "err", "thr/s", "p50", "p90", "p99", "max", "cold")
STATUS_STYLE = {
    "failed": "bold red",
    "interrupted": "yellow",
    "skipped": "yellow",
    "completed": "green",
    LEVEL_OUT_OF_MEMORY: "magenta",
}


def _same(a: dict | None, b: dict) -> bool:
    """Two summaries alike, NaN equal to NaN (a summary's missing percentiles are NaN)."""
    if a is None or a.keys() != b.keys():
        return False
    for k, x in a.items():
        y = b[k]
        if x != y and not (isinstance(x, float) and isinstance(y, float) and x != x and y != y):
            return False
    return True


class ResultsTable(DataTable):
    """Summaries come down through :meth:`add_summaries`; a rerun of a trial x target x level replaces its row."""

    def __init__(self, *args, trial_order: list[str] | None = None, **kwargs) -> None:
        kwargs.setdefault("zebra_stripes", True)
        kwargs.setdefault("cursor_type", "row")
        super().__init__(*args, **kwargs)
        self._rows: dict[tuple, dict] = {}
        self.trial_order = trial_order or []

    def on_mount(self) -> None:
        for col in COLUMNS:
            self.add_column(col, key=col)

    def _sort_key(self, key: tuple):
        trial, level, target = key
        order = self.trial_order.index(trial) if trial in self.trial_order else len(self.trial_order)
        lv = num(level)
        return (order, trial, lv if lv is not None else -1.0, str(level), target)

    def add_summaries(self, summaries: list[dict]) -> None:
        if not summaries:
            return
        changed = False
        for s in summaries:
            key = (str(s.get("trial", "")), level_text(s.get("level")), str(s.get("target", "")))
            if not _same(self._rows.get(key), s):
                self._rows[key] = s
                changed = True
        if changed:  # a refresh with nothing new leaves the table as it is (no flicker, no re-measured columns)
            self._redraw()

    def _redraw(self) -> None:
        self.clear()
        for key in sorted(self._rows, key=self._sort_key):
            s = self._rows[key]
            err = sum(int(num(s.get(c)) or 0) for c in ("errors", "timeouts", "throttled", "dropped"))
            n = s.get("latency_samples")
            status = str(s.get("status", ""))
            self.add_row(
                key[0],
                key[1],
                key[2],
                Text(status, style=STATUS_STYLE.get(status, "")),
                fmt(s.get("ok"), 0),
                str(err),
                fmt(s.get("throughput_rps")),
                # failures count as slower than any success; '*': fewer samples than the percentile needs
                percentile_text(s.get("p50_ms"), n, 50),
                percentile_text(s.get("p90_ms"), n, 90),
                percentile_text(s.get("p99_ms"), n, 99),
                fmt(s.get("max_ms")),
                fmt(s.get("cold_starts"), 0),
                key="|".join(key),
            )

    @property
    def summaries(self) -> list[dict]:
        return [self._rows[k] for k in sorted(self._rows, key=self._sort_key)]


class MemoryFitLine(Static):
    """One line per memory sweep: ``fn on wl/memory: smallest memory that works: 1,536 MB; out of memory at
    1,024 MB``. Hidden while no sweep has a level; fed the same summaries as the table beside it."""

    def on_mount(self) -> None:
        self.display = False

    def show(self, summaries: list[dict]) -> None:
        lines = [fit.line for fit in memory_fits(summaries)]
        self.display = bool(lines)
        self.update("\n".join(f"[magenta]memory sweep[/] {escape(line)}" for line in lines))
