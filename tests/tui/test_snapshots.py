"""SVG snapshots of the main screens, on deterministic content (recorded sessions under tests/tui/data).

Update after a deliberate change with ``pytest tests/tui/test_snapshots.py --snapshot-update`` and look at the SVGs.
"""

from __future__ import annotations

from pathlib import Path

from textual.app import App

from perfdesk.tui.app import PerfdeskApp
from perfdesk.tui.screens.help import HelpScreen
from perfdesk.tui.screens.sessions import SessionScreen
from perfdesk.tui.widgets.results import ResultsTable
from tests.tui.conftest import DATA, SIZE, wait_for

RECORDED = sorted((DATA / "sessions").iterdir())


def session_app(profile, tmp_path, paths: list[Path], tab_steps: int = 0):
    app = PerfdeskApp(profile, output=tmp_path / "sessions", export_root=tmp_path / "exports")

    async def open_sessions(pilot):
        screen = SessionScreen(paths, tmp_path / "exports")
        await app.push_screen(screen)
        await wait_for(pilot, lambda: len(screen.loaded) == len(paths), 30, "the sessions to load")

        # a DataTable sizes its columns to their cells on its next idle: on a loaded machine that can come after
        # the screenshot, which then shows the columns as wide as their labels
        # queried each time: a session's table may mount after the first look (then it was never waited for)
        def sized() -> bool:
            tables = list(screen.query(ResultsTable))
            return len(tables) >= len(paths) and all(
                t.row_count
                and not t._require_update_dimensions
                # the columns measured their cells, not only their labels ("completed" is wider than "status")
                and t.columns["status"].content_width >= len("completed")
                for t in tables
            )

        await wait_for(pilot, sized, 30, "the results tables to size their columns")
        for _ in range(tab_steps):
            await pilot.press("right_square_bracket")
        # the chart redraws on a timer a few times a second, and focus and tab styles settle after animations: on a
        # loaded machine 0.2 s was sometimes too little (the same text, other styles)
        await pilot.wait_for_scheduled_animations()
        await wait_for(pilot, sized, 30, "the results tables to size their columns")
        # lines a table rendered before it measured its cells stay in its line cache (Textual): render afresh
        for t in screen.query(ResultsTable):
            t._clear_caches()
            t.refresh()
        await pilot.pause(1.0)

    return app, open_sessions


def test_session_view(snap_compare, profile, tmp_path):
    app, before = session_app(profile, tmp_path, RECORDED[:1])
    assert snap_compare(app, terminal_size=SIZE, run_before=before)


def test_compare_two_sessions_throughput(snap_compare, profile, tmp_path):
    app, before = session_app(profile, tmp_path, RECORDED, tab_steps=2)
    assert snap_compare(app, terminal_size=SIZE, run_before=before)


class HelpApp(App):
    CSS_PATH = Path(__file__).parents[2] / "perfdesk" / "tui" / "app.tcss"

    def on_mount(self) -> None:
        self.push_screen(HelpScreen())


def test_help_screen(snap_compare):
    assert snap_compare(HelpApp(), terminal_size=(120, 40))
