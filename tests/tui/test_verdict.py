"""The verdict screen (v): cost per 1,000 inferences, the break-even in words and the monthly cost chart, on a
recorded session opened with o, a synthetic session with a server and a function, and the live session."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from perfdesk.controllers.profile import load_profile
from perfdesk.controllers.target import register_target
from perfdesk.tui.app import PerfdeskApp
from perfdesk.tui.screens.help import HELP
from perfdesk.tui.screens.sessions import SessionScreen
from perfdesk.tui.screens.verdict import VerdictScreen
from perfdesk.verdict.cost import load_price_table
from tests.tui.conftest import DATA, SIZE, run, wait_for
from tests.verdict.synth import write_session

C5_HOURLY = load_price_table()["ec2"]["us-east-1"]["c5.xlarge"]


def _text(screen: VerdictScreen) -> str:
    return str(screen.query_one("#verdict-text").render())


async def _open_verdict(pilot, app, path) -> VerdictScreen:
    """o, type the folder, ctrl+o, then v on the session view; waits for the verdict."""
    await pilot.press("o")
    app.screen.query_one("#session-paths").value = str(path)
    await pilot.press("ctrl+o")
    assert isinstance(app.screen, SessionScreen)
    await pilot.press("v")
    screen = app.screen
    assert isinstance(screen, VerdictScreen) and screen.path == path
    await wait_for(pilot, lambda: screen.verdict is not None, 20, "the verdict")
    await pilot.pause(0.05)
    return screen


def test_verdict_of_a_recorded_session_priced_in_its_manifest(profile, saved_sessions, tmp_path):
    path = saved_sessions[0]
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["profile"]["prices"] = {"targets": {"server": {"instance_type": "c5.xlarge"}}}
    (path / "manifest.json").write_text(json.dumps(manifest))
    app = PerfdeskApp(profile, output=tmp_path / "live", export_root=tmp_path / "exports")

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            screen = await _open_verdict(pilot, app, path)
            assert not screen.verdict.error
            table = screen.query_one("#verdict-table")
            trials = pd.read_csv(path / "trials.csv", dtype={"level": str})
            assert table.row_count == len(trials) == 5
            rows = {(r[0], r[1]): r for r in screen.verdict.table_rows()}
            for t in trials.itertuples():
                row = rows[(t.trial, str(int(float(t.level))))]
                # a server's trial costs its hourly price over the trial's wall time (trials.csv), per 1,000 ok
                expected = C5_HOURLY * t.duration_s / 3600 / t.ok * 1000
                assert float(row[7]) == pytest.approx(expected, rel=1e-3)
                assert row[3] == "server" and row[8] == ""
            text = _text(screen)
            assert "No break-even: the session has a server only" in text
            assert "server saturates at" in text
            assert list(screen.verdict.curves) == ["server"]
            await pilot.press("escape")
            assert isinstance(app.screen, SessionScreen)

    run(scenario())


def test_verdict_of_a_server_and_a_function_states_the_break_even(profile, tmp_path):
    # sigma 0: every warm function request is billed 85 ms at 1 GB; the cold-start share is assumed 0
    path = write_session(
        tmp_path / "sessions" / "synth",
        sigma=0.0,
        prices={"targets": {"srv": {"instance_type": "c5.xlarge"}}, "cold_start_fraction": 0.0},
    )
    table = load_price_table()
    fn_rate = table["lambda"]["us-east-1"]["x86_64"]
    per_request = 0.085 * fn_rate["gb_second"] + fn_rate["request"]
    rate = C5_HOURLY / 3600 / per_request  # 29.2 req/s with the shipped table
    app = PerfdeskApp(profile, output=tmp_path / "live", export_root=tmp_path / "exports")

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            screen = await _open_verdict(pilot, app, path)
            text = _text(screen)
            month = rate * 3600 * 730 / 1e6
            assert (
                f"the server srv becomes cheaper than fn above {rate:.1f} req/s ({month:.1f} million req/month)" in text
            )
            assert "assuming 0.0% of fn's requests start cold (assumed)" in text
            requests = pd.read_csv(path / "requests.csv", dtype={"level": str})
            groups = requests.groupby(["trial", "target", requests["level"].fillna("")]).ngroups
            assert screen.query_one("#verdict-table").row_count == groups == 13
            rows = {(r[0], r[2], r[1]): r for r in screen.verdict.table_rows()}
            assert float(rows[("warm", "fn", "")][7]) == pytest.approx(per_request * 1000, rel=1e-3)
            assert rows[("memory", "fn", "2048")][3] == "function"
            assert set(screen.verdict.curves) == {"srv", "fn"}
            assert screen.verdict.break_even_rps == [pytest.approx(rate)]

    run(scenario())


def test_unpriced_and_empty_sessions_show_why_as_text(profile, tmp_path):
    unpriced = write_session(tmp_path / "unpriced")  # no [prices]: the local server has no price
    app = PerfdeskApp(profile, output=tmp_path / "live", export_root=tmp_path / "exports")

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            assert any(b.key == "v" and b.show for b in app.BINDINGS)
            assert "| `v` | verdict" in HELP
            assert "Verdict" in [c.title for c in app.get_system_commands(app.screen)]
            # the live session, no trial run yet
            await pilot.press("v")
            screen = app.screen
            assert isinstance(screen, VerdictScreen) and screen.path == app.experiment.path and screen.live
            await wait_for(pilot, lambda: screen.verdict is not None, 20, "the verdict")
            await pilot.pause(0.05)
            assert "no requests yet" in _text(screen)
            assert screen.query_one("#verdict-table").row_count == 0
            await pilot.press("v")  # v again closes it
            assert not isinstance(app.screen, VerdictScreen)

            await app.push_screen(VerdictScreen(unpriced))
            screen = app.screen
            await wait_for(pilot, lambda: screen.verdict is not None, 20, "the verdict")
            await pilot.pause(0.05)
            text = _text(screen)
            assert "No break-even between srv and fn: cannot compute: no server price" in text
            assert "[prices.targets.srv] hourly_usd or instance_type" in text  # markup escaped, shown as typed
            table = screen.query_one("#verdict-table")
            notes = [str(table.get_row_at(i)[8]) for i in range(table.row_count)]
            assert any("[prices.targets.srv] hourly_usd" in note for note in notes)  # table cells too
            assert {r[2] for r in screen.verdict.table_rows() if r[7] == "-"} == {"srv"}

    run(scenario())


def test_live_verdict_reads_rows_flushed_mid_trial(tmp_path):
    register_target("instant", "tests.tui.instant_target:InstantTarget")
    toml = (DATA / "instant.toml").read_text() + "\n[prices.targets.instant]\nhourly_usd = 1.0\n"
    (tmp_path / "instant.toml").write_text(toml)
    app = PerfdeskApp(load_profile(tmp_path / "instant.toml"), output=tmp_path / "sessions")

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            app.query_one("#trials-table").focus()
            await pilot.press("r")
            await wait_for(pilot, lambda: app.rows_seen >= 500, 30, "500 requests")
            await pilot.press("v")
            screen = app.screen
            await wait_for(pilot, lambda: screen.verdict is not None, 20, "the verdict")
            (row,) = screen.verdict.table_rows()
            assert row[:4] == ("long", "8", "instant", "server") and int(row[4]) >= 500
            assert float(row[7]) > 0  # $1/h over the rows' wall time so far
            assert "no throughput measured" in _text(screen)  # the trial has not finished: no saturation yet
            await pilot.press("escape", "s")
            await wait_for(pilot, lambda: app.job is None, 15, "the stopped trial to end")

    run(scenario())


def test_verdict_at_equal_service_names_capacities_and_emulations(profile, tmp_path):
    from tests.verdict.synth import add_capacity_trial, default_targets

    srv, fn = default_targets()
    srv.describe = {"emulation": "a local server on this machine, priced as the instance it stands in for"}
    path = write_session(
        tmp_path / "sessions" / "slo",
        sigma=0.0,
        targets=[srv, fn],
        prices={"targets": {"srv": {"instance_type": "c5.xlarge"}}},
    )
    add_capacity_trial(path, srv, slo_ms=100, capacity_rps=40, rates=(10, 20, 40, 80))
    add_capacity_trial(path, fn, slo_ms=100, capacity_rps=40, rates=(10, 20, 40, 80))
    app = PerfdeskApp(profile, output=tmp_path / "live", export_root=tmp_path / "exports")

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            await app.push_screen(VerdictScreen(path))
            screen = app.screen
            await wait_for(pilot, lambda: screen.verdict is not None, 20, "the verdict")
            await pilot.pause(0.05)
            text = _text(screen)
            assert "Capacity: srv sustains 40 req/s with p99 <= 100 ms" in text
            assert "At equal service (p99 <= 100 ms for both): the server srv becomes cheaper than fn" in text
            assert "servers needed = ceil(rate / 40 req/s)" in text
            assert "EMULATION: srv is a local server" in text
            assert screen.verdict.basis.startswith("at equal service") and "EMULATION: srv" in screen.verdict.basis
            billing = {r[2]: r[3] for r in screen.verdict.table_rows()}
            assert billing == {"srv": "server (emulation)", "fn": "function"}
            # the server's curve is in steps of 40 req/s: one instance up to 40, two to 80
            rates, monthly = screen.verdict.curves["srv"]
            assert monthly[rates.index(max(r for r in rates if r <= 40))] == pytest.approx(C5_HOURLY * 730)

    run(scenario())
