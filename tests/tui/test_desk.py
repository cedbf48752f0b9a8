"""Pilot tests of the desk against the real local server (the agent as a process on 127.0.0.1)."""

from __future__ import annotations

import time

import pandas as pd
import pytest

from perfdesk.controllers.target import TargetStatus
from perfdesk.tui.app import PerfdeskApp
from perfdesk.tui.screens.help import HelpScreen
from perfdesk.tui.screens.sessions import ExportScreen
from perfdesk.tui.screens.try_image import TryImageScreen
from perfdesk.tui.widgets.results import ResultsTable
from tests.tui.conftest import SIZE, run, wait_for

pytestmark = pytest.mark.slow
DEPLOY_TIMEOUT = 150  # loading torch on a busy shared machine


def make_app(profile, tmp_path) -> PerfdeskApp:
    return PerfdeskApp(profile, output=tmp_path / "sessions", export_root=tmp_path / "exports")


async def deploy(pilot, app) -> None:
    await pilot.press("d")
    await wait_for(pilot, lambda: app.job is None, DEPLOY_TIMEOUT, "the deploy job to end")
    state = app.experiment.targets["server"].state
    assert state is TargetStatus.READY, (
        f"server is {state}; log: {(app.experiment.path / 'log.txt').read_text()[-2000:]}"
    )
    await pilot.pause(0.3)  # one tick hands the state to the pane
    assert str(app.query_one("#targets-table").get_cell("server", "state")) == "ready"


def test_deploy_warm_trial_try_image_export(profile, tmp_path):
    app = make_app(profile, tmp_path)

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            await deploy(pilot, app)

            app.query_one("#trials-table").focus()  # the cursor is on the first trial: warm
            await pilot.press("r")
            await wait_for(pilot, lambda: app.job is None, 60, "the warm trial to end")
            await pilot.pause(0.3)
            summaries = app.query_one(ResultsTable).summaries
            assert [(s["trial"], s["status"], s["ok"]) for s in summaries] == [("warm", "completed", 5)]
            assert app.query_one(ResultsTable).row_count == 1
            rows = pd.read_csv(app.experiment.path / "requests.csv")
            assert (rows["trial"] == "warm").sum() == 5 and (rows["status"] == "ok").all()
            assert app.chart_data.latency["server"], "the latency chart got the rows"

            await pilot.press("i")
            assert isinstance(app.screen, TryImageScreen)
            await pilot.press("ctrl+s")
            answers = app.screen.query_one("#answers")
            await wait_for(pilot, lambda: answers.row_count == 1, 30, "the server's answer to one image")
            assert str(answers.get_cell("server", "status")) == "ok"
            assert str(answers.get_cell("server", "top-1")) not in ("", "-")
            await pilot.press("escape")

            await pilot.press("w")
            screen = app.screen
            assert isinstance(screen, ExportScreen)
            await pilot.click("#export")
            await wait_for(pilot, lambda: bool(screen.written), 30, "the export to finish")
            dest = tmp_path / "exports" / app.experiment.session_id
            assert (dest / "combined.csv").exists()
            assert len(pd.read_csv(dest / "combined.csv")) == 5
            assert (dest / app.experiment.session_id / "requests.csv").exists()
            await pilot.press("escape")

    run(scenario())
    assert app.experiment.closed
    assert app.experiment.targets["server"].state is TargetStatus.TORN_DOWN


def test_stop_long_trial_keeps_rows_and_keys_answer(profile, tmp_path):
    app = make_app(profile, tmp_path)
    measured = {}
    handled: list[float] = []
    original = app.action_next_log_filter

    def next_log_filter() -> None:  # when the key's action runs (Pilot's press also waits for an idle CPU)
        handled.append(time.monotonic())
        original()

    app.action_next_log_filter = next_log_filter

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            await deploy(pilot, app)

            table = app.query_one("#trials-table")
            table.focus()
            await pilot.press("down")  # the "long" trial: concurrency 2 then 4, 60 s each
            await pilot.press("r")
            await wait_for(pilot, lambda: app.rows_seen >= 20, 60, "requests to stream")

            # responsiveness while the trial streams: a bound on handling one key, not a speed claim
            start = time.monotonic()
            await pilot.press("l")
            measured["key_s"] = handled[-1] - start
            await pilot.press("question_mark")
            assert isinstance(app.screen, HelpScreen)
            await pilot.press("escape")
            assert app.job == "trial long", "the trial is still running"

            start = time.monotonic()
            await pilot.press("s")
            await wait_for(pilot, lambda: app.job is None, 15, "the stopped trial to end")
            measured["stop_s"] = time.monotonic() - start
            await pilot.pause(0.3)

            summaries = app.query_one(ResultsTable).summaries
            assert [(s["trial"], s["level"], s["status"]) for s in summaries] == [("long", 2, "interrupted")]
            rows = pd.read_csv(app.experiment.path / "requests.csv")
            long_rows = rows[rows["trial"] == "long"]
            assert len(long_rows) >= 20 and len(long_rows) == summaries[0]["count"]

            # a new run after Stop starts fresh (the cancel event is cleared)
            await pilot.press("up", "r")
            await wait_for(pilot, lambda: app.job is None, 60, "the warm trial after Stop")
            await pilot.pause(0.3)
            warm = [s for s in app.query_one(ResultsTable).summaries if s["trial"] == "warm"]
            assert warm and warm[0]["status"] == "completed" and warm[0]["ok"] == 5

    run(scenario())
    print(f"key handled in {measured['key_s']:.3f} s during the trial; stop took {measured['stop_s']:.2f} s")
    assert measured["key_s"] < 1.0, "a key waited more than 1 s for its action while a trial streamed"
    assert measured["stop_s"] < 10.0, "Stop did not end the trial within 10 s"
    assert app.experiment.store.manifest.get("status") == "interrupted"
