"""Controls that need no running target: the edit form, the log filter, the command palette's commands."""

from __future__ import annotations

from perfdesk.tui.app import PerfdeskApp
from perfdesk.tui.screens.edit_trial import EditTrialScreen
from perfdesk.tui.widgets.logs import LogsPane
from tests.tui.conftest import SIZE, run


def test_edit_trial_form_validates_then_applies(profile, tmp_path):
    app = PerfdeskApp(profile, output=tmp_path / "sessions")

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            app.query_one("#trials-table").focus()
            await pilot.press("down", "e")  # the "long" concurrency trial
            screen = app.screen
            assert isinstance(screen, EditTrialScreen)
            screen.query_one("#field-levels").value = "[0]"
            await pilot.press("ctrl+s")
            assert app.screen is screen and "levels" in str(screen.query_one("#edit-error").render())
            screen.query_one("#field-levels").value = "[1, 3]"
            screen.query_one("#field-duration_s").value = "2"
            await pilot.press("ctrl+s")
            assert app.screen is not screen
            long = next(t for t in app.trials if t.name == "long")
            assert long.levels == [1, 3] and long.duration_s == 2.0
            assert "levels=[1, 3]" in str(app.query_one("#trials-table").get_cell("long", "params"))
            assert profile.trials[1].levels == [2, 4]  # the profile itself is untouched

    run(scenario())


def test_log_filter_and_commands(profile, tmp_path):
    app = PerfdeskApp(profile, output=tmp_path / "sessions")

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause(0.4)
            logs = app.query_one(LogsPane)
            assert logs.stored >= 1  # the "session opened" line
            await pilot.press("l")
            assert logs.filter == "perfdesk"
            await pilot.press("l")
            assert logs.filter == "server"
            titles = {c.title for c in app.get_system_commands(app.screen)}
            assert {
                "Deploy server",
                "Run trial long",
                "Edit trial warm",
                "Stop",
                "Export session",
                "Open session",
                "Try one image",
                "Use workload mobilenet_v2",
            } <= titles
            await pilot.press("s")  # nothing running: a notice, no error
            assert app.job is None

    run(scenario())
