"""Saved sessions: open one read-only (its CSVs into the results table and the charts), compare two side by side,
export CSVs and a combined CSV (the same as ``perfdesk export``)."""

from __future__ import annotations

import json
from pathlib import Path

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, Footer, Header, Input, SelectionList, Static

from perfdesk.tui.chart_data import ChartData, read_session
from perfdesk.tui.messages import SessionExported, SessionLoaded
from perfdesk.tui.screens.verdict import VerdictScreen
from perfdesk.tui.widgets.charts import ChartsPane
from perfdesk.tui.widgets.results import MemoryFitLine, ResultsTable
from perfdesk.verdict.export import export_sessions


def find_sessions(roots: list[Path], limit: int = 50) -> list[Path]:
    """Session folders (with a requests.csv) under the given folders, newest first."""
    found = {p.parent.resolve() for root in roots if root.is_dir() for p in root.glob("*/requests.csv")}
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)[:limit]


def session_status(path: Path) -> str:
    try:
        return str(json.loads((path / "manifest.json").read_text()).get("status", ""))
    except (OSError, ValueError):
        return ""


class OpenSessionScreen(ModalScreen):
    """Pick one session to view or two to compare; dismisses with the list of folders, or None."""

    BINDINGS = [Binding("escape", "cancel", "Cancel"), Binding("ctrl+o", "open", "Open")]

    def __init__(self, roots: list[Path], exclude: Path | None = None) -> None:
        super().__init__()
        self.sessions = [p for p in find_sessions(roots) if exclude is None or p != exclude.resolve()]

    def compose(self) -> ComposeResult:
        with Vertical(id="open-box", classes="dialog"):
            yield Static(
                "Open a session (select one to view, two to compare; space marks, ctrl+o opens)", classes="dialog-title"
            )
            yield SelectionList(
                *[(f"{p.name}  [dim]{session_status(p)}[/]", str(p)) for p in self.sessions], id="session-list"
            )
            yield Input(placeholder="or session folder path(s), space-separated", id="session-paths")
            yield Static("", id="open-error")
            with Horizontal(classes="buttons"):
                yield Button("Open (ctrl+o)", variant="primary", id="open")
                yield Button("Cancel (esc)", id="cancel")

    def on_mount(self) -> None:
        self.query_one(SelectionList if self.sessions else Input).focus()

    def action_cancel(self) -> None:
        self.dismiss(None)

    def action_open(self) -> None:
        typed = [Path(t).expanduser() for t in self.query_one("#session-paths", Input).value.split()]
        chosen = [Path(v) for v in self.query_one(SelectionList).selected] + typed
        if not chosen:
            lst = self.query_one(SelectionList)
            if lst.highlighted is not None and self.sessions:
                chosen = [self.sessions[lst.highlighted]]
        problems = [f"{p}: not a session folder (no requests.csv)" for p in chosen if not (p / "requests.csv").exists()]
        if not chosen or len(chosen) > 2 or problems:
            msg = "\n".join(problems) or ("choose one or two sessions" if not chosen else "choose at most two sessions")
            self.query_one("#open-error", Static).update(f"[red]{msg}[/]")
            return
        self.dismiss(chosen)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.action_open()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.action_open() if event.button.id == "open" else self.action_cancel()


class ExportScreen(ModalScreen):
    """Ask for a destination folder and export the sessions there (in a thread worker)."""

    BINDINGS = [Binding("escape", "close", "Close")]

    def __init__(self, sessions: list[Path], default_dest: Path) -> None:
        super().__init__()
        self.sessions = sessions
        self.default_dest = default_dest
        self.written: list[Path] = []

    def compose(self) -> ComposeResult:
        with Vertical(id="export-box", classes="dialog"):
            yield Static(
                f"Export {', '.join(p.name for p in self.sessions)}: each session's CSVs under "
                "DEST/<session>/, every request in DEST/combined.csv",
                classes="dialog-title",
            )
            yield Input(value=str(self.default_dest), id="export-dest")
            yield Static("", id="export-status")
            with Horizontal(classes="buttons"):
                yield Button("Export (enter)", variant="primary", id="export")
                yield Button("Close (esc)", id="close")

    def on_mount(self) -> None:
        self.query_one("#export-dest", Input).focus()

    def action_close(self) -> None:
        self.dismiss(self.written or None)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.start_export()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.start_export() if event.button.id == "export" else self.action_close()

    def start_export(self) -> None:
        dest = Path(self.query_one("#export-dest", Input).value.strip() or str(self.default_dest)).expanduser()
        self.query_one("#export-status", Static).update(f"exporting to {dest} ...")
        self.export(dest)

    @work(thread=True, exclusive=True, exit_on_error=False, group="export")
    def export(self, dest: Path) -> None:
        try:
            written = export_sessions(self.sessions, dest)
        except (OSError, ValueError) as exc:
            self.post_message(SessionExported(dest, [], f"{exc} (choose another folder)"))
            return
        self.post_message(SessionExported(dest, written))

    def on_session_exported(self, message: SessionExported) -> None:
        status = self.query_one("#export-status", Static)
        if message.error:
            status.update(f"[red]export failed: {message.error}[/]")
            return
        self.written = message.written
        status.update(f"[green]wrote {len(message.written)} files to {message.dest} (combined.csv included)[/]")


