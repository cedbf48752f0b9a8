"""Live logs pane: every target's stream and perfdesk's own steps, filterable by target, bounded in memory."""

from __future__ import annotations

import time
from collections import deque

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import RichLog, Select, Static

from perfdesk.controllers.events import LogLine

KEEP_LINES = 5_000  # kept for re-filtering
SHOWN_LINES = 2_000  # drawn in the log widget
ALL = "all"


class LogsPane(Vertical):
    """Lines come down in batches (:meth:`add_lines`); the filter re-draws from the bounded store."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._store: deque[LogLine] = deque(maxlen=KEEP_LINES)
        self._sources: list[str] = []
        self.filter = ALL

    def compose(self) -> ComposeResult:
        with Horizontal(classes="pane-head"):
            yield Static("Logs  [dim]l next filter[/]", classes="pane-title")
            yield Select([("all targets", ALL)], value=ALL, allow_blank=False, id="log-filter", compact=True)
        yield RichLog(id="log", max_lines=SHOWN_LINES, wrap=False, markup=False, auto_scroll=True)

    def set_sources(self, names: list[str]) -> None:
        self._sources = list(dict.fromkeys(["perfdesk", *names]))
        self.query_one(Select).set_options([("all targets", ALL)] + [(n, n) for n in self._sources])
        self.query_one(Select).value = self.filter if self.filter in self._sources else ALL

    @staticmethod
    def _line_text(line: LogLine) -> Text:
        stamp = time.strftime("%H:%M:%S", time.localtime(line.time or time.time()))
        text = Text(f"{stamp} ", style="dim")
        text.append(f"{line.target}", style="bold cyan")
        text.append(f":{line.stream} ", style="dim")
        text.append(line.line, style="red" if "failed" in line.line or "error" in line.line.lower() else "")
        return text

    def _shown(self, line: LogLine) -> bool:
        return self.filter == ALL or line.target == self.filter

    def add_lines(self, lines: list[LogLine]) -> None:
        if not lines:
            return
        self._store.extend(lines)
        log = self.query_one(RichLog)
        for line in lines[-SHOWN_LINES:]:
            if self._shown(line):
                log.write(self._line_text(line))

    def set_filter(self, value: str) -> None:
        self.filter = value
        if self.query_one(Select).value != value:
            self.query_one(Select).value = value
        log = self.query_one(RichLog)
        log.clear()
        shown = [line for line in self._store if self._shown(line)][-SHOWN_LINES:]
        for line in shown:
            log.write(self._line_text(line))

    def next_filter(self) -> None:
        options = [ALL] + self._sources
        i = options.index(self.filter) if self.filter in options else 0
        self.set_filter(options[(i + 1) % len(options)])

    def on_select_changed(self, event: Select.Changed) -> None:
        event.stop()
        if event.value != self.filter and event.value is not Select.BLANK:
            self.set_filter(str(event.value))

    @property
    def stored(self) -> int:
        return len(self._store)
