"""The desk under heavy load: an in-process target answering in 1 ms drives thousands of requests per second.

Keys must still be handled (a bound, not a speed claim: the machine is shared), the panes redraw from coalesced
batches, and Stop ends the run with every row in requests.csv.
"""

from __future__ import annotations

import time

import pandas as pd

from perfdesk.controllers.profile import load_profile
from perfdesk.tui.app import PerfdeskApp
from perfdesk.tui.chart_data import MAX_TIME_POINTS
from perfdesk.tui.widgets.results import ResultsTable
from tests.tui.conftest import DATA, SIZE, run, wait_for

KEY_BOUND_S = 1.0


def test_keys_answer_and_stop_keeps_rows_at_thousands_of_requests_per_second(tmp_path, instant_kind):
    app = PerfdeskApp(load_profile(DATA / "instant.toml"), output=tmp_path / "sessions")
    handled: list[float] = []
    waits: list[float] = []
    original = app.action_next_log_filter

    def next_log_filter() -> None:  # when the key's action runs (Pilot's press also waits for an idle CPU)
        handled.append(time.monotonic())
        original()

    app.action_next_log_filter = next_log_filter

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            app.query_one("#trials-table").focus()
            await pilot.press("r")
            await wait_for(pilot, lambda: app.rows_seen >= 2_000, 30, "2000 requests")
            for _ in range(3):
                start = time.monotonic()
                await pilot.press("l")
                waits.append(handled[-1] - start)
            rows_before = app.rows_seen
            await pilot.pause(1.0)
            assert app.rows_seen > rows_before, "the trial kept streaming"
            await pilot.press("s")
            await wait_for(pilot, lambda: app.job is None, 15, "the stopped trial to end")
            await pilot.pause(0.3)
            summary = app.query_one(ResultsTable).summaries[0]
            assert summary["status"] == "interrupted"
            rows = pd.read_csv(app.experiment.path / "requests.csv")
            assert len(rows) == summary["count"] == app.rows_seen
            assert len(app.chart_data.latency["instant"]) <= MAX_TIME_POINTS  # bounded however long it runs

    run(scenario())
    print(f"key to action: max {max(waits) * 1000:.0f} ms over {len(waits)} presses; {app.rows_seen} requests")
    assert max(waits) < KEY_BOUND_S, f"a key waited {max(waits):.2f} s for its action while requests streamed"