class SessionColumn(Vertical):
    """One saved session: its title, results table and charts."""

    def __init__(self, path: Path, index: int) -> None:
        super().__init__(classes="session-column")
        self.path = path
        self.index = index

    def compose(self) -> ComposeResult:
        yield Static(f"[b]{self.path.name}[/]  [dim]loading ...[/]", classes="pane-title session-title")
        yield ResultsTable(classes="session-results")
        yield MemoryFitLine(classes="memory-fit")
        yield ChartsPane(id=f"session-charts-{self.index}", classes="session-charts")

    def show(self, message: SessionLoaded) -> None:
        title = self.query_one(".session-title", Static)
        if message.error:
            title.update(f"[b]{self.path.name}[/]  [red]{message.error}[/]")
            return
        assert message.data is not None  # a SessionLoaded without an error has its data
        requests = sum(len(v) for v in message.data.samples.values())
        title.update(
            f"[b]{self.path.name}[/]  [dim]{message.status or 'no manifest'} · {requests} requests · "
            f"{len(message.summaries)} trial levels · read-only[/]"
        )
        self.query_one(ResultsTable).add_summaries(message.summaries)
        self.query_one(MemoryFitLine).show(message.summaries)
        self.query_one(ChartsPane).show(message.data)


class SessionScreen(Screen):
    """One session read-only, or two side by side."""

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("w", "export", "Export"),
        Binding("v", "verdict", "Verdict"),
        Binding("left_square_bracket", "prev_chart", "Prev chart"),
        Binding("right_square_bracket", "next_chart", "Next chart"),
    ]

    def __init__(self, paths: list[Path], export_root: Path) -> None:
        super().__init__()
        self.paths = [Path(p) for p in paths]
        self.export_root = export_root
        self.loaded: dict[Path, SessionLoaded] = {}

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="session-columns"):
            for i, path in enumerate(self.paths):
                yield SessionColumn(path, i)
        yield Footer()

    def on_mount(self) -> None:
        self.title = "compare sessions" if len(self.paths) > 1 else "session (read-only)"
        self.sub_title = " vs ".join(p.name for p in self.paths)
        for path in self.paths:
            self.load(path)

    @work(thread=True, exit_on_error=False, group="load-session")
    def load(self, path: Path) -> None:
        try:
            requests, trials = read_session(path)
            data = ChartData.from_frames(requests, trials)
            summaries = trials.to_dict("records") if trials is not None else []
        except (OSError, ValueError) as exc:
            self.post_message(SessionLoaded(path, error=str(exc)))
            return
        self.post_message(SessionLoaded(path, data, summaries, session_status(path)))

    def on_session_loaded(self, message: SessionLoaded) -> None:
        self.loaded[message.path] = message
        for column in self.query(SessionColumn):
            if column.path == message.path:
                column.show(message)

    def _tabs(self, step: int) -> None:
        for pane in self.query(ChartsPane):
            pane.cycle(step)

    def action_prev_chart(self) -> None:
        self._tabs(-1)

    def action_next_chart(self) -> None:
        self._tabs(1)

    def action_verdict(self) -> None:
        """The verdict of the session shown (of the left one when two are compared)."""
        self.app.push_screen(VerdictScreen(self.paths[0]))

    def action_export(self) -> None:
        name = "-vs-".join(p.name for p in self.paths)
        self.app.push_screen(ExportScreen(self.paths, self.export_root / name))
