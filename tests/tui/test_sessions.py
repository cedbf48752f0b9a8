"""Saved sessions in the desk: open one read-only, compare two side by side, export them (recorded fixtures)."""

from __future__ import annotations

import pandas as pd

from perfdesk.tui.app import PerfdeskApp
from perfdesk.tui.screens.sessions import ExportScreen, OpenSessionScreen, SessionScreen
from perfdesk.tui.widgets.charts import ChartsPane
from perfdesk.tui.widgets.results import ResultsTable
from tests.tui.conftest import SIZE, run, wait_for


def test_open_compare_and_export_two_sessions(profile, saved_sessions, tmp_path):
    app = PerfdeskApp(profile, output=saved_sessions[0].parent, export_root=tmp_path / "exports")

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("o")
            assert isinstance(app.screen, OpenSessionScreen)
            listed = {p.name for p in app.screen.sessions}
            assert {p.name for p in saved_sessions} <= listed
            # the live session of this app is listed too; mark the two recorded ones
            lst = app.screen.query_one("#session-list")
            for path in saved_sessions:
                lst.select(str(path.resolve()))
            await pilot.press("ctrl+o")
            screen = app.screen
            assert isinstance(screen, SessionScreen) and len(screen.paths) == 2
            await wait_for(pilot, lambda: len(screen.loaded) == 2, 30, "both sessions to load")
            await pilot.pause(0.1)
            for column_table, path in zip(screen.query(ResultsTable), sorted(saved_sessions)):
                trials = pd.read_csv(path / "trials.csv")
                assert column_table.row_count == len(trials)
                assert {s["trial"] for s in column_table.summaries} == {"cold", "warm", "concurrency"}
            charts = list(screen.query(ChartsPane))
            assert len(charts) == 2 and all(c.data.latency["server"] for c in charts)
            await pilot.press("right_square_bracket", "right_square_bracket")
            assert all(c.active == "throughput" for c in charts)
            assert charts[0].data.throughput_series()["server"][0] == [1.0, 2.0, 4.0]

            await pilot.press("w")
            export = app.screen
            assert isinstance(export, ExportScreen)
            export.query_one("#export-dest").value = str(tmp_path / "out")
            await pilot.press("enter")
            await wait_for(pilot, lambda: bool(export.written), 30, "the export")
            combined = pd.read_csv(tmp_path / "out" / "combined.csv")
            expected = sum(len(pd.read_csv(p / "requests.csv")) for p in saved_sessions)
            assert len(combined) == expected and set(combined["session"]) == {p.name for p in saved_sessions}
            for path in saved_sessions:
                assert (tmp_path / "out" / path.name / "trials.csv").exists()
            await pilot.press("escape", "escape")
            assert not isinstance(app.screen, SessionScreen)

    run(scenario())


def test_open_rejects_a_folder_that_is_no_session(profile, tmp_path):
    app = PerfdeskApp(profile, output=tmp_path / "sessions", export_root=tmp_path / "exports")

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("o")
            screen = app.screen
            screen.query_one("#session-paths").value = str(tmp_path)
            await pilot.press("ctrl+o")
            assert app.screen is screen
            assert "not a session folder" in str(screen.query_one("#open-error").render())

    run(scenario())


def test_export_to_an_unwritable_place_says_so(profile, saved_sessions, tmp_path):
    app = PerfdeskApp(profile, output=tmp_path / "sessions", export_root=tmp_path / "exports")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            await app.push_screen(ExportScreen(saved_sessions[:1], blocker / "sub"))
            screen = app.screen
            await pilot.press("enter")
            await wait_for(
                pilot, lambda: "failed" in str(screen.query_one("#export-status").render()), 10, "the export error"
            )
            assert not screen.written

    run(scenario())
